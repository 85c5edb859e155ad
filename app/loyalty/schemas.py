"""Request and response schemas for programs, members, cards and the ledger."""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar
from zoneinfo import available_timezones

from apiflask import fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, validates_schema

from app.loyalty import program_texts
from app.loyalty.ledger import MAX_AMOUNT, MAX_POINTS
from app.loyalty.models import CURRENCIES, EntryKind
from app.schemas import (
    HEX_COLOR,
    MAX_ID,
    InputSchema,
    PlainText,
    StrictBoolean,
    StrictInteger,
    text,
)
from passes.languages import LANGUAGES

POINTS = validators.Range(min=1, max=MAX_POINTS)
COUNT = validators.Range(min=0, max=MAX_POINTS)


class TierIn(InputSchema):
    name = text(64, required=True)
    threshold = StrictInteger(required=True, validate=COUNT)
    multiplier_percent = StrictInteger(load_default=100, validate=validators.Range(100, 1000))


class RewardIn(InputSchema):
    name = text(120, required=True)
    points_cost = StrictInteger(required=True, validate=POINTS)
    active = StrictBoolean(load_default=True)


class RewardPatchIn(InputSchema):
    """The fields given replace the stored ones."""

    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    name = text(120)
    points_cost = StrictInteger(validate=POINTS)
    active = StrictBoolean(metadata={"description": "false: kept, but not offered for now"})

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.")


class RewardOrderIn(InputSchema):
    reward_ids = fields.List(
        StrictInteger(validate=validators.Range(1, MAX_ID)), required=True,
        validate=validators.Length(max=1000),
        metadata={"description": "every reward of the program that is not retired, once, "
                  "in the new order (first: listed first)"})


class TierPatchIn(InputSchema):
    """The fields given replace the stored ones."""

    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    name = text(64)
    threshold = StrictInteger(validate=COUNT)
    multiplier_percent = StrictInteger(validate=validators.Range(100, 1000))

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.")


# Schemas nested in programs are subclasses of their own: APIFlask does not notice schemas that
# the spec already holds as nested, and would register TierIn a second time as "TierIn1".
class ProgramTierIn(TierIn):
    pass


class ProgramRewardIn(RewardIn):
    pass


class ProgramTextIn(InputSchema):
    """A program's wording in one language."""

    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    terms = text(program_texts.MAX_LENGTHS["terms"])
    description = text(program_texts.MAX_LENGTHS["description"],
                       metadata={"description": "what the join page says the program is"})

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give terms, a description or both.")


_LANGUAGE_TEXTS = {"allow_none": True,
                   "metadata": {"description": "the texts in this language (null removes them)"}}


class ProgramTextsIn(InputSchema):
    """Texts per language; any other key is refused as an unknown field, named in the answer."""

    en = fields.Nested(ProgramTextIn, **_LANGUAGE_TEXTS)
    id = fields.Nested(ProgramTextIn, **_LANGUAGE_TEXTS)
    th = fields.Nested(ProgramTextIn, **_LANGUAGE_TEXTS)
    ms = fields.Nested(ProgramTextIn, **_LANGUAGE_TEXTS)


TEXTS_DESCRIPTION = (
    "Terms and description per language (en, id, th, ms). Pages and passes show a reader's "
    "language, else the program's default language, else `terms`. On PATCH each language "
    "given replaces that language's texts; null removes them.")


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _valid_time_zone(name: str) -> None:
    if name not in _time_zones():
        raise ValidationError("Not an IANA time zone name (such as Asia/Jakarta or UTC).")


SETTINGS_CHANGES = (
    "The loyalty engine's settings (docs/loyalty-engine.md) apply to what happens after the "
    "change: `points_expire_after_days` and `pending_days` to new credits, "
    "`refund_shortfall` to new refunds. Changing only settings leaves the design version "
    "and the passes as they are, except `time_zone`, in which passes show dates.")


class ProgramSettingsIn(InputSchema):
    """The loyalty engine's settings of a program (on create and PATCH)."""

    points_expire_after_days = StrictInteger(
        allow_none=True, validate=validators.Range(1, 3650),
        metadata={"description": "points of a credit expire this many days after it; "
                  "null: never (default)"})
    expiry_reminder_days = StrictInteger(
        validate=validators.Range(0, 365),
        metadata={"description": "members are reminded this many days before points "
                  "expire (default 14; 0: no reminder)"})
    pending_days = StrictInteger(
        validate=validators.Range(0, 365),
        metadata={"description": "points from purchases become spendable this many days "
                  "after the purchase (default 0: at once)"})
    refund_shortfall = fields.String(
        validate=validators.OneOf(["clamp", "forgive"]),
        metadata={"description": "a refund whose points were spent: `clamp` (default) takes "
                  "the rest from the balance down to zero, `forgive` only the purchase's own "
                  "points"})
    time_zone = fields.String(
        validate=[validators.Length(max=64), _valid_time_zone],
        metadata={"description": "IANA time zone of birthdays, days of week and time "
                  "windows (default UTC)", "example": "Asia/Jakarta"})
    value_of_1000_points = StrictInteger(
        allow_none=True, validate=validators.Range(0, MAX_AMOUNT),
        metadata={"description": "what 1,000 points are worth, in minor units of the "
                  "program's currency: the analytics' liability in money; null: not set "
                  "(default), so no money figure"})


