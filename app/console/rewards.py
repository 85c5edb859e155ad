"""The console's "Rewards and tiers" and "Earning rules" pages.

Thin views over :mod:`app.loyalty.rewards` and :mod:`app.loyalty.rules` (the services the
API uses): plain forms that post and redirect back; with htmx the reward list's up and down
buttons swap the list in place and the rules preview answers in place.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    DecimalField,
    Field,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import (
    AnyOf,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from app.console import pages
from app.console.pages import console_page
from app.errors import DomainError
from app.loyalty import rewards, rules
from app.loyalty.ledger import MAX_AMOUNT, MAX_POINTS
from app.loyalty.models import CURRENCIES, EarningRule, Program, ProgramLocation, RuleKind
from app.schemas import invisible_character
from app.web.pagekit import PageForm

pages.section(_l("Rewards and tiers"), "console.rewards", pages=(
    "console.create_reward", "console.edit_reward", "console.move_reward", "console.retire_reward",
    "console.create_tier", "console.edit_tier", "console.delete_tier"))
pages.section(_l("Earning rules"), "console.rules", pages=(
    "console.create_rule", "console.edit_rule", "console.switch_rule", "console.delete_rule"))


def plain_text(form: Any, field: Field) -> None:
    """Refuse what the API refuses in text: NUL and invisible or direction-changing marks."""
    value = field.data or ""
    if "\x00" in value or invisible_character(value):
        raise ValidationError(_("Remove the invisible characters from this text."))


def _name(max_length: int) -> StringField:
    return StringField(_l("Name"), validators=[
        InputRequired(_l("Please enter a name.")), Length(max=max_length), plain_text])


class RewardForm(PageForm):
    name = _name(120)
    points_cost = IntegerField(_l("Points it costs"), validators=[
        InputRequired(_l("Please enter the points it costs.")),
        NumberRange(1, MAX_POINTS)])
    active = BooleanField(_l("Offered to members"), default=True)


class MoveForm(PageForm):
    direction = StringField(validators=[AnyOf(["up", "down"])])


class ConfirmForm(PageForm):
    """A button that changes something: the CSRF token only."""


class TierForm(PageForm):
    name = _name(64)
    threshold = IntegerField(_l("Lifetime points to reach it"), validators=[
        InputRequired(_l("Please enter a number of points.")), NumberRange(0, MAX_POINTS)])
    multiplier_percent = IntegerField(_l("Points multiplier (percent)"), default=100,
                                      validators=[InputRequired(), NumberRange(100, 1000)])


# --- Rewards and tiers -------------------------------------------------------------------------


def _reward_forms(program: Program, failed: dict[int, RewardForm] | None = None
                  ) -> dict[int, RewardForm]:
    forms = {}
    for reward in rewards.current(program):
        form = (failed or {}).get(reward.id)
        if form is None:
            form = RewardForm(formdata=None, obj=reward, prefix=f"reward-{reward.id}-")
        forms[reward.id] = form
    return forms


def _tier_forms(program: Program, failed: dict[int, TierForm] | None = None
                ) -> dict[int, TierForm]:
    return {tier.id: (failed or {}).get(tier.id)
            or TierForm(formdata=None, obj=tier, prefix=f"tier-{tier.id}-")
            for tier in program.tiers}


def _rewards_page(program: Program, status: int = 200, *, new: RewardForm | None = None,
                  edits: dict[int, RewardForm] | None = None, new_tier: TierForm | None = None,
                  tier_edits: dict[int, TierForm] | None = None,
                  problem: str | None = None) -> tuple[str, int]:
    return render_template(
        "console/rewards.html", current=rewards.current(program),
        retired=rewards.retired(program),
        new=new or RewardForm(prefix="new-", formdata=None),
        edits=_reward_forms(program, edits), move=MoveForm(), confirm=ConfirmForm(),
        new_tier=new_tier or TierForm(prefix="new-tier-", formdata=None),
        tier_edits=_tier_forms(program, tier_edits), problem=problem), status


def _back(program: Program, anchor: str = "") -> ResponseReturnValue:
    return redirect(url_for("console.rewards", program_id=program.id) + anchor, 303)


@pages.bp.get("/programs/<int:program_id>/rewards", endpoint="rewards")
@console_page
def rewards_page(program: Program) -> ResponseReturnValue:
    return _rewards_page(program)


@pages.bp.post("/programs/<int:program_id>/rewards")
@console_page
def create_reward(program: Program) -> ResponseReturnValue:
    form = RewardForm(prefix="new-")
    if not form.validate():
        return _rewards_page(program, 422, new=form)
    rewards.create(program, name=form.name.data or "", points_cost=form.points_cost.data or 0,
                   active=bool(form.active.data))
    return _back(program, "#rewards")


@pages.bp.post("/programs/<int:program_id>/rewards/<int:reward_id>")
@console_page
def edit_reward(program: Program, reward_id: int) -> ResponseReturnValue:
    reward = rewards.get(program, reward_id) if _exists(program, reward_id) else None
    if reward is None or reward.retired_at is not None:
        return _rewards_page(program, 404 if reward is None else 409,
                             problem=_("That reward is retired or gone."))
    form = RewardForm(prefix=f"reward-{reward_id}-")
    if not form.validate():
        return _rewards_page(program, 422, edits={reward_id: form})
    rewards.edit(program, reward_id, name=form.name.data, points_cost=form.points_cost.data,
                 active=bool(form.active.data))
    return _back(program, f"#reward-{reward_id}")


def _exists(program: Program, reward_id: int) -> bool:
    try:
        rewards.get(program, reward_id)
    except DomainError:
        return False
    return True


@pages.bp.post("/programs/<int:program_id>/rewards/<int:reward_id>/move")
@console_page
def move_reward(program: Program, reward_id: int) -> ResponseReturnValue:
    form = MoveForm()
    if not _exists(program, reward_id):
        return _rewards_page(program, 404, problem=_("That reward is retired or gone."))
    if not form.validate():
        return _rewards_page(program, 422)
    try:
        rewards.move(program, reward_id, -1 if form.direction.data == "up" else 1)
    except DomainError:
        return _rewards_page(program, 409, problem=_("That reward is retired or gone."))
    if request.headers.get("HX-Request"):
        return render_template("console/_reward_list.html", current=rewards.current(program),
                               edits=_reward_forms(program), move=MoveForm())
    return _back(program, f"#reward-{reward_id}")


@pages.bp.route("/programs/<int:program_id>/rewards/<int:reward_id>/retire",
                methods=["GET", "POST"])
@console_page
def retire_reward(program: Program, reward_id: int) -> ResponseReturnValue:
    if not _exists(program, reward_id):
        return _rewards_page(program, 404, problem=_("That reward is retired or gone."))
    reward = rewards.get(program, reward_id)
    form = ConfirmForm()
    if reward.retired_at is not None:
        return _rewards_page(program, 409, problem=_("That reward is retired or gone."))
    if request.method == "GET" or not form.validate():
        return render_template("console/retire_reward.html", reward=reward, form=form), (
            200 if request.method == "GET" else 422)
    rewards.retire(program, reward_id)
    return _back(program, "#retired")


@pages.bp.post("/programs/<int:program_id>/tiers")
@console_page(admin=True)
def create_tier(program: Program) -> ResponseReturnValue:
    form = TierForm(prefix="new-tier-")
    if not form.validate():
        return _rewards_page(program, 422, new_tier=form)
    try:
        rewards.add_tier(program, name=form.name.data or "", threshold=form.threshold.data or 0,
                         multiplier_percent=form.multiplier_percent.data or 100)
    except DomainError as error:
        form.threshold.errors = [_tier_problem(error)]
        return _rewards_page(program, error.status, new_tier=form)
    return _back(program, "#tiers")


def _tier_problem(error: DomainError) -> str:
    if error.code == "base-tier":
        return _("The base tier stays at 0 points: every card has a tier.")
    if error.code == "tier-in-use":
        return _("Earning rules name this tier: change them first.")
    return _("Another tier has this threshold.")


@pages.bp.post("/programs/<int:program_id>/tiers/<int:tier_id>")
@console_page(admin=True)
def edit_tier(program: Program, tier_id: int) -> ResponseReturnValue:
    if tier_id not in {t.id for t in program.tiers}:
        return _rewards_page(program, 404, problem=_("That tier is gone."))
    form = TierForm(prefix=f"tier-{tier_id}-")
    if not form.validate():
        return _rewards_page(program, 422, tier_edits={tier_id: form})
    try:
        rewards.edit_tier(program, tier_id, name=form.name.data,
                          threshold=form.threshold.data,
                          multiplier_percent=form.multiplier_percent.data)
    except DomainError as error:
        form.threshold.errors = [_tier_problem(error)]
        return _rewards_page(program, error.status, tier_edits={tier_id: form})
    return _back(program, "#tiers")


@pages.bp.post("/programs/<int:program_id>/tiers/<int:tier_id>/delete")
@console_page(admin=True)
def delete_tier(program: Program, tier_id: int) -> ResponseReturnValue:
    if tier_id not in {t.id for t in program.tiers}:
        return _rewards_page(program, 404, problem=_("That tier is gone."))
    if not ConfirmForm().validate():
        return _rewards_page(program, 422)
    try:
        rewards.delete_tier(program, tier_id)
    except DomainError as error:
        return _rewards_page(program, error.status, problem=_tier_problem(error))
    return _back(program, "#tiers")


# --- Earning rules -----------------------------------------------------------------------------

KIND_LABELS = {
    RuleKind.WELCOME: _l("Welcome points (on joining)"),
    RuleKind.BIRTHDAY: _l("Birthday points"),
    RuleKind.REFERRAL: _l("Referral points"),
    RuleKind.MULTIPLIER: _l("Points multiplier on purchases"),
    RuleKind.BONUS: _l("Bonus points on purchases"),
}
DAYS = [(1, _l("Monday")), (2, _l("Tuesday")), (3, _l("Wednesday")), (4, _l("Thursday")),
        (5, _l("Friday")), (6, _l("Saturday")), (7, _l("Sunday"))]
# Why a rule gives nothing in the preview (app.loyalty.rules.refusal's reasons).
REASONS = {
    "disabled": _l("switched off"), "not_started": _l("not started yet"),
    "ended": _l("ended"), "tier": _l("another tier"), "location": _l("another location"),
    "min_amount": _l("below the minimum purchase"), "day_of_week": _l("another day"),
    "time_window": _l("outside its hours"), "first_purchase_only": _l("first purchase only"),
    "max_awards": _l("given as often as allowed"),
}
CLOCK = Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", message=_l("Use a time like 22:30."))


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form: Any) -> None:  # choices are checked by the service
        values = {str(value) for value, _label in (self.choices or [])}
        for item in self.data or []:
            if str(item) not in values:
                raise ValidationError(_("Not one of the choices."))


# Amounts are typed in the currency's main unit (rupiah, baht, ringgit): two decimals at most.
LARGEST_AMOUNT = Decimal(MAX_AMOUNT) / 100


def money(form: Any, field: Field) -> None:
    """An amount of money: a finite number (not NaN), at most two decimals, in range."""
    value = field.data
    if value is None:
        return
    if not value.is_finite() or not Decimal("0.01") <= value <= LARGEST_AMOUNT:
        raise StopValidation(_("Enter an amount between 0.01 and %(most)s.",
                               most=f"{LARGEST_AMOUNT:,.2f}"))
    if value != value.quantize(Decimal("0.01")):
        raise StopValidation(_("Use at most two decimals."))


def _optional_count(label: Any, low: int, high: int) -> IntegerField:
    return IntegerField(label, validators=[Optional(), NumberRange(low, high)])


class RuleForm(PageForm):
    kind = SelectField(_l("Kind"), choices=[(k.value, label) for k, label in KIND_LABELS.items()],
                       validators=[InputRequired()])
    name = _name(120)
    points = _optional_count(_l("Points (welcome, birthday, bonus)"), 1, MAX_POINTS)
    percent = _optional_count(_l("Percent of the purchase's points (multiplier; 200 = double)"),
                              101, 10_000)
    referrer_points = _optional_count(_l("Points for the member who referred"), 0, MAX_POINTS)
    referee_points = _optional_count(_l("Points for the new member"), 0, MAX_POINTS)
    priority = IntegerField(_l("Priority (higher runs first)"), default=0, validators=[
        InputRequired(), NumberRange(-1_000_000, 1_000_000)])
    stackable = BooleanField(_l("Later rules still apply after this one"), default=True)
    tiers = CheckboxesField(_l("Only for tiers"), choices=[])
    location_ids = CheckboxesField(_l("Only at locations"), choices=[], coerce=int)
    min_amount = DecimalField(_l("Minimum purchase"), places=None,
                              validators=[Optional(), money])
    days_of_week = CheckboxesField(_l("Only on days"), choices=DAYS, coerce=int)
    time_from = StringField(_l("From (local time)"), validators=[Optional(), CLOCK])
    time_to = StringField(_l("Until (local time)"), validators=[Optional(), CLOCK])
    starts_at = DateTimeLocalField(_l("Starts"), format="%Y-%m-%dT%H:%M",
                                   validators=[Optional()])
    ends_at = DateTimeLocalField(_l("Ends"), format="%Y-%m-%dT%H:%M", validators=[Optional()])
    first_purchase_only = BooleanField(_l("First purchase only"))
    max_awards_per_member = _optional_count(_l("At most this many times per member"), 1,
                                            1_000_000)

    def for_program(self, program: Program) -> RuleForm:
        self.tiers.choices = [(t.name, t.name) for t in program.tiers]
        self.location_ids.choices = [(loc.id, loc.name) for loc in _locations(program)]
        return self


class PreviewForm(PageForm):
    amount = DecimalField(_l("Purchase amount"), places=None, validators=[
        InputRequired(_l("Please enter an amount.")), money])
    at = DateTimeLocalField(_l("Date and time"), format="%Y-%m-%dT%H:%M",
                            validators=[Optional()])
    location_id = SelectField(_l("Location"), choices=[], validators=[Optional()])
    tier = SelectField(_l("Member's tier"), choices=[], validators=[Optional()])

    def for_program(self, program: Program) -> PreviewForm:
        self.location_id.choices = [("", _("Any"))] + [
            (str(loc.id), loc.name) for loc in _locations(program)]
        self.tier.choices = [("", _("None"))] + [(t.name, t.name) for t in program.tiers]
        return self


def _locations(program: Program) -> list[ProgramLocation]:
    return list(program.locations)


def _minor(program: Program, amount: Decimal) -> int:
    return int(amount * 10 ** CURRENCIES.get(program.currency, 2))


def _major(program: Program, minor: int) -> Decimal:
    return Decimal(minor) / 10 ** CURRENCIES.get(program.currency, 2)


def _local(program: Program, moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=ZoneInfo(program.time_zone)) if moment else None


AMOUNT_FIELDS = {RuleKind.WELCOME: ("points",), RuleKind.BIRTHDAY: ("points",),
                 RuleKind.BONUS: ("points",), RuleKind.MULTIPLIER: ("percent",),
                 RuleKind.REFERRAL: ("referrer_points", "referee_points")}


def _rule_values(program: Program, form: RuleForm, kind: RuleKind) -> dict[str, Any]:
    """What the form says, as the rules service takes it: the kind's own amounts only."""
    values: dict[str, Any] = {"name": form.name.data, "priority": form.priority.data,
                              "stackable": bool(form.stackable.data)}
    for name in AMOUNT_FIELDS[kind]:
        values[name] = getattr(form, name).data
    conditions: dict[str, Any] = {
        "tiers": form.tiers.data or None, "location_ids": form.location_ids.data or None,
        "min_amount": _minor(program, form.min_amount.data)
        if form.min_amount.data is not None else None,
        "days_of_week": form.days_of_week.data or None,
        "time_from": form.time_from.data or None, "time_to": form.time_to.data or None,
        "starts_at": _local(program, form.starts_at.data),
        "ends_at": _local(program, form.ends_at.data),
        "first_purchase_only": True if form.first_purchase_only.data else None,
        "max_awards_per_member": form.max_awards_per_member.data}
    values["conditions"] = {k: v for k, v in conditions.items() if v is not None} or None
    return values


