"""Operator API (admins only): the outbox backlog, and retrying what it gave up on.

The outbox is the whole service's (every program's rows at once), so these need a key that
reaches every program: a key limited to some gets 403 ``needs-every-program``.

The same as ``pointpass outbox status|retry``: both call :mod:`app.outbox.status`.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, fields
from apiflask.schemas import Schema
from marshmallow import ValidationError

from app import access
from app.auth.security import auth
from app.errors import Unprocessable
from app.outbox import status
from app.schemas import InputSchema, StrictBoolean

bp = APIBlueprint("admin", __name__, url_prefix="/api/v1/admin", tag="Operations")


class ChannelBacklogOut(Schema):
    channel = fields.String(metadata={"description": "the wallet channel, e.g. apple, google"})
    rows = fields.Integer(metadata={"description": "rows waiting, in any state"})
    due = fields.Integer(metadata={"description": "rows the next drain sends"})
    past_limit = fields.Integer(metadata={
        "description": "rows given up on after `max_attempts` attempts: sent again only "
                       "after a retry"})
    oldest_created_at = fields.DateTime(allow_none=True)
    oldest_age_seconds = fields.Float(allow_none=True, metadata={
        "description": "age of the oldest row; null when there is none"})


class OutboxStatusOut(Schema):
    max_attempts = fields.Integer(metadata={
        "description": "attempts a row gets before it is past its retry limit "
                       "(POINTPASS_OUTBOX_MAX_ATTEMPTS)"})
    channels = fields.List(fields.Nested(ChannelBacklogOut))


def _known_channel(name: str) -> None:
    try:
        status.check_channel(name)
    except Unprocessable as error:
        raise ValidationError(error.detail) from None


class RetryIn(InputSchema):
    channel = fields.String(validate=_known_channel, metadata={
        "description": "only this channel's rows (a registered channel: apple, google)"})
    all = StrictBoolean(load_default=False, metadata={
        "description": "every row not due now (backing off or leased), not only those past "
                       "their retry limit"})


class RetryOut(Schema):
    retried = fields.Integer(metadata={"description": "rows made due now (0 when run again)"})


@bp.get("/outbox")
@bp.auth_required(auth, roles=["admin"])
@bp.output(OutboxStatusOut)
@bp.doc(summary="Outbox backlog per channel: rows, due, past their retry limit, oldest age",
        description="Every program's rows: a key limited to some programs cannot read it "
        "(403 `needs-every-program`).", responses=[401, 403])
def outbox_status() -> dict[str, Any]:
    access.require_every_program("The outbox")
    return status.status().as_dict()


@bp.post("/outbox/retry")
@bp.auth_required(auth, roles=["admin"])
@bp.input(RetryIn, arg_name="data")
@bp.output(RetryOut)
@bp.doc(summary="Send again the outbox rows past their retry limit (or all waiting rows)",
        description="Makes the rows due now with their attempts reset, then asks for a drain. "
        "Idempotent: run again, it retries none. Every program's rows: a key limited to "
        "some programs cannot retry them (403 `needs-every-program`).",
        responses=[401, 403, 422])
def retry_outbox(data: dict[str, Any]) -> dict[str, Any]:
    access.require_every_program("The outbox")
    return {"retried": status.retry(data.get("channel"), everything=data["all"])}