class ProgramIn(ProgramSettingsIn):
    name = text(120, required=True)
    slug = fields.String(validate=[validators.Regexp(r"^[a-z0-9]+(-[a-z0-9]+)*$"),
                                   validators.Length(max=64)])
    organization_name = text(120)
    background_color = fields.String(validate=HEX_COLOR)
    foreground_color = fields.String(validate=HEX_COLOR)
    label_color = fields.String(validate=HEX_COLOR)
    points_label = text(32)
    currency = fields.String(validate=validators.OneOf(sorted(CURRENCIES)))
    earn_points = StrictInteger(validate=validators.Range(0, 1_000_000))
    earn_amount = StrictInteger(validate=validators.Range(1, MAX_AMOUNT))
    default_language = fields.String(validate=validators.OneOf(LANGUAGES))
    referral_bonus_points = StrictInteger(validate=COUNT)
    support_contact = text(200)
    terms = text(5000, metadata={"description": "terms in the program's default language; "
                                 "`texts` has them per language"})
    texts = fields.Nested(ProgramTextsIn, metadata={"description": TEXTS_DESCRIPTION})
    google_rotating_barcode = StrictBoolean(
        metadata={"description": "Google cards show a rotating (TOTP) barcode"})
    tiers = fields.List(fields.Nested(ProgramTierIn), validate=validators.Length(max=20))
    rewards = fields.List(fields.Nested(ProgramRewardIn), validate=validators.Length(max=100))


class DesignFieldsIn(InputSchema):
    """How a program looks: what a PATCH of its design and a design preview take."""

    name = text(120)
    organization_name = text(120)
    background_color = fields.String(validate=HEX_COLOR)
    foreground_color = fields.String(validate=HEX_COLOR)
    label_color = fields.String(validate=HEX_COLOR)
    points_label = text(32)
    support_contact = text(200)
    terms = text(5000)
    texts = fields.Nested(ProgramTextsIn, metadata={"description": TEXTS_DESCRIPTION})


class DesignIn(DesignFieldsIn, ProgramSettingsIn):
    """A PATCH of a program: its design, its settings or both."""

    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    google_rotating_barcode = StrictBoolean()

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.")


class TierOut(Schema):
    id = fields.Integer()
    name = fields.String()
    threshold = fields.Integer()
    multiplier_percent = fields.Integer()


class RewardOfferOut(Schema):
    """A reward as a till offers it."""

    id = fields.Integer()
    name = fields.String()
    points_cost = fields.Integer()


class RewardOut(RewardOfferOut):
    active = fields.Boolean()
    position = fields.Integer(metadata={"description": "the program's order, lowest first"})
    retired_at = fields.DateTime(allow_none=True, metadata={
        "description": "when it was retired (no longer offered, for good); null: current"})


class RewardList(Schema):
    rewards = fields.List(fields.Nested(RewardOut), metadata={
        "description": "current rewards in the program's order, then retired ones, most "
        "recently retired first"})


class TierList(Schema):
    tiers = fields.List(fields.Nested(TierOut), metadata={"description": "by threshold"})


class ProgramTierOut(TierOut):
    pass


class ProgramRewardOut(RewardOut):
    pass


class ProgramTextOut(Schema):
    terms = fields.String()
    description = fields.String()


class ProgramTextsOut(Schema):
    en = fields.Nested(ProgramTextOut)
    id = fields.Nested(ProgramTextOut)
    th = fields.Nested(ProgramTextOut)
    ms = fields.Nested(ProgramTextOut)