def _form_of(program: Program, rule: EarningRule) -> RuleForm:
    conditions = dict(rule.conditions or {})
    data: dict[str, Any] = {
        "kind": rule.kind.value, "name": rule.name, "points": rule.points,
        "percent": rule.percent, "referrer_points": rule.referrer_points,
        "referee_points": rule.referee_points, "priority": rule.priority,
        "stackable": rule.stackable, **conditions}
    if "min_amount" in conditions:
        data["min_amount"] = _major(program, conditions["min_amount"])
    for name in ("starts_at", "ends_at"):
        if conditions.get(name):
            data[name] = datetime.fromisoformat(conditions[name]).astimezone(
                ZoneInfo(program.time_zone)).replace(tzinfo=None)
    return RuleForm(formdata=None, data=data, prefix=f"rule-{rule.id}-").for_program(program)


def _rules_page(program: Program, status: int = 200, *, new: RuleForm | None = None,
                edits: dict[int, RuleForm] | None = None, preview_form: PreviewForm | None = None,
                preview: rules.Preview | None = None,
                problem: str | None = None) -> tuple[str, int]:
    live = rules.list_rules(program)
    forms = {rule.id: (edits or {}).get(rule.id) or _form_of(program, rule) for rule in live}
    return render_template(
        "console/rules.html", rules=live, forms=forms, kind_labels=KIND_LABELS, reasons=REASONS,
        amount_fields=AMOUNT_FIELDS,
        new=new or RuleForm(prefix="new-", formdata=None).for_program(program),
        confirm=ConfirmForm(), problem=problem,
        preview_form=preview_form or PreviewForm(prefix="try-", formdata=None).for_program(
            program), preview=preview), status


