"""Marketer API: trigger an update of every matching card's passes, and follow it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema
from flask import url_for

from app.auth.security import actor, auth
from app.loyalty import fanout, programs
from app.loyalty.schemas import DesignFieldsIn
from app.outbox.models import PassUpdate
from app.schemas import InputSchema, text
from app.wallet import preview, updates
from passes.languages import LANGUAGES

bp = APIBlueprint("wallet_updates", __name__, url_prefix="/api/v1", tag="Pass updates")


class SegmentIn(InputSchema):
    tier = text(64, metadata={"description": "only cards in the tier with this name"})
    language = fields.String(validate=validators.OneOf(LANGUAGES),
                             metadata={"description": "only members with this language"})


class UpdateIn(InputSchema):
    message = text(500, metadata={"description": "shown on the pass back and announced on "
                                                 "the lock screen; in Google Wallet added "
                                                 "to each card's object, or once to the "
                                                 "program's class when there is no segment"})
    segment = fields.Nested(SegmentIn)


class UpdateOut(Schema):
    id = fields.Integer()
    program_id = fields.Integer()
    status = fields.String(metadata={"description": "queued, marking, pushing or done"})
    message = fields.String(allow_none=True)
    cards_total = fields.Integer(metadata={"description": "cards in the segment"})
    cards_done = fields.Integer(metadata={
        "description": "cards finished: those no wallet holds (nothing to tell) once marked, "
                       "the others once their wallets have all been told, skipped or given "
                       "up on; equals cards_total when the update is done"})
    cards_with_wallet = fields.Integer(metadata={
        "description": "cards held by some wallet: a device registered for pushes, or a "
                       "Google Wallet object (a card in both counts once)"})
    devices_pushed = fields.Integer(metadata={"description": "APNs pushes sent"})
    devices_skipped = fields.Integer(metadata={
        "description": "devices (Google: wallet objects) not told: their wallet is not "
                       "configured to send, or (Apple) the device had already asked for "
                       "its changed passes since the change, so a push would tell it "
                       "nothing new; the reasons are in skipped"})
    skipped = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "devices skipped by reason, e.g. {\"apns-not-configured\": 10} "
                       "(apns-not-configured, google-not-configured, already-current)"})
    failures = fields.Integer(metadata={
        "description": "devices a wallet refused for good, and cards given up on after the "
                       "outbox's retry limit (a later successful retry is no failure)"})
    changed = fields.List(fields.String(), allow_none=True, metadata={
        "description": "what changed program-wide (design fields such as background_color, "
                       "artwork such as logo, rewards, tiers, locations, time_zone) for an "
                       "update a program change started; null for a marketer's update"})
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True, metadata={
        "description": "when marking its cards began"})
    estimated_finish = fields.DateTime(allow_none=True, metadata={
        "description": "when it should be done at the pace kept since it started (cards "
                       "done per second); null before the first card is done and once done"})
    finished_at = fields.DateTime(allow_none=True)
    url = fields.String()


def _body(pass_update: PassUpdate) -> dict[str, Any]:
    changed = fanout.fields_of(pass_update)
    return {
        "id": pass_update.id,
        "program_id": pass_update.program_id,
        "status": pass_update.status.value,
        "message": pass_update.message,
        "cards_total": pass_update.cards_total,
        "cards_done": pass_update.cards_done,
        "cards_with_wallet": pass_update.cards_with_wallet,
        "devices_pushed": pass_update.devices_pushed,
        "devices_skipped": pass_update.devices_skipped,
        "skipped": updates.skipped_by_reason(pass_update.id),
        "failures": pass_update.failures,
        "changed": None if changed is None else sorted(changed),
        "created_at": pass_update.created_at,
        "started_at": pass_update.started_at,
        "estimated_finish": fanout.eta(pass_update),
        "finished_at": pass_update.finished_at,
        "url": url_for("wallet_updates.get_update", update_id=pass_update.id),
    }


@bp.post("/programs/<int:program_id>/updates")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(UpdateIn, arg_name="data")
@bp.output(UpdateOut, status_code=202)
@bp.doc(summary="Update every matching card's passes, optionally with a message",
        responses=[401, 403, 404, 422])
def create_update(program_id: int, data: dict[str, Any]) -> Any:
    segment = data.get("segment", {})
    pass_update = updates.request_update(
        programs.get(program_id), actor=actor(), message=data.get("message"),
        tier=segment.get("tier"), language=segment.get("language"))
    body = _body(pass_update)
    return body, 202, {"Location": body["url"]}


@bp.get("/updates/<int:update_id>")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.output(UpdateOut)
@bp.doc(summary="Progress of a pass update", responses=[401, 403, 404])
def get_update(update_id: int) -> dict[str, Any]:
    return _body(updates.get(update_id))


class DesignPreviewIn(DesignFieldsIn):
    """Design fields as ``PATCH /api/v1/programs/<id>`` takes them; none are saved."""


class ContrastOut(Schema):
    text_field = fields.String(metadata={"description": "foreground_color or label_color"})
    background_field = fields.String()
    text = fields.String(metadata={"description": "#RRGGBB"})
    background = fields.String()
    ratio = fields.Float(metadata={"description": "WCAG contrast ratio, 1 to 21"})
    passes = fields.Boolean(metadata={"description": "at least 4.5:1 (WCAG AA)"})


class DesignPreviewOut(Schema):
    pass_json = fields.Dict(metadata={
        "description": "pass.json of a sample member's Apple pass with this design, built by "
                       "the pass builder (labels are pass.strings keys)"})
    google_class = fields.Dict(metadata={
        "description": "the Google Wallet loyaltyClass body with this design"})
    contrast = fields.List(fields.Nested(ContrastOut))
    publishable = fields.Boolean(metadata={
        "description": "every colour pair passes: a PATCH with these values would be taken"})


@bp.post("/programs/<int:program_id>/design/preview")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(DesignPreviewIn, arg_name="data")
@bp.output(DesignPreviewOut)
@bp.doc(summary="Preview a program's passes with a changed design, saving nothing",
        description="What a sample member's Apple pass (pass.json) and the Google class would "
        "be with the given design fields (as PATCH /api/v1/programs/{program_id} takes them) "
        "applied to the stored design, and the contrast check a PATCH makes. Nothing is "
        "saved and no pass changes.", tags=["Loyalty"], responses=[401, 403, 404, 422])
def preview_design(program_id: int, data: dict[str, Any]) -> dict[str, Any]:
    result = preview.preview(programs.get(program_id), data)
    return {"pass_json": result.pass_json, "google_class": result.google_class,
            "contrast": [{**asdict(pair), "passes": pair.passes} for pair in result.contrast],
            "publishable": result.publishable}