class ProgramOut(Schema):
    id = fields.Integer()
    slug = fields.String()
    name = fields.String()
    organization_name = fields.String()
    background_color = fields.String()
    foreground_color = fields.String()
    label_color = fields.String()
    points_label = fields.String()
    currency = fields.String()
    earn_points = fields.Integer()
    earn_amount = fields.Integer(metadata={"description": "minor units per earn_points"})
    default_language = fields.String()
    referral_bonus_points = fields.Integer()
    support_contact = fields.String(allow_none=True)
    terms = fields.String(allow_none=True)
    texts = fields.Nested(ProgramTextsOut, allow_none=True)
    google_rotating_barcode = fields.Boolean()
    points_expire_after_days = fields.Integer(allow_none=True)
    expiry_reminder_days = fields.Integer()
    pending_days = fields.Integer()
    refund_shortfall = fields.String()
    time_zone = fields.String()
    value_of_1000_points = fields.Integer(allow_none=True, metadata={
        "description": "minor units of the currency per 1,000 points (null: not set)"})
    tiers = fields.List(fields.Nested(ProgramTierOut))
    rewards = fields.List(fields.Nested(ProgramRewardOut), attribute="current_rewards",
                          metadata={"description": "the rewards not retired, in the program's "
                                    "order; `GET /programs/{id}/rewards` lists retired ones too"})


class ProgramList(Schema):
    programs = fields.List(fields.Nested(ProgramOut))


class LocationIn(InputSchema):
    name = text(120, required=True)
    latitude = fields.Float(required=True, validate=validators.Range(-90, 90))
    longitude = fields.Float(required=True, validate=validators.Range(-180, 180))
    relevant_text = text(200, metadata={"description": "shown on the lock screen nearby"})


class LocationOut(Schema):
    id = fields.Integer()
    name = fields.String()
    latitude = fields.Float()
    longitude = fields.Float()
    relevant_text = fields.String(allow_none=True)


class LocationPatchIn(InputSchema):
    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    name = text(120)
    latitude = fields.Float(validate=validators.Range(-90, 90))
    longitude = fields.Float(validate=validators.Range(-180, 180))
    relevant_text = text(200, allow_none=True,
                         metadata={"description": "shown on the lock screen nearby"})

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.")


class LocationList(Schema):
    locations = fields.List(fields.Nested(LocationOut))


class VoidIn(InputSchema):
    reason = text(500, required=True)


class MemberIn(InputSchema):
    name = text(120, required=True)
    email = fields.Email(validate=[validators.Length(max=254), PlainText()])
    phone = fields.String(validate=validators.Regexp(r"^\+?[0-9 ()-]{5,32}$"))
    language = fields.String(validate=validators.OneOf(LANGUAGES))
    birthday = fields.Date()
    referral_code = fields.String(validate=[validators.Length(min=4, max=16), PlainText()])
    consent_marketing = StrictBoolean(load_default=False)
    consent_terms = StrictBoolean(load_default=False)


class LedgerEntryOut(Schema):
    id = fields.Integer()
    kind = fields.Enum(EntryKind, by_value=True)
    points = fields.Integer()
    balance_after = fields.Integer()
    reference = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    amount = fields.Integer(allow_none=True)
    currency = fields.String(allow_none=True)
    created_at = fields.DateTime()


class PointsOnDayOut(Schema):
    points = fields.Integer()
    at = fields.DateTime(metadata={"description": "the earliest instant of them"})


class CardOut(Schema):
    serial_number = fields.String()
    status = fields.String()
    balance = fields.Integer()
    available_points = fields.Integer(metadata={
        "description": "points the card can spend now (equal to `balance`)"})
    pending_points = fields.Integer(metadata={
        "description": "points earned that are not spendable yet (the program's "
        "`pending_days`); they count for tiers once available"})
    next_release = fields.Nested(PointsOnDayOut, allow_none=True, metadata={
        "description": "pending points that become available next: those due on the day "
        "(program's time zone) of the earliest; null when none are pending"})
    next_expiry = fields.Nested(PointsOnDayOut, allow_none=True, metadata={
        "description": "available points that expire next: those expiring on the day "
        "(program's time zone) of the soonest; null when none expire"})
    lifetime_points = fields.Integer()
    tier = fields.String(allow_none=True)
    program_id = fields.Integer()
    apple_pass_url = fields.String(allow_none=True)
    google_save_url = fields.String(allow_none=True, metadata={
        "description": "The Add to Google Wallet link; null while Google Wallet is not set up "
        "and, when it syncs, until a background job has created the card's object on Google "
        "(so it may be null in the enrolment's answer and appear moments later)."})


class CardDetailOut(CardOut):
    member_name = fields.String()
    recent_entries = fields.List(fields.Nested(LedgerEntryOut))


class MemberOut(Schema):
    id = fields.Integer()
    name = fields.String()
    email = fields.String(allow_none=True)
    language = fields.String()
    referral_code = fields.String()
    card = fields.Nested(CardOut)