def _service_errors(form: RuleForm, error: DomainError) -> None:
    """Put a refusal of the rules service on the fields it names."""
    placed = False
    for problem in error.extra.get("errors") or []:
        name = str(problem.get("field", "")).removeprefix("conditions.")
        field = getattr(form, name, None)
        if isinstance(field, Field):
            field.errors = [*field.errors, problem.get("message", "")]
            placed = True
    if not placed:
        form.form_errors.append(error.detail)


@pages.bp.get("/programs/<int:program_id>/rules", endpoint="rules")
@console_page
def rules_page(program: Program) -> ResponseReturnValue:
    return _rules_page(program)


@pages.bp.post("/programs/<int:program_id>/rules")
@console_page
def create_rule(program: Program) -> ResponseReturnValue:
    form = RuleForm(prefix="new-").for_program(program)
    if not form.validate():
        return _rules_page(program, 422, new=form)
    kind = RuleKind(form.kind.data)
    try:
        rule = rules.create_rule(program, kind=kind, **_rule_values(program, form, kind))
    except DomainError as error:
        _service_errors(form, error)
        return _rules_page(program, 422, new=form)
    return redirect(url_for("console.rules", program_id=program.id) + f"#rule-{rule.id}", 303)


def _live_rule(program: Program, rule_id: int) -> EarningRule | None:
    try:
        rule = rules.get_rule(program, rule_id)
    except DomainError:
        return None
    return rule if rule.deleted_at is None else None


