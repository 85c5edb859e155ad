"""The console's Members pages: search a program's members, and a member's page with their
card, points, ledger and wallets, where a marketer adjusts points, voids the card or sends the
card link again.

The search is a plain GET form; with htmx the results follow the typing (the page asks for
the results part only, rendered by the same template). Every action is a form posted to its
own URL, through the same services as the API (:mod:`app.loyalty.ledger`,
:mod:`app.loyalty.cards`, :mod:`app.enrollment.links`), then back to the member's page.
"""

from __future__ import annotations

import contextlib
import secrets
from datetime import datetime
from typing import Any

from babel.dates import format_datetime
from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, HiddenField, IntegerField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, ValidationError

from app import audit, timeutil
from app.console import pages
from app.console.pages import bp, console_page
from app.enrollment import links
from app.errors import (
    CardVoided,
    IdempotencyKeyReused,
    InsufficientPoints,
    MemberErased,
    NotFound,
)
from app.loyalty import balances, cards, ledger
from app.loyalty.models import CardStatus, EntryKind, Program
from app.members import directory, rights
from app.wallet import devices
from app.web.pagekit import PageForm

pages.section(_l("Members"), "console.members", pages=(
    "console.member_page", "console.adjust_points", "console.void_card", "console.send_card_link"))


# What the ledger calls each kind of entry.
ENTRY_KINDS = {
    EntryKind.EARN: _l("earned"), EntryKind.REDEEM: _l("redeemed"),
    EntryKind.ADJUST: _l("adjusted"), EntryKind.EXPIRE: _l("expired"),
    EntryKind.REVERSE: _l("taken back"), EntryKind.RELEASE: _l("became available"),
    EntryKind.REFUND: _l("refunded"), EntryKind.BONUS: _l("bonus"),
}