class EarnIn(InputSchema):
    openapi_rules: ClassVar[dict[str, Any]] = {
        "oneOf": [{"required": ["points"]}, {"required": ["amount", "currency"]}],
        "dependentRequired": {"amount": ["currency"], "currency": ["amount"]},
    }
    points = StrictInteger(validate=POINTS)
    amount = StrictInteger(validate=validators.Range(1, MAX_AMOUNT),
                           metadata={"description": "purchase amount in minor units"})
    currency = fields.String(validate=validators.OneOf(sorted(CURRENCIES)))
    reference = text(128)
    location_id = StrictInteger(validate=validators.Range(1, MAX_ID), metadata={
        "description": "the program's store it was earned at (earning rules may ask for one)"})

    @validates_schema
    def _points_or_amount(self, data: dict, **kwargs: object) -> None:
        if ("points" in data) == ("amount" in data):
            raise ValidationError("Give either points or amount (with currency), not both.")
        if "amount" in data and "currency" not in data:
            raise ValidationError("An amount needs its currency.", "currency")
        if "currency" in data and "amount" not in data:
            raise ValidationError("A currency goes with an amount.", "currency")


class AdjustIn(InputSchema):
    openapi_rules: ClassVar[dict[str, Any]] = {"properties": {"points": {"not": {"const": 0}}}}
    points = StrictInteger(required=True,
                           validate=validators.Range(-MAX_POINTS, MAX_POINTS),
                           metadata={"description": "signed; non-zero"})
    reason = text(500, required=True)

    @validates_schema
    def _non_zero(self, data: dict, **kwargs: object) -> None:
        if data.get("points") == 0:
            raise ValidationError("An adjustment cannot be zero.", "points")


class PostingOut(Schema):
    serial_number = fields.String()
    balance = fields.Integer()
    lifetime_points = fields.Integer()
    tier = fields.String(allow_none=True)
    entry = fields.Nested(LedgerEntryOut)


class AwardOut(Schema):
    rule_id = fields.Integer()
    name = fields.String()
    kind = fields.String(metadata={"description": "multiplier or bonus"})
    points = fields.Integer()
    entry_id = fields.Integer(metadata={"description": "the award's own `bonus` entry"})


class EarnOut(PostingOut):
    """An earn with its breakdown: what the purchase earned and what each earning rule gave
    on it (``entry`` is the earn's own entry; ``balance`` is after all of them)."""

    base_points = fields.Integer(metadata={
        "description": "the earn's own points (the tier's multiplier included)"})
    rules = fields.List(fields.Nested(AwardOut), attribute="awards", metadata={
        "description": "the earning rules that gave points on it, in the order they ran"})
    total_points = fields.Integer(metadata={"description": "base_points and the rules' points"})


class IdempotencyHeader(InputSchema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key", validate=validators.Length(min=1, max=128)
    )

    class Meta:
        unknown = "exclude"  # other headers are none of our business


class RequiredIdempotencyHeader(IdempotencyHeader):
    idempotency_key = fields.String(
        data_key="Idempotency-Key", required=True, validate=validators.Length(min=1, max=128),
        metadata={"description": "required: a retry with the same key and body answers as "
                  "the first request did, and refunds once"})


class RefundIn(InputSchema):
    reference = text(128, required=True, metadata={
        "description": "the purchase's reference, as its earn gave it"})
    amount = StrictInteger(required=True, validate=validators.Range(1, MAX_AMOUNT),
                           metadata={"description": "the amount refunded, in minor units"})
    currency = fields.String(required=True, validate=validators.OneOf(sorted(CURRENCIES)),
                             metadata={"description": "the program's currency"})
    reason = text(500)


class RefundEntryOut(LedgerEntryOut):
    pending_points = fields.Integer(metadata={"description": "signed: pending points taken"})
    shortfall = fields.Integer(allow_none=True)
    purchase_id = fields.Integer(allow_none=True, metadata={
        "description": "the ledger entry of the refunded purchase (its earn)"})


class RefundedPurchaseOut(Schema):
    entry_id = fields.Integer(metadata={"description": "the purchase's earn entry"})
    reference = fields.String()
    amount = fields.Integer(metadata={"description": "the purchase's amount, minor units"})
    currency = fields.String()
    earned = fields.Integer(metadata={
        "description": "points the purchase earned (its earn and the rules' awards on it)"})
    refunded = fields.Integer(metadata={
        "description": "minor units refunded so far, this refund included"})
    left = fields.Integer(metadata={"description": "minor units left to refund"})


class RefundOut(Schema):
    serial_number = fields.String()
    balance = fields.Integer()
    lifetime_points = fields.Integer()
    tier = fields.String(allow_none=True)
    entry = fields.Nested(RefundEntryOut)
    clawed_back = fields.Integer(metadata={"description": "points taken from the balance"})
    pending_clawed_back = fields.Integer(metadata={
        "description": "pending points taken (the purchase's points not yet spendable)"})
    shortfall = fields.Integer(metadata={
        "description": "points due that the card no longer had (spent), not clawed back"})
    purchase = fields.Nested(RefundedPurchaseOut)