@pages.bp.post("/programs/<int:program_id>/rules/<int:rule_id>")
@console_page
def edit_rule(program: Program, rule_id: int) -> ResponseReturnValue:
    rule = _live_rule(program, rule_id)
    if rule is None:
        return _rules_page(program, 404, problem=_("That rule is gone."))
    form = RuleForm(prefix=f"rule-{rule_id}-").for_program(program)
    del form["kind"]  # a rule keeps its kind
    if not form.validate():
        return _rules_page(program, 422, edits={rule_id: form})
    values = _rule_values(program, form, RuleKind(rule.kind))
    try:
        rules.update_rule(program, rule_id, **values)
    except DomainError as error:
        _service_errors(form, error)
        return _rules_page(program, 422, edits={rule_id: form})
    return redirect(url_for("console.rules", program_id=program.id) + f"#rule-{rule_id}", 303)


class SwitchForm(PageForm):
    enabled = StringField(validators=[AnyOf(["on", "off"])])


@pages.bp.post("/programs/<int:program_id>/rules/<int:rule_id>/switch")
@console_page
def switch_rule(program: Program, rule_id: int) -> ResponseReturnValue:
    """Switch a rule on or off (off: it applies to nothing, and stays listed)."""
    if _live_rule(program, rule_id) is None:
        return _rules_page(program, 404, problem=_("That rule is gone."))
    form = SwitchForm()
    if not form.validate():
        return _rules_page(program, 422)
    rules.update_rule(program, rule_id, enabled=form.enabled.data == "on")
    return redirect(url_for("console.rules", program_id=program.id) + f"#rule-{rule_id}", 303)


