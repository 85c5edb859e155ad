"""The earning rules API: a program's rules (admins and marketers manage them) and the
preview of what an earn would give (see :mod:`app.loyalty.rules`)."""

from __future__ import annotations

from typing import Any, ClassVar

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, validates_schema

from app.auth.security import ALL_ROLES, auth
from app.loyalty import programs, rules
from app.loyalty.ledger import MAX_AMOUNT, MAX_POINTS
from app.loyalty.models import CURRENCIES, EarningRule, RuleKind
from app.schemas import MAX_ID, InputSchema, StrictBoolean, StrictInteger, text

bp = APIBlueprint("rules", __name__, url_prefix="/api/v1", tag="Earning rules")

POINTS = validators.Range(min=1, max=MAX_POINTS)
COUNT = validators.Range(min=0, max=MAX_POINTS)
CLOCK = validators.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                          error="Must be a local time like 22:30.")
KINDS = [kind.value for kind in RuleKind]
RULES_DESCRIPTION = (
    "Rules of one occasion (an earn: `multiplier` and `bonus`; an enrolment: `welcome`; a "
    "birthday: `birthday`; a referee's first purchase: `referral`) run by `priority`, higher "
    "first, then id; a rule with `stackable` false that applies stops the rules below it. "
    "`welcome`, `birthday` and `bonus` need `points`; `multiplier` needs `percent` above 100 "
    "(200: the earn's points once more on top, rounded down); `referral` needs "
    "`referrer_points`, `referee_points` or both. Conditions are in the program's "
    "`time_zone`.")


class ConditionsIn(InputSchema):
    """When a rule applies; every condition given must hold."""

    openapi_rules: ClassVar[dict[str, Any]] = {
        "dependentRequired": {"time_from": ["time_to"], "time_to": ["time_from"]}}
    tiers = fields.List(text(64), validate=validators.Length(min=1, max=20),
                        metadata={"description": "tier names"})
    location_ids = fields.List(StrictInteger(validate=validators.Range(1, MAX_ID)),
                               validate=validators.Length(min=1, max=100))
    min_amount = StrictInteger(validate=validators.Range(1, MAX_AMOUNT),
                               metadata={"description": "purchase amount, minor units"})
    days_of_week = fields.List(StrictInteger(validate=validators.Range(1, 7)),
                               validate=validators.Length(min=1, max=7),
                               metadata={"description": "ISO days: 1 Monday .. 7 Sunday"})
    time_from = fields.String(validate=CLOCK, metadata={
        "description": "local HH:MM, included; after `time_to`: a window across midnight"})
    time_to = fields.String(validate=CLOCK, metadata={"description": "local HH:MM, excluded"})
    starts_at = fields.AwareDateTime(metadata={"description": "included"})
    ends_at = fields.AwareDateTime(metadata={"description": "excluded"})
    first_purchase_only = StrictBoolean()
    max_awards_per_member = StrictInteger(validate=validators.Range(1, 1_000_000))

    @validates_schema
    def _consistent(self, data: dict, **kwargs: object) -> None:
        if ("time_from" in data) != ("time_to" in data):
            raise ValidationError("A time window needs time_from and time_to.", "time_to")
        if "time_from" in data and data["time_from"] == data["time_to"]:
            raise ValidationError("A time window cannot be empty.", "time_to")
        if "starts_at" in data and "ends_at" in data and data["ends_at"] <= data["starts_at"]:
            raise ValidationError("Must be after starts_at.", "ends_at")


class RuleIn(InputSchema):
    kind = fields.String(required=True, validate=validators.OneOf(KINDS))
    name = text(120, required=True)
    points = StrictInteger(validate=POINTS,
                           metadata={"description": "welcome, birthday, bonus: the points"})
    percent = StrictInteger(validate=validators.Range(101, 10_000), metadata={
        "description": "multiplier: 200 = twice the earn's points"})
    referrer_points = StrictInteger(validate=COUNT)
    referee_points = StrictInteger(validate=COUNT)
    priority = StrictInteger(load_default=0, validate=validators.Range(-1_000_000, 1_000_000),
                             metadata={"description": "higher runs first"})
    stackable = StrictBoolean(load_default=True, metadata={
        "description": "false: when it applies, the rules below it do not"})
    enabled = StrictBoolean(load_default=True, metadata={
        "description": "false: switched off, it applies to nothing until switched on"})
    conditions = fields.Nested(ConditionsIn)


class RulePatchIn(InputSchema):
    """The fields given replace the stored ones; ``conditions`` as a whole (null: none)."""

    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    name = text(120)
    points = StrictInteger(validate=POINTS)
    percent = StrictInteger(validate=validators.Range(101, 10_000))
    referrer_points = StrictInteger(validate=COUNT, allow_none=True)
    referee_points = StrictInteger(validate=COUNT, allow_none=True)
    priority = StrictInteger(validate=validators.Range(-1_000_000, 1_000_000))
    stackable = StrictBoolean()
    enabled = StrictBoolean()
    conditions = fields.Nested(ConditionsIn, allow_none=True)

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.")


class ConditionsOut(Schema):
    tiers = fields.List(fields.String())
    location_ids = fields.List(fields.Integer())
    min_amount = fields.Integer()
    days_of_week = fields.List(fields.Integer())
    time_from = fields.String()
    time_to = fields.String()
    starts_at = fields.String(metadata={"format": "date-time"})
    ends_at = fields.String(metadata={"format": "date-time"})
    first_purchase_only = fields.Boolean()
    max_awards_per_member = fields.Integer()