class WholeNumberField(IntegerField):
    """An integer field that says, in the page's language, what it wants."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or not str(valuelist[0]).strip():
            return
        try:
            self.data = int(str(valuelist[0]).strip())
        except ValueError:
            self.data = None
            raise ValueError(_("Please enter a whole number of points.")) from None


class AdjustForm(PageForm):
    points = WholeNumberField(_l("Points to add (a minus sign removes them)"), validators=[
        InputRequired(_l("Please enter a whole number of points.")),
        NumberRange(-ledger.MAX_POINTS, ledger.MAX_POINTS,
                    _l("Please enter a number between %(min)s and %(max)s."))])
    reason = StringField(_l("Reason"), validators=[
        DataRequired(_l("Please say why: the reason is kept with the entry.")),
        Length(max=500)])
    # Generated when the form is shown: a second post of the same form adjusts once.
    idempotency_key = HiddenField(validators=[InputRequired(), Length(min=1, max=128)])

    def validate_points(self, field: IntegerField) -> None:
        if field.data == 0:
            raise ValidationError(_("An adjustment cannot be zero."))


class VoidForm(PageForm):
    reason = StringField(_l("Reason"), validators=[
        DataRequired(_l("Please say why the card is voided.")), Length(max=500)])
    confirm = BooleanField(_l("I understand that a voided card cannot be used again"),
                           validators=[DataRequired(_l("Please confirm."))])


class EraseForm(PageForm):
    # Not ``confirm``: the void form on the same page has that id.
    confirm_erase = BooleanField(
        _l("I understand that the member's personal data is deleted for good and their card "
           "voided"), validators=[DataRequired(_l("Please confirm."))])


class CardLinkForm(PageForm):
    """Sending the card link: the CSRF token only."""


def _program_time(value: datetime | None, program: Program) -> str:
    if value is None:
        return ""
    return format_datetime(value, "medium", tzinfo=balances.program_zone(program.time_zone),
                           locale=str(get_locale() or "en"))


def _parse_id(name: str) -> int | None:
    value = request.args.get(name, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        abort(400)
    return int(value)


@bp.get("/programs/<int:program_id>/members")
@console_page
def members(program: Program) -> ResponseReturnValue:
    query = request.args.get("q", "")[:directory.MAX_QUERY]
    found = directory.search(program.id, query, after=_parse_id("after"))
    context = {"query": query, "page": found}
    # htmx asks for the results alone (but a whole page to restore history).
    if request.headers.get("HX-Request") and not request.headers.get("HX-History-Restore-Request"):
        return render_template("console/member_results.html", **context)
    return render_template("console/members.html", **context)


def _member_or_404(program: Program, member_id: int) -> directory.Found:
    try:
        return directory.member(program.id, member_id)
    except NotFound:
        abort(404)


def _member_page(program: Program, found: directory.Found, *, adjust: AdjustForm | None = None,
                 void: VoidForm | None = None, erase: EraseForm | None = None,
                 link: str | None = None,
                 link_result: str | None = None, status: int = 200) -> ResponseReturnValue:
    card = found.card
    if adjust is None:
        adjust = AdjustForm(formdata=None)
    if not adjust.idempotency_key.data:
        adjust.idempotency_key.data = secrets.token_urlsafe(18)
    page = directory.ledger(card, before=_parse_id("before"))
    return render_template(
        "console/member.html", member=found.member, card=card,
        lots=balances.summary(card.id, timeutil.now()), open_lots=directory.open_lots(card),
        ledger_page=page, wallets=devices.of_card(card),
        adjust_form=adjust, void_form=void or VoidForm(formdata=None),
        erase_form=erase or EraseForm(formdata=None),
        link_form=CardLinkForm(), link=link, link_result=link_result,
        voided=card.status is CardStatus.VOIDED, entry_kinds=ENTRY_KINDS,
        when=lambda value: _program_time(value, program)), status


@bp.get("/programs/<int:program_id>/members/<int:member_id>")
@console_page
def member_page(program: Program, member_id: int) -> ResponseReturnValue:
    return _member_page(program, _member_or_404(program, member_id))


@bp.post("/programs/<int:program_id>/members/<int:member_id>/adjust")
@console_page
def adjust_points(program: Program, member_id: int) -> ResponseReturnValue:
    found = _member_or_404(program, member_id)
    form = AdjustForm()
    if not form.validate():
        return _member_page(program, found, adjust=form, status=422)
    try:
        posting = ledger.adjust(found.card.serial_number, points=form.points.data or 0,
                                reason=form.reason.data or "", actor=audit.current_actor().ref,
                                idempotency_key=form.idempotency_key.data)
    except InsufficientPoints as error:
        form.points.errors = [*form.points.errors, _(
            "The card has %(balance)s points: it cannot give %(points)s.",
            balance=error.extra.get("balance", found.card.balance),
            points=-(form.points.data or 0))]
        return _member_page(program, found, adjust=form, status=422)
    except CardVoided:
        form.form_errors.append(_("The card is voided: its points cannot change."))
        return _member_page(program, found, adjust=form, status=409)
    except IdempotencyKeyReused:
        form.idempotency_key.data = ""
        form.form_errors.append(_("This form was sent already with other values. Please "
                                  "check the balance and send it again."))
        return _member_page(program, found, adjust=form, status=422)
    flash(_("Points adjusted: the balance is now %(balance)s.", balance=posting.balance))
    return redirect(url_for("console.member_page", program_id=program.id,
                            member_id=member_id), 303)


@bp.post("/programs/<int:program_id>/members/<int:member_id>/void")
@console_page
def void_card(program: Program, member_id: int) -> ResponseReturnValue:
    found = _member_or_404(program, member_id)
    form = VoidForm()
    if not form.validate():
        return _member_page(program, found, void=form, status=422)
    with contextlib.suppress(CardVoided):  # voided already (a second click): the page says so
        cards.void(found.card.serial_number, reason=form.reason.data or "",
                   actor=audit.current_actor().ref)
    flash(_("The card is voided."))
    return redirect(url_for("console.member_page", program_id=program.id,
                            member_id=member_id), 303)


@bp.post("/programs/<int:program_id>/members/<int:member_id>/erase")
@console_page(admin=True)
def erase_member(program: Program, member_id: int) -> ResponseReturnValue:
    """Erase the member's personal data (admins only): :func:`app.members.rights.erase`."""
    found = _member_or_404(program, member_id)
    form = EraseForm()
    if not form.validate():
        return _member_page(program, found, erase=form, status=422)
    with contextlib.suppress(MemberErased):  # erased already (a second click): the page says so
        rights.erase(found.member.id)
    flash(_("The member's personal data was erased."))
    return redirect(url_for("console.member_page", program_id=program.id,
                            member_id=member_id), 303)


@bp.post("/programs/<int:program_id>/members/<int:member_id>/card-link")
@console_page
def send_card_link(program: Program, member_id: int) -> ResponseReturnValue:
    found = _member_or_404(program, member_id)
    if not CardLinkForm().validate():
        abort(400)
    result = links.send_card_link(found.card)
    if result is links.LinkSent.SENT:
        flash(_("The card link was sent to %(email)s.", email=found.member.email))
        return redirect(url_for("console.member_page", program_id=program.id,
                                member_id=member_id), 303)
    # Not sent: the link is shown to copy, on this answer only (never in a URL).
    found = directory.member(program.id, member_id)
    return _member_page(program, found, link=links.card_page_url(found.card),
                        link_result=result.value)