@pages.bp.post("/programs/<int:program_id>/rules/<int:rule_id>/delete")
@console_page
def delete_rule(program: Program, rule_id: int) -> ResponseReturnValue:
    if _live_rule(program, rule_id) is None:
        return _rules_page(program, 404, problem=_("That rule is gone."))
    if not ConfirmForm().validate():
        return _rules_page(program, 422)
    rules.delete_rule(program, rule_id)
    return redirect(url_for("console.rules", program_id=program.id), 303)


@pages.bp.post("/programs/<int:program_id>/rules/preview")
@console_page
def preview_rules(program: Program) -> ResponseReturnValue:
    form = PreviewForm(prefix="try-").for_program(program)
    fragment = bool(request.headers.get("HX-Request"))
    result, status = None, 200
    if form.validate():
        try:
            result = rules.preview(
                program, amount=_minor(program, form.amount.data or Decimal(0)),
                currency=program.currency, tier=form.tier.data or None,
                location_id=int(form.location_id.data) if form.location_id.data else None,
                at=_local(program, form.at.data))
        except DomainError as error:
            fields = [p.get("field") for p in error.extra.get("errors") or []]
            form.amount.errors = [*form.amount.errors, _("This purchase earns no points.")
                                  if fields == ["amount"] else error.detail]
            status = 422
    else:
        status = 422
    if fragment:
        return render_template("console/_rules_preview.html", preview_form=form,
                               preview=result, reasons=REASONS), status
    return _rules_page(program, status, preview_form=form, preview=result)

