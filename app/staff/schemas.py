"""What the till's page sends to add points and undo, and what it is answered."""

from __future__ import annotations

from typing import Any, ClassVar

from apiflask import fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, validates_schema

from app.loyalty.ledger import MAX_POINTS
from app.loyalty.schemas import AwardOut
from app.schemas import MAX_ID, InputSchema, StrictInteger, text
from passes.languages import LANGUAGES


class TillEarnIn(InputSchema):
    """Points for the scanned card: a purchase ``amount`` as typed (``45.000``), read in
    ``locale`` and the program's currency, or whole ``points``."""

    openapi_rules: ClassVar[dict[str, Any]] = {
        "oneOf": [{"required": ["amount"]}, {"required": ["points"]}]}
    scan_id = text(500, required=True)
    amount = text(40)
    points = StrictInteger(validate=validators.Range(1, MAX_POINTS))
    locale = fields.String(validate=validators.OneOf(LANGUAGES))

    @validates_schema
    def _one_of(self, data: dict, **kwargs: object) -> None:
        if ("amount" in data) == ("points" in data):
            raise ValidationError("Give either amount or points.")


class TillUndoIn(InputSchema):
    """``entry_id``: the action the page shows; without it, the actor's last action."""

    entry_id = StrictInteger(validate=validators.Range(min=1, max=MAX_ID))


class TillActionOut(Schema):
    entry_id = fields.Integer()
    kind = fields.String(metadata={"description": "earn, redeem or undo"})
    serial_number = fields.String()
    points = fields.Integer()
    amount = fields.Integer(allow_none=True, metadata={"description": "minor units"})
    currency = fields.String(allow_none=True)
    balance = fields.Integer()
    tier = fields.String(allow_none=True)
    created_at = fields.DateTime()
    rules = fields.List(fields.Nested(AwardOut), metadata={
        "description": "an earn: the earning rules that gave points on it"})
    total_points = fields.Integer(allow_none=True, metadata={
        "description": "an earn: its points and the rules' in all"})
    undo_seconds = fields.Integer(allow_none=True,
                                  metadata={"description": "how long it can be undone"})