class RuleOut(Schema):
    id = fields.Integer()
    program_id = fields.Integer()
    kind = fields.String()
    name = fields.String()
    points = fields.Integer(allow_none=True)
    percent = fields.Integer(allow_none=True)
    referrer_points = fields.Integer(allow_none=True)
    referee_points = fields.Integer(allow_none=True)
    priority = fields.Integer()
    stackable = fields.Boolean()
    enabled = fields.Boolean(metadata={"description": "false: switched off"})
    conditions = fields.Nested(ConditionsOut, allow_none=True, attribute="own_conditions")
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    deleted_at = fields.DateTime(allow_none=True, metadata={
        "description": "set by DELETE: the rule applies no more"})


class RuleList(Schema):
    rules = fields.List(fields.Nested(RuleOut))


class PreviewIn(InputSchema):
    """A purchase: for the card ``serial_number`` (its tier, whether it is its first purchase
    and its awards so far) or for a member of ``tier``."""

    openapi_rules: ClassVar[dict[str, Any]] = {"allOf": [
        {"not": {"required": ["serial_number", "tier"]}},
        {"not": {"required": ["serial_number", "first_purchase"]}},
    ]}
    serial_number = fields.String(validate=validators.Length(min=1, max=32))
    tier = text(64)
    first_purchase = StrictBoolean(metadata={
        "description": "with `tier`: preview a member's first purchase (default false)"})
    amount = StrictInteger(required=True, validate=validators.Range(1, MAX_AMOUNT),
                           metadata={"description": "purchase amount in minor units"})
    currency = fields.String(required=True, validate=validators.OneOf(sorted(CURRENCIES)))
    location_id = StrictInteger(validate=validators.Range(1, MAX_ID))
    at = fields.AwareDateTime(metadata={"description": "when (default: now)"})

    @validates_schema
    def _card_or_tier(self, data: dict, **kwargs: object) -> None:
        if "serial_number" in data and "tier" in data:
            raise ValidationError("Give a card's serial_number or a tier, not both.", "tier")
        if "serial_number" in data and "first_purchase" in data:
            raise ValidationError("A card's own ledger says whether it is its first "
                                  "purchase.", "first_purchase")


class OutcomeOut(Schema):
    rule_id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    points = fields.Integer(metadata={"description": "0 when it does not apply"})
    applies = fields.Boolean()
    reason = fields.String(allow_none=True, metadata={
        "description": "why it does not apply: not_started, ended, tier, location, "
        "min_amount, day_of_week, time_window, first_purchase_only, max_awards, disabled "
        "or stopped_by:<rule id>"})


class PreviewOut(Schema):
    base_points = fields.Integer(metadata={
        "description": "the purchase's points at the program's rate and the tier's multiplier"})
    tier = fields.String(allow_none=True)
    at = fields.DateTime()
    rules = fields.List(fields.Nested(OutcomeOut), metadata={
        "description": "every live multiplier and bonus rule, in the order they run"})
    total_points = fields.Integer()


PATH = "/programs/<int:program_id>/rules"


@bp.post(PATH)
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(RuleIn, arg_name="data")
@bp.output(RuleOut, status_code=201)
@bp.doc(summary="Add an earning rule", description=RULES_DESCRIPTION,
        responses=[401, 403, 404, 422])
def create_rule(program_id: int, data: dict[str, Any]) -> EarningRule:
    return rules.create_rule(programs.get(program_id), **data)


@bp.get(PATH)
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.output(RuleList)
@bp.doc(summary="List a program's earning rules (not deleted ones), in the order they run",
        responses=[401, 404])
def list_rules(program_id: int) -> dict[str, Any]:
    return {"rules": rules.list_rules(programs.get(program_id))}


@bp.get(PATH + "/<int:rule_id>")
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.output(RuleOut)
@bp.doc(summary="Get an earning rule (a deleted one too: ledger entries name it)",
        responses=[401, 404])
def get_rule(program_id: int, rule_id: int) -> EarningRule:
    return rules.get_rule(programs.get(program_id), rule_id)


@bp.patch(PATH + "/<int:rule_id>")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(RulePatchIn, arg_name="data")
@bp.output(RuleOut)
@bp.doc(summary="Change an earning rule", description="The fields given replace the stored "
        "ones (`conditions` as a whole; null removes them); the rule's kind stays. "
        "Awards made already stay as they are.", responses=[401, 403, 404, 422])
def update_rule(program_id: int, rule_id: int, data: dict[str, Any]) -> EarningRule:
    return rules.update_rule(programs.get(program_id), rule_id, **data)


@bp.delete(PATH + "/<int:rule_id>")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.output({}, status_code=204)
@bp.doc(summary="Delete an earning rule: it applies no more; the ledger keeps naming it",
        description="Idempotent: deleting a deleted rule answers 204 too.",
        responses=[401, 403, 404])
def delete_rule(program_id: int, rule_id: int) -> tuple[str, int]:
    rules.delete_rule(programs.get(program_id), rule_id)
    return "", 204


@bp.post(PATH + "/preview")
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.input(PreviewIn, arg_name="data")
@bp.output(PreviewOut)
@bp.doc(summary="What an earn would give: each rule's points and the total (writes nothing)",
        description="The earn evaluates the rules the same way: an earn of the same card (or "
        "tier), amount, location and moment gives these points.",
        responses=[401, 404, 422])
def preview(program_id: int, data: dict[str, Any]) -> rules.Preview:
    return rules.preview(programs.get(program_id), **data)
