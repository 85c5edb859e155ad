"""The join page and the member's card page (HTML, translated, CSRF-protected forms)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import NotFound as HTTPNotFound
from wtforms.fields.choices import SelectChoice

from app.enrollment import member_pages
from app.enrollment.forms import JoinForm
from app.enrollment.links import card_page_token
from app.errors import CardErased, NotFound
from app.loyalty.models import Program
from app.ratelimit import by_address, limit
from app.web.pagekit import use_languages
from passes.languages import LANGUAGE_NAMES

bp = Blueprint("enrollment_pages", __name__)


@bp.context_processor
def _page_context() -> dict[str, Any]:
    # Per blueprint: pages elsewhere (the index) are not translated and keep lang="en".
    locale = str(get_locale() or "en")
    return {"lang": locale, "language_names": LANGUAGE_NAMES, "language_url": _language_url}


def _language_url(code: str) -> str:
    """This page in another language (keeping its other query parameters, such as ``ref``)."""
    # Encoded here, not passed to url_for: a "?_scheme=…" or "?_anchor=…" from the visitor
    # would be taken as url_for's own options.
    query = urlencode({**request.args.to_dict(), "lang": code})
    return f"{url_for(request.endpoint or '', **(request.view_args or {}))}?{query}"


def _join_form(program: Program, form: JoinForm, status: int) -> tuple[str, int]:
    form.language.choices = [SelectChoice(code, name) for code, name in LANGUAGE_NAMES.items()]
    return render_template("join.html", program=program, form=form,
                           brand=member_pages.page_branding(program),
                           showcase=member_pages.showcase(program, str(get_locale()))), status


@bp.route("/join/<slug>", methods=["GET", "POST"])
@limit("JOIN_RATE_LIMIT", key=by_address, methods=("POST",))
def join(slug: str) -> ResponseReturnValue:
    """Show the join form; on a valid post enroll the visitor and go to their card page."""
    program = member_pages.program_for_page(slug)
    use_languages(program=program.default_language)
    form = JoinForm()
    if request.method == "GET":
        form.language.data = str(get_locale())
        # Shared invitation links (``?ref=CODE``) fill in the code.
        form.referral_code.data = "".join(request.args.get("ref", "").split()).upper()[:16]
        return _join_form(program, form, 200)
    if form.validate():
        card = member_pages.join(program, form)
        if card is not None:
            member_pages.mark_just_joined(card)
            target = url_for(".card", serial=card.serial_number,
                             token=card_page_token(card.serial_number))
            return redirect(target, 303)
    return _join_form(program, form, 422)


@bp.get("/card/<serial>/<token>")
def card(serial: str, token: str) -> str:
    """The member's card: balance, tier, QR code and the wallet buttons for their phone."""
    found = member_pages.card_for_page(serial, token)
    use_languages(member=found.member.language, program=found.program.default_language)
    view = member_pages.card_view(found, request.headers.get("User-Agent"))
    return render_template("card.html", card=view, brand=view.brand)


@bp.errorhandler(CSRFError)
def _csrf_failed(error: CSRFError) -> tuple[str, int]:
    # A stale or missing token (an old tab, cookies off): show the form again to resubmit.
    # The token is checked before the view runs, so this finds the program the view would.
    try:
        program = member_pages.program_for_page((request.view_args or {}).get("slug", ""))
    except NotFound as exc:  # raised here it would escape the handler as a 500
        return _not_found(exc)
    use_languages(program=program.default_language)
    form = JoinForm()  # keeps what they typed
    form.form_errors.append(
        _("Your session expired. Please check your details and send the form again."))
    return _join_form(program, form, 400)


@bp.errorhandler(CardErased)
def _card_erased(error: CardErased) -> tuple[str, int]:
    # Gone for good, at the member's request: said plainly, in the language of ?lang=, the
    # cookie or the browser (as the 404 page).
    use_languages()
    return render_template("card_gone.html"), 410


@bp.errorhandler(NotFound)
@bp.errorhandler(HTTPNotFound)
def _not_found(error: Exception) -> tuple[str, int]:
    return render_template("404.html"), 404
