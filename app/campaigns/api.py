"""The segments and campaigns API (admins and marketers)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, validates_schema

from app.auth.security import auth
from app.campaigns import models as _models  # noqa: F401 - register the tables
from app.campaigns import segments, service
from app.campaigns.models import Campaign, CampaignStatus
from app.loyalty import programs
from app.loyalty.ledger import MAX_POINTS
from app.schemas import MAX_ID, InputSchema, StrictBoolean, StrictInteger, text
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
    program = programs.get(program_id)
    return {"count": segments.count(program, segments.Segment.of(data))}


# --- Campaigns -------------------------------------------------------------------------------

class MessageIn(InputSchema):
    lock_screen = text(178, metadata={"description": "the notification's text"})
    back = text(1000, metadata={"description": "shown on the back of the pass"})

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give lock_screen, back or both.")


MESSAGES = fields.Dict(keys=fields.String(validate=validators.OneOf(LANGUAGES)),
                       values=fields.Nested(MessageIn), validate=validators.Length(min=1),
                       metadata={"description": "per language (en, id, th, ms): a member gets "
                                 "their language's, else the program's default language's, "
                                 "else the first given"})


class CampaignIn(InputSchema):
    name = text(120, required=True)
    segment = fields.Nested(SegmentIn, load_default=dict)
    messages = fields.Dict(keys=fields.String(validate=validators.OneOf(LANGUAGES)),
                           values=fields.Nested(MessageIn), required=True,
                           validate=validators.Length(min=1),
                           metadata=MESSAGES.metadata)
    bonus_points = StrictInteger(validate=validators.Range(1, MAX_POINTS))
    holdout_percent = StrictInteger(load_default=0, validate=validators.Range(0, 50), metadata={
        "description": "members kept as a control group: they get nothing"})
    scheduled_at = fields.AwareDateTime(metadata={"description": "send then (default: when "
                                                  "`send` is called)"})


class CampaignPatchIn(InputSchema):
    name = text(120)
    segment = fields.Nested(SegmentIn)
    messages = MESSAGES
    bonus_points = StrictInteger(validate=validators.Range(1, MAX_POINTS), allow_none=True)
    holdout_percent = StrictInteger(validate=validators.Range(0, 50))
    scheduled_at = fields.AwareDateTime(allow_none=True)

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.")


class CampaignOut(Schema):
    id = fields.Integer()
    program_id = fields.Integer()
    name = fields.String()
    segment = fields.Dict()
    messages = fields.Dict()
    bonus_points = fields.Integer(allow_none=True)
    holdout_percent = fields.Integer()
    status = fields.String(metadata={"enum": [s.value for s in CampaignStatus]})
    scheduled_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    recipients_total = fields.Integer()
    held_out_total = fields.Integer()
    sent_total = fields.Integer()
    skipped_total = fields.Integer()
    created_at = fields.DateTime()


class CampaignList(Schema):
    campaigns = fields.List(fields.Nested(CampaignOut))


class SampleOut(Schema):
    serial_number = fields.String()
    member_name = fields.String()
    language = fields.String()
    held_out = fields.Boolean()
    message = fields.String()
    bonus_points = fields.Integer()


class DryRunOut(Schema):
    recipients = fields.Integer(metadata={"description": "cards in the segment now"})
    held_out = fields.Integer()
    would_receive = fields.Integer()
    bonus_points_each = fields.Integer()
    bonus_points_total = fields.Integer()
    by_language = fields.Dict(keys=fields.String(), values=fields.Integer())
    sample = fields.List(fields.Nested(SampleOut))


class GroupOut(Schema):
    members = fields.Integer()
    redeemers = fields.Integer(metadata={"description": "members who redeemed since the send"})
    redemptions = fields.Integer()
    visitors = fields.Integer(metadata={"description": "members who earned or redeemed since"})
    visits = fields.Integer()


class ResultsOut(Schema):
    status = fields.String()
    recipients = fields.Integer()
    held_out = fields.Integer()
    sent = fields.Integer()
    skipped = fields.Integer(metadata={"description": "voided before their turn"})
    devices_reached = fields.Integer(metadata={"description": "devices the outbox told"})
    failures = fields.Integer()
    campaign_group = fields.Nested(GroupOut)
    holdout_group = fields.Nested(GroupOut)
    since = fields.DateTime(allow_none=True)


CAMPAIGNS = "/programs/<int:program_id>/campaigns"
MARKETERS = ["admin", "marketer"]


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    if "segment" in data:
        data["segment"] = segments.Segment.of(data["segment"])
    return data


@bp.post(CAMPAIGNS)
@bp.auth_required(auth, roles=MARKETERS)
@bp.input(CampaignIn, arg_name="data")
@bp.output(CampaignOut, status_code=201)
@bp.doc(summary="Create a draft campaign", description=SEGMENT_DESCRIPTION,
        responses=[401, 403, 404, 422])
def create_campaign(program_id: int, data: dict[str, Any]) -> Campaign:
    return service.create(programs.get(program_id), **_fields(data))


@bp.get(CAMPAIGNS)
@bp.auth_required(auth, roles=MARKETERS)
@bp.output(CampaignList)
@bp.doc(summary="List a program's campaigns, newest first", responses=[401, 403, 404])
def list_campaigns(program_id: int) -> dict[str, Any]:
    return {"campaigns": service.list_campaigns(programs.get(program_id))}


@bp.get(CAMPAIGNS + "/<int:campaign_id>")
@bp.auth_required(auth, roles=MARKETERS)
@bp.output(CampaignOut)
@bp.doc(summary="Get a campaign (with its progress while sending)", responses=[401, 403, 404])
def get_campaign(program_id: int, campaign_id: int) -> Campaign:
    return service.get(programs.get(program_id), campaign_id)


@bp.patch(CAMPAIGNS + "/<int:campaign_id>")
@bp.auth_required(auth, roles=MARKETERS)
@bp.input(CampaignPatchIn, arg_name="data")
@bp.output(CampaignOut)
@bp.doc(summary="Change a draft or scheduled campaign", responses=[401, 403, 404, 409, 422])
def update_campaign(program_id: int, campaign_id: int, data: dict[str, Any]) -> Campaign:
    return service.update_campaign(programs.get(program_id), campaign_id, **_fields(data))


@bp.post(CAMPAIGNS + "/<int:campaign_id>/dry-run")
@bp.auth_required(auth, roles=MARKETERS)
@bp.output(DryRunOut)
@bp.doc(summary="Who would get what if the campaign were sent now (writes nothing)",
        responses=[401, 403, 404])
def dry_run(program_id: int, campaign_id: int) -> service.DryRun:
    return service.dry_run(programs.get(program_id), campaign_id)


@bp.post(CAMPAIGNS + "/<int:campaign_id>/send")
@bp.auth_required(auth, roles=MARKETERS)
@bp.output(CampaignOut, status_code=202)
@bp.doc(summary="Send the campaign now, or at its scheduled time",
        description="Status `sending` (a background job gives each recipient not held out "
        "the bonus once and the message, and the wallets are told), or `scheduled`.",
        responses=[401, 403, 404, 409])
def send_campaign(program_id: int, campaign_id: int) -> Campaign:
    return service.send(programs.get(program_id), campaign_id)


@bp.post(CAMPAIGNS + "/<int:campaign_id>/cancel")
@bp.auth_required(auth, roles=MARKETERS)
@bp.output(CampaignOut)
@bp.doc(summary="Cancel a campaign not sent yet (a sending one stops after its batch)",
        responses=[401, 403, 404, 409])
def cancel_campaign(program_id: int, campaign_id: int) -> Campaign:
    return service.cancel(programs.get(program_id), campaign_id)


@bp.get(CAMPAIGNS + "/<int:campaign_id>/results")
@bp.auth_required(auth, roles=MARKETERS)
@bp.output(ResultsOut)
@bp.doc(summary="A campaign's results: devices reached, failures, and redemptions and "
        "visits since the send by the campaign group versus the holdout group",
        responses=[401, 403, 404])
def campaign_results(program_id: int, campaign_id: int) -> service.Results:
    return service.results(programs.get(program_id), campaign_id)
