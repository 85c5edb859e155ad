"""The console's Campaigns section: the segment builder with its live count.

The builder is one form: posted plainly it re-renders the page with the count; with htmx it
posts itself to :func:`segment_count` as conditions change and swaps in the count. Both count
with :func:`app.campaigns.segments.count`, as the API does.
"""

from __future__ import annotations

import contextlib
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import get_month_names
from flask import abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import (
    DateField,
    DateTimeLocalField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from app.campaigns import segments, service
from app.console import pages
from app.console.pages import bp, console_page
from app.errors import Conflict, NotFound, Unprocessable
from app.loyalty.ledger import MAX_POINTS
from app.loyalty.models import Program
from app.web.pagekit import PageForm
from passes.languages import LANGUAGE_NAMES


class CheckboxList(SelectMultipleField):
    """A multiple choice shown as a list of checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form: Any) -> None:
        values = {str(value) for value, *_ in self.iter_choices()}
        if any(str(item) not in values for item in self.data or []):
            raise ValidationError(self.gettext("Not a valid choice."))


YES_NO = [("", _l("Any")), ("yes", _l("Yes")), ("no", _l("No"))]


class SegmentForm(PageForm):
    """A segment's conditions; empty ones are "any"."""

    tier_ids = CheckboxList(_l("Tiers"), coerce=int, validate_choice=False)
    languages = CheckboxList(_l("Languages"), validate_choice=False)
    location_ids = CheckboxList(_l("Visited a location"), coerce=int, validate_choice=False)
    last_visit_after = DateField(_l("Last visit on or after"), validators=[Optional()])
    last_visit_before = DateField(_l("Last visit before"), validators=[Optional()])
    balance_min = IntegerField(_l("Balance at least"), validators=[
        Optional(), NumberRange(0, MAX_POINTS)])
    balance_max = IntegerField(_l("Balance at most"), validators=[
        Optional(), NumberRange(0, MAX_POINTS)])
    expiring_within_days = IntegerField(_l("Points expiring within (days)"), validators=[
        Optional(), NumberRange(1, 3660)])
    birthday_month = SelectField(_l("Birthday month"), default="")
    apple_installed = SelectField(_l("On Apple Wallet"), choices=YES_NO, default="")
    google_installed = SelectField(_l("On Google Wallet"), choices=YES_NO, default="")
    joined_from = DateField(_l("Joined on or after"), validators=[Optional()])
    joined_until = DateField(_l("Joined before"), validators=[Optional()])

    def __init__(self, program: Program, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.program = program
        self.tier_ids.choices = [(t.id, t.name) for t in program.tiers]
        self.languages.choices = list(LANGUAGE_NAMES.items())
        self.location_ids.choices = [(loc.id, loc.name) for loc in program.locations]
        months = get_month_names("wide", locale=str(get_locale() or "en"))
        self.birthday_month.choices = [("", _l("Any"))] + [
            (str(number), months[number]) for number in range(1, 13)]

    def validate_balance_max(self, field: IntegerField) -> None:
        if field.data is not None and self.balance_min.data is not None \
                and field.data < self.balance_min.data:
            raise ValidationError(_l("Must not be below the lowest balance."))

    def validate_joined_until(self, field: DateField) -> None:
        if field.data and self.joined_from.data and field.data <= self.joined_from.data:
            raise ValidationError(_l("Must be after the first day joined."))

    def validate_last_visit_before(self, field: DateField) -> None:
        if field.data and self.last_visit_after.data \
                and field.data <= self.last_visit_after.data:
            raise ValidationError(_l("Must be after the other last-visit day."))

    def segment(self) -> segments.Segment:
        """The validated conditions (days start at midnight in the program's time zone)."""
        zone = ZoneInfo(self.program.time_zone)

        def moment(day: date | None) -> datetime | None:
            return datetime.combine(day, time(), zone) if day else None

        def yes_no(value: str) -> bool | None:
            return {"yes": True, "no": False}.get(value)

        return segments.Segment(
            tier_ids=tuple(self.tier_ids.data or ()),
            languages=tuple(self.languages.data or ()),
            location_ids=tuple(self.location_ids.data or ()),
            last_visit_before=moment(self.last_visit_before.data),
            last_visit_after=moment(self.last_visit_after.data),
            balance_min=self.balance_min.data, balance_max=self.balance_max.data,
            expiring_within_days=self.expiring_within_days.data,
            birthday_month=int(self.birthday_month.data) if self.birthday_month.data else None,
            apple_installed=yes_no(self.apple_installed.data),
            google_installed=yes_no(self.google_installed.data),
            joined_from=moment(self.joined_from.data),
            joined_until=moment(self.joined_until.data))


class CampaignForm(SegmentForm):
    """A new campaign: the segment above, and what its members get."""

    name = StringField(_l("Campaign name"), validators=[InputRequired(), Length(max=120)])
    bonus_points = IntegerField(_l("Bonus points (optional)"), validators=[
        Optional(), NumberRange(1, MAX_POINTS)])
    holdout_percent = IntegerField(_l("Holdout: percent kept as a control group"),
                                   default=0, validators=[Optional(), NumberRange(0, 50)])
    # Shown as the input's own format (date "T" minutes), as the browser posts it back.
    scheduled_at = DateTimeLocalField(_l("Send at (empty: when you press Send)"),
                                      validators=[Optional()], format=[
                                          "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S",
                                          "%Y-%m-%d %H:%M:%S"])

    def __init__(self, program: Program, **kwargs: Any) -> None:
        super().__init__(program, **kwargs)
        for code, language in LANGUAGE_NAMES.items():
            self[f"lock_{code}"].label.text = _("Lock screen (%(language)s)", language=language)
            self[f"back_{code}"].label.text = _("Back of the pass (%(language)s)",
                                                language=language)

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        if not self.messages():
            # Shown at the first message field (an Optional() field skips its own checks).
            self.back_en.errors = [*self.back_en.errors,
                                   _("Write a message in at least one language.")]
            return False
        return valid

    def messages(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for code in LANGUAGE_NAMES:
            parts = {name: self[f"{short}_{code}"].data.strip()
                     for short, name in (("lock", "lock_screen"), ("back", "back"))
                     if self[f"{short}_{code}"].data and self[f"{short}_{code}"].data.strip()}
            if parts:
                out[code] = parts
        return out

    def when(self) -> datetime | None:
        if not self.scheduled_at.data:
            return None
        return self.scheduled_at.data.replace(tzinfo=ZoneInfo(self.program.time_zone))


for _code in LANGUAGE_NAMES:
    setattr(CampaignForm, f"lock_{_code}", StringField(validators=[Optional(), Length(max=178)]))
    setattr(CampaignForm, f"back_{_code}", TextAreaField(validators=[Optional(),
                                                                     Length(max=1000)]))


class ActionForm(PageForm):
    """Send or cancel: the CSRF token only."""


def _count(form: SegmentForm) -> int | None:
    """The segment's count, or None with the form's errors."""
    if not form.validate():
        current_app.logger.debug("segment form errors: %s", form.errors)
        return None
    try:
        return segments.count(form.program, form.segment())
    except Unprocessable as error:
        form.form_errors.append(error.detail)
        return None


@bp.route("/programs/<int:program_id>/campaigns", methods=["GET", "POST"])
@console_page
def campaigns(program: Program) -> ResponseReturnValue:
    """The segment builder and the campaigns: GET shows everyone's count; a plain POST
    counts the conditions."""
    form = CampaignForm(program)
    if form.is_submitted():
        segment_form = SegmentForm(program)
        found = _count(segment_form)
        form.validate()  # show the segment's errors, not the campaign's yet
        for name in ("name", "back_en"):
            form[name].errors = []
        status = 200 if found is not None else 422
    else:
        found, status = segments.count(program, segments.Segment()), 200
    return _campaigns_page(program, form, found, status)


def _campaigns_page(program: Program, form: CampaignForm, found: int | None,
                    status: int) -> ResponseReturnValue:
    return render_template(
        "console/campaigns.html", form=form, count=found,
        campaigns=service.list_campaigns(program),
        count_url=url_for("console.campaigns", program_id=program.id),
        save_url=url_for("console.campaign_create", program_id=program.id),
        save_label=_("Create draft")), status


@bp.post("/programs/<int:program_id>/campaigns/new")
@console_page
def campaign_create(program: Program) -> ResponseReturnValue:
    """Create a draft campaign from the builder's form, then show it."""
    form = CampaignForm(program)
    if form.validate():
        try:
            campaign = service.create(
                program, name=form.name.data, segment=form.segment(),
                messages=form.messages(), bonus_points=form.bonus_points.data,
                holdout_percent=form.holdout_percent.data or 0, scheduled_at=form.when())
        except Unprocessable as error:
            form.form_errors.append(error.detail)
        else:
            return redirect(url_for("console.campaign", program_id=program.id,
                                    campaign_id=campaign.id), 303)
    return _campaigns_page(program, form, None, 422)


@bp.get("/programs/<int:program_id>/campaigns/<int:campaign_id>")
@console_page
def campaign(program: Program, campaign_id: int) -> ResponseReturnValue:
    """A campaign: its dry run before sending, its progress while sending, its results."""
    found = _campaign_or_404(program, campaign_id)
    return _campaign_page(program, found)


def _campaign_page(program: Program, found: Any, problem: str | None = None,
                   status: int = 200) -> ResponseReturnValue:
    editable = found.status in service.EDITABLE
    dry = service.dry_run(program, found.id) if editable else None
    return render_template("console/campaign.html", campaign=found, dry=dry,
                           editable=editable, problem=problem,
                           results=service.results(program, found.id),
                           action_form=ActionForm()), status


def _form_data(program: Program, campaign: Any) -> dict[str, Any]:
    """The builder's fields for a stored campaign (days and times in the program's zone)."""
    zone = ZoneInfo(program.time_zone)
    segment = segments.Segment.from_json(campaign.segment)

    def day(moment: date | datetime | None) -> date | None:
        if isinstance(moment, datetime):
            return moment.astimezone(zone).date()
        return moment

    def yes_no(value: bool | None) -> str:
        return {True: "yes", False: "no"}.get(value, "")  # type: ignore[arg-type]

    data: dict[str, Any] = {
        "name": campaign.name, "bonus_points": campaign.bonus_points,
        "holdout_percent": campaign.holdout_percent,
        "scheduled_at": campaign.scheduled_at.astimezone(zone).replace(tzinfo=None)
        if campaign.scheduled_at else None,
        "tier_ids": list(segment.tier_ids), "languages": list(segment.languages),
        "location_ids": list(segment.location_ids),
        "last_visit_after": day(segment.last_visit_after),
        "last_visit_before": day(segment.last_visit_before),
        "balance_min": segment.balance_min, "balance_max": segment.balance_max,
        "expiring_within_days": segment.expiring_within_days,
        "birthday_month": str(segment.birthday_month) if segment.birthday_month else "",
        "apple_installed": yes_no(segment.apple_installed),
        "google_installed": yes_no(segment.google_installed),
        "joined_from": day(segment.joined_from), "joined_until": day(segment.joined_until)}
    for code, message in (campaign.messages or {}).items():
        if code in LANGUAGE_NAMES:
            data[f"lock_{code}"] = message.get("lock_screen", "")
            data[f"back_{code}"] = message.get("back", "")
    return data


def _not_editable(program: Program, found: Any) -> ResponseReturnValue:
    problem = _("This campaign is %(status)s: it can no longer be edited.",
                status=str(STATUS_NAMES[found.status.value]).lower())
    return _campaign_page(program, found, problem, 409)


@bp.route("/programs/<int:program_id>/campaigns/<int:campaign_id>/edit",
          methods=["GET", "POST"])
@console_page
def campaign_edit(program: Program, campaign_id: int) -> ResponseReturnValue:
    """The builder filled with a draft or scheduled campaign: a plain POST with "count"
    counts the conditions; saving changes it (service.update_campaign, as the API's PATCH)
    and shows it."""
    found = _campaign_or_404(program, campaign_id)
    if found.status not in service.EDITABLE:
        return _not_editable(program, found)
    if request.method != "POST":
        form = CampaignForm(program, data=_form_data(program, found))
        return _edit_page(program, found, form, segments.count(
            program, segments.Segment.from_json(found.segment)), 200)
    form = CampaignForm(program)
    if "count" in request.form:
        found_count = _count(SegmentForm(program))
        form.validate()
        for name in ("name", "back_en"):
            form[name].errors = []
        return _edit_page(program, found, form, found_count,
                          200 if found_count is not None else 422)
    if form.validate():
        try:
            service.update_campaign(
                program, campaign_id, name=form.name.data, segment=form.segment(),
                messages=form.messages(), bonus_points=form.bonus_points.data,
                holdout_percent=form.holdout_percent.data or 0, scheduled_at=form.when())
        except Conflict:  # sent or cancelled meanwhile
            return _not_editable(program, service.get(program, campaign_id))
        except Unprocessable as error:
            form.form_errors.append(error.detail)
        else:
            return redirect(url_for("console.campaign", program_id=program.id,
                                    campaign_id=campaign_id), 303)
    return _edit_page(program, found, form, None, 422)


def _edit_page(program: Program, found: Any, form: CampaignForm, count: int | None,
               status: int) -> ResponseReturnValue:
    edit_url = url_for("console.campaign_edit", program_id=program.id, campaign_id=found.id)
    return render_template("console/campaign_edit.html", campaign=found, form=form,
                           count=count, count_url=edit_url, save_url=edit_url,
                           save_label=_("Save changes")), status


@bp.get("/programs/<int:program_id>/campaigns/<int:campaign_id>/progress")
@console_page
def campaign_progress(program: Program, campaign_id: int) -> ResponseReturnValue:
    """The progress fragment (htmx polls it while the campaign is sending)."""
    found = _campaign_or_404(program, campaign_id)
    return render_template("console/campaign_progress.html", campaign=found,
                           results=service.results(program, campaign_id))


@bp.post("/programs/<int:program_id>/campaigns/<int:campaign_id>/send")
@console_page
def campaign_send(program: Program, campaign_id: int) -> ResponseReturnValue:
    _campaign_or_404(program, campaign_id)
    with contextlib.suppress(Conflict):  # sent or cancelled meanwhile: the page says which
        service.send(program, campaign_id)
    return redirect(url_for("console.campaign", program_id=program.id,
                            campaign_id=campaign_id), 303)


@bp.post("/programs/<int:program_id>/campaigns/<int:campaign_id>/cancel")
@console_page
def campaign_cancel(program: Program, campaign_id: int) -> ResponseReturnValue:
    _campaign_or_404(program, campaign_id)
    with contextlib.suppress(Conflict):
        service.cancel(program, campaign_id)
    return redirect(url_for("console.campaign", program_id=program.id,
                            campaign_id=campaign_id), 303)


def _campaign_or_404(program: Program, campaign_id: int) -> Any:
    try:
        return service.get(program, campaign_id)
    except NotFound:
        abort(404)


@bp.post("/programs/<int:program_id>/campaigns/count")
@console_page
def segment_count(program: Program) -> ResponseReturnValue:
    """The count fragment (htmx): the form's conditions counted, or why they cannot be."""
    form = SegmentForm(program)
    found = _count(form)
    html = render_template("console/segment_count.html", form=form, count=found)
    return html, 200  # errors too: htmx swaps 2xx answers only


STATUS_NAMES = {"draft": _l("Draft"), "scheduled": _l("Scheduled"), "sending": _l("Sending"),
                "sent": _l("Sent"), "cancelled": _l("Cancelled")}


@bp.context_processor
def _campaign_words() -> dict[str, Any]:
    return {"status_names": STATUS_NAMES}


pages.section(_l("Campaigns"), "console.campaigns", pages=("console.campaign",))
