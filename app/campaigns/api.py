"""The segments and campaigns API (admins and marketers)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, validates_schema

from app import access
from app.auth.security import auth
from app.campaigns import models as _models  # noqa: F401 - register the tables
from app.campaigns import segments
from app.loyalty.ledger import MAX_POINTS
from app.schemas import MAX_ID, InputSchema, StrictBoolean, StrictInteger
from passes.languages import LANGUAGES

bp = APIBlueprint("campaigns", __name__, url_prefix="/api/v1", tag="Segments and campaigns")

SEGMENT_DESCRIPTION = (
    "Every condition is optional; the ones given must all hold. Only the program's active "
    "(not voided) cards count. A visit is an earn or a redemption: `last_visit_before` "
    "matches members whose last visit was before the moment (members who never visited do "
    "not match), `last_visit_after` members who visited at or after it. `location_ids`: "
    "any ledger entry at one of these locations. `expiring_within_days`: points of a lot "
    "with points left expire within that many days. `apple_installed`: a device registered "
    "for the card's pass (false: none); `google_installed`: the Google Wallet object is "
    "saved (false: not saved). `joined_from` is included, `joined_until` excluded.")

class SegmentIn(InputSchema):
    """Which members: every condition given must hold."""

    tier_ids = fields.List(StrictInteger(validate=validators.Range(1, MAX_ID)),
                           validate=validators.Length(min=1, max=100))
    languages = fields.List(fields.String(validate=validators.OneOf(LANGUAGES)),
                            validate=validators.Length(min=1, max=len(LANGUAGES)))
    location_ids = fields.List(StrictInteger(validate=validators.Range(1, MAX_ID)),
                               validate=validators.Length(min=1, max=100),
                               metadata={"description": "visited any of these locations"})
    last_visit_before = fields.AwareDateTime()
    last_visit_after = fields.AwareDateTime()
    balance_min = StrictInteger(validate=validators.Range(0, MAX_POINTS))
    balance_max = StrictInteger(validate=validators.Range(0, MAX_POINTS))
    expiring_within_days = StrictInteger(validate=validators.Range(1, 3660))
    birthday_month = StrictInteger(validate=validators.Range(1, 12))
    apple_installed = StrictBoolean()
    google_installed = StrictBoolean()
    joined_from = fields.AwareDateTime(metadata={"description": "included"})
    joined_until = fields.AwareDateTime(metadata={"description": "excluded"})

    @validates_schema
    def _consistent(self, data: dict, **kwargs: object) -> None:
        if "balance_min" in data and "balance_max" in data \
                and data["balance_max"] < data["balance_min"]:
            raise ValidationError("Must not be below balance_min.", "balance_max")
        if "joined_from" in data and "joined_until" in data \
                and data["joined_until"] <= data["joined_from"]:
            raise ValidationError("Must be after joined_from.", "joined_until")
        if "last_visit_before" in data and "last_visit_after" in data \
                and data["last_visit_before"] <= data["last_visit_after"]:
            raise ValidationError("Must be after last_visit_after.", "last_visit_before")


class CountOut(Schema):
    count = fields.Integer(metadata={"description": "active cards in the segment"})


@bp.post("/programs/<int:program_id>/segments/count")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(SegmentIn, arg_name="data")
@bp.output(CountOut)
@bp.doc(summary="Count a segment's members (writes nothing)", description=SEGMENT_DESCRIPTION,
        responses=[401, 403, 404, 422])
def count_segment(program_id: int, data: dict[str, Any]) -> dict[str, int]:
    program = access.program(program_id)
    return {"count": segments.count(program, segments.Segment.of(data))}
