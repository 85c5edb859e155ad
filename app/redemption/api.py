"""Staff API: scan a card's code, redeem a reward, reverse a redemption."""

from __future__ import annotations

from typing import Any, ClassVar

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, validates_schema

from app.auth.security import actor, auth, current_key
from app.loyalty.ledger import MAX_POINTS
from app.loyalty.schemas import IdempotencyHeader, RewardOfferOut
from app.ratelimit import limit
from app.redemption import service, shortcodes
from app.schemas import MAX_ID, InputSchema, StrictInteger, text
from app.staff.actor import TillActor
from passes.barcode import CODE_TEXT_PATTERN
from passes.shortcode import SHORT_CODE_TEXT_PATTERN

bp = APIBlueprint("redemption", __name__, url_prefix="/api/v1", tag="Redemption")

ID = validators.Range(min=1, max=MAX_ID)


# A scanned code (``PP1:…``, ``PPT:…``) or a typed short code (``K7QM-4XZ9-H3PA``).
CARD_CODE_PATTERN = f"{CODE_TEXT_PATTERN}|{SHORT_CODE_TEXT_PATTERN}"


def code_text(**kwargs: Any) -> fields.String:
    """A card code's text. The document states its format as the ``pattern``; the service
    refuses other text as a code that is not genuine (422 ``invalid-code``, as a forged one),
    not as a validation failure."""
    return fields.String(validate=validators.Length(min=1, max=200), metadata={
        "description": "the text of the card's QR code, or the short code printed under it "
        "(12 symbols such as `K7QM-4XZ9-H3PA`, in any case, with or without spaces, dashes "
        "or dots). A short code that names no card counts against the key (and device): "
        f"{shortcodes.MAX_FAILURES} within {shortcodes.WINDOW_SECONDS // 60} minutes lock "
        f"typed short codes out for {shortcodes.LOCK_SECONDS // 60} minutes (429 "
        "`short-code-locked` with `Retry-After`, even for a right code).",
        "pattern": CARD_CODE_PATTERN}, **kwargs)


class ScanIn(InputSchema):
    code = code_text(required=True)


class ScannedProgramOut(Schema):
    """The card's program, as a till shows it."""

    id = fields.Integer()
    name = fields.String()
    currency = fields.String(metadata={"description": "ISO 4217: purchases are typed in it"})
    background_color = fields.String()
    foreground_color = fields.String()
    label_color = fields.String()


class ScannedCardOut(Schema):
    serial_number = fields.String()
    member_first_name = fields.String()
    balance = fields.Integer()
    tier = fields.String(allow_none=True)
    points_label = fields.String()
    program = fields.Nested(ScannedProgramOut)


class ScanOut(Schema):
    scan_id = fields.String(metadata={
        "description": "use it for one redemption, within expires_in s, with the same key"})
    expires_in = fields.Integer()
    card = fields.Nested(ScannedCardOut)
    rewards = fields.List(fields.Nested(RewardOfferOut),
                          metadata={"description": "active rewards the balance can pay for"})


class RedeemIn(InputSchema):
    openapi_rules: ClassVar[dict[str, Any]] = {"allOf": [
        {"oneOf": [{"required": ["scan_id"]}, {"required": ["code"]}]},
        {"oneOf": [{"required": ["reward_id"]}, {"required": ["points"]}]},
    ]}
    scan_id = text(500, metadata={"description": "from POST /scans; pays for one redemption"})
    code = code_text()
    reward_id = StrictInteger(validate=ID)
    points = StrictInteger(validate=validators.Range(1, MAX_POINTS))
    location_id = StrictInteger(validate=ID)

    @validates_schema
    def _one_of_each(self, data: dict, **kwargs: object) -> None:
        if ("scan_id" in data) == ("code" in data):
            raise ValidationError("Give either scan_id or code.")
        if ("reward_id" in data) == ("points" in data):
            raise ValidationError("Give either reward_id or points.")


class RedemptionOut(Schema):
    id = fields.Integer()
    serial_number = fields.String()
    reward_id = fields.Integer(allow_none=True)
    reward_name = fields.String(allow_none=True)
    points = fields.Integer()
    balance = fields.Integer()
    tier = fields.String(allow_none=True)
    location_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    ledger_entry_id = fields.Integer(metadata={"description": "the redemption's ledger entry"})


class ReverseIn(InputSchema):
    reason = text(500)


class ReversalOut(Schema):
    serial_number = fields.String()
    balance = fields.Integer()
    points = fields.Integer()


@bp.post("/scans")
@bp.auth_required(auth, roles=["staff", "admin"])
@limit("STAFF_RATE_LIMIT")
@bp.input(ScanIn, arg_name="data")
@bp.output(ScanOut)
@bp.doc(summary="Check a scanned card code; returns the card and what it can redeem",
        description="The `scan_id` is bound to the code version scanned: it pays for one "
        "redemption (which rotates the card's code), within `expires_in` seconds, by the same "
        "staff key. Another reward needs the card's new code scanned again. A typed short "
        "code that names no card answers 422 `invalid-code`, whether no card or a wrong "
        "check; too many lock typed codes out (429 `short-code-locked`).",
        responses=[401, 403, 404, 409, 410, 422, 429, 503])
def scan(data: dict[str, Any]) -> dict[str, Any]:
    result = service.scan(data["code"], staff=TillActor.from_key(current_key()))
    return {
        "scan_id": result.scan_id,
        "expires_in": result.expires_in,
        "card": result,
        "rewards": result.rewards,
    }


@bp.post("/redemptions")
@bp.auth_required(auth, roles=["staff", "admin"])
@limit("STAFF_RATE_LIMIT")
@bp.input(IdempotencyHeader, location="headers", arg_name="headers")
@bp.input(RedeemIn, arg_name="data")
@bp.output(RedemptionOut, status_code=201)
@bp.doc(summary="Redeem a reward (or points) from a scanned card",
        description="A `code`, or a `scan_id` of it, pays for one redemption: the card's code "
        "rotates, and the old code and every scan of it are refused from now on (409 "
        "`code-already-used`, whatever the `Idempotency-Key`). Send an `Idempotency-Key`; a "
        "retry with it and the same body, even one sent while the first is still running, "
        "redeems once and answers with the first result (`Idempotent-Replayed: true`).",
        responses=[401, 403, 404, 409, 410, 422, 429, 503])
def redeem(headers: dict[str, Any], data: dict[str, Any]) -> Any:
    result = service.redeem(staff=TillActor.from_key(current_key()),
                            idempotency_key=headers.get("idempotency_key"), **data)
    return result, 201, ({"Idempotent-Replayed": "true"} if result.replayed else {})


@bp.post("/redemptions/<int:redemption_id>/reverse")
@bp.auth_required(auth, roles=["admin"])
@bp.input(ReverseIn, arg_name="data")
@bp.output(ReversalOut, status_code=201)
@bp.doc(summary="Give a redemption's points back", responses=[401, 403, 404, 409, 410, 422])
def reverse(redemption_id: int, data: dict[str, Any]) -> dict[str, Any]:
    posting = service.reverse(redemption_id, actor=actor(), reason=data.get("reason"))
    return {"serial_number": posting.serial_number, "balance": posting.balance,
            "points": posting.entry.points}
