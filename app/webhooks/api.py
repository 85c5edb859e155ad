"""The webhooks API (admins): ``/api/v1/webhooks``, the endpoints, their delivery log and
replays. Deliveries follow the Standard Webhooks specification (see README.md)."""

from __future__ import annotations

from typing import Any, ClassVar

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, validates_schema

from app.auth.security import auth
from app.schemas import MAX_ID, InputSchema, QuerySchema, StrictBoolean, StrictInteger, text
from app.webhooks import endpoints
from app.webhooks.emit import EVENT_TYPES
from app.webhooks.models import WebhookEndpoint
from app.webhooks.targets import MAX_URL_LENGTH

bp = APIBlueprint("webhooks", __name__, url_prefix="/api/v1", tag="Webhooks")

ADMINS = ["admin"]
ID = validators.Range(min=1, max=MAX_ID)
URL_DESCRIPTION = (
    "the receiver's URL. Outside development it must be `https://` and lead to public "
    "addresses only (no loopback, private, link-local, multicast or reserved address, IPv4 or "
    "IPv6), checked now and before every delivery; addresses in "
    "`POINTPASS_WEBHOOK_ALLOWED_NETWORKS` are allowed, and `http://` with them. No user "
    "name, password or fragment.")
EVENTS = fields.List(fields.String(validate=validators.OneOf(EVENT_TYPES)),
                     validate=validators.Length(min=1, max=len(EVENT_TYPES)),
                     metadata={"description": "the event types to send: "
                               + ", ".join(f"`{t}`" for t in EVENT_TYPES)})
SIGNING = (
    "Each delivery is a POST of JSON `{\"type\", \"timestamp\", \"data\"}` with the Standard "
    "Webhooks headers `webhook-id` (the same for every attempt), `webhook-timestamp` (Unix "
    "seconds of the attempt) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of "
    "`<id>.<timestamp>.<body>` keyed with the secret's base64-decoded bytes (after `whsec_`). "
    "After a rotation both secrets sign for 24 hours: the header then carries two "
    "signatures, separated by a space. A 2xx answer within 5 s is a success; anything else "
    "(redirects included: none is followed) is retried with backoff (5 s, 5 min, 30 min, 2 h, "
    "5 h, 10 h, then every 10 h) for 3 days. An endpoint failing for 3 days is disabled.")


class WebhookIn(InputSchema):
    program_id = StrictInteger(required=True, validate=ID, metadata={
        "description": "the program whose events the endpoint hears"})
    url = fields.String(required=True, validate=validators.Length(min=1, max=MAX_URL_LENGTH),
                        metadata={"description": URL_DESCRIPTION})
    events = fields.List(fields.String(validate=validators.OneOf(EVENT_TYPES)),
                         required=True, validate=EVENTS.validate, metadata=EVENTS.metadata)
    description = text(200, metadata={"description": "what the endpoint is for"})
    enabled = StrictBoolean(load_default=True, metadata={
        "description": "false: registered, but sent nothing until enabled"})


class WebhookPatchIn(InputSchema):
    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    url = fields.String(validate=validators.Length(min=1, max=MAX_URL_LENGTH),
                        metadata={"description": URL_DESCRIPTION})
    events = EVENTS
    description = text(200, allow_none=True)
    enabled = StrictBoolean(metadata={
        "description": "false disables the endpoint (its waiting deliveries are not sent); "
                       "true enables it again (also one disabled for failing)"})

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.")


class WebhookQuery(QuerySchema):
    program_id = fields.Integer(validate=ID, metadata={
        "description": "only this program's endpoints"})


class DeliveryQuery(QuerySchema):
    before = fields.Integer(validate=ID, metadata={
        "description": "only deliveries older than this id (the `next_before` of the last "
                       "page)"})
    limit = fields.Integer(load_default=20, validate=validators.Range(min=1, max=100))


class WebhookOut(Schema):
    id = fields.Integer()
    program_id = fields.Integer()
    url = fields.String()
    description = fields.String(allow_none=True)
    events = fields.List(fields.String())
    enabled = fields.Boolean()
    disabled_at = fields.DateTime(allow_none=True)
    disabled_reason = fields.String(allow_none=True, metadata={
        "description": "`manual`, or `failing` (every attempt failed for 3 days)"})
    failing_since = fields.DateTime(allow_none=True, metadata={
        "description": "the first failed attempt since the last success"})
    previous_secret_valid_until = fields.DateTime(allow_none=True, metadata={
        "description": "after a rotation: until when the previous secret signs too"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class WebhookCreatedOut(WebhookOut):
    secret = fields.String(metadata={
        "description": "`whsec_` and the base64 secret that signs the deliveries: shown only "
                       "now, store it"})


class WebhookListedOut(WebhookOut):
    """A webhook endpoint in a list (its own schema: apispec names a nested schema apart
    from the same schema answered alone)."""


class WebhookList(Schema):
    webhooks = fields.List(fields.Nested(WebhookListedOut))


class AttemptOut(Schema):
    attempted_at = fields.DateTime()
    duration_ms = fields.Integer()
    status_code = fields.Integer(allow_none=True, metadata={
        "description": "the receiver's status; null when there was no answer"})
    error = fields.String(allow_none=True)
    succeeded = fields.Boolean()


class DeliveryOut(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    message_id = fields.String(metadata={"description": "the `webhook-id` sent"})
    event_type = fields.String()
    status = fields.String(metadata={"enum": ["pending", "delivered", "failed"]})
    attempts = fields.List(fields.Nested(AttemptOut), metadata={
        "description": "every attempt, oldest first"})
    next_attempt_at = fields.DateTime(allow_none=True, metadata={
        "description": "when a pending delivery is tried (again)"})
    created_at = fields.DateTime()
    delivered_at = fields.DateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)


class DeliveryLoggedOut(DeliveryOut):
    """A delivery in the log (see WebhookListedOut)."""


class DeliveryPage(Schema):
    deliveries = fields.List(fields.Nested(DeliveryLoggedOut))
    next_before = fields.Integer(allow_none=True, metadata={
        "description": "pass as `before` for the next (older) page; null on the last page"})


def as_dict(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "program_id": endpoint.program_id, "url": endpoint.url,
            "description": endpoint.description, "events": endpoints.events_of(endpoint),
            "enabled": endpoint.enabled, "disabled_at": endpoint.disabled_at,
            "disabled_reason": endpoint.disabled_reason,
            "failing_since": endpoint.failing_since,
            "previous_secret_valid_until": endpoint.previous_secret_until
            if endpoint.previous_secret else None,
            "created_at": endpoint.created_at, "updated_at": endpoint.updated_at}


def delivery_dict(view: endpoints.DeliveryView) -> dict[str, Any]:
    delivery = view.delivery
    return {
        "id": delivery.id, "event_id": view.event.id, "message_id": view.event.message_id,
        "event_type": view.event.type, "status": delivery.status,
        "attempts": [{"attempted_at": a.attempted_at, "duration_ms": a.duration_ms,
                      "status_code": a.status_code, "error": a.error,
                      "succeeded": a.succeeded} for a in view.attempts],
        "next_attempt_at": delivery.available_at if delivery.status == "pending" else None,
        "created_at": delivery.created_at, "delivered_at": delivery.delivered_at,
        "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
    }


@bp.post("/webhooks")
@bp.auth_required(auth, roles=ADMINS)
@bp.input(WebhookIn, arg_name="data")
@bp.output(WebhookCreatedOut, status_code=201)
@bp.doc(summary="Register a webhook endpoint (its secret is shown only in this answer)",
        description=SIGNING + " A `program_id` outside the key's programs answers 422, as "
        "an unknown one; a URL a webhook may not call answers 422 "
        "`webhook-url-refused`.", responses=[401, 403, 409, 422])
def create_webhook(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    made = endpoints.create(data["program_id"], data["url"], data["events"],
                            data.get("description"), data["enabled"])
    return {**as_dict(made.endpoint), "secret": made.secret}, 201


@bp.get("/webhooks/<int:webhook_id>")
@bp.auth_required(auth, roles=ADMINS)
@bp.output(WebhookOut)
@bp.doc(summary="Show a webhook endpoint", responses=[401, 403, 404])
def get_webhook(webhook_id: int) -> dict[str, Any]:
    return as_dict(endpoints.get(webhook_id))


@bp.get("/webhooks")
@bp.auth_required(auth, roles=ADMINS)
@bp.input(WebhookQuery, location="query", arg_name="query")
@bp.output(WebhookList)
@bp.doc(summary="List the webhook endpoints of the key's programs (never their secrets)",
        responses=[401, 403, 422])
def list_webhooks(query: dict[str, Any]) -> dict[str, Any]:
    return {"webhooks": [as_dict(e) for e in endpoints.in_reach(query.get("program_id"))]}


@bp.patch("/webhooks/<int:webhook_id>")
@bp.auth_required(auth, roles=ADMINS)
@bp.input(WebhookPatchIn, arg_name="data")
@bp.output(WebhookOut)
@bp.doc(summary="Change a webhook endpoint's URL, events or description, or disable or "
        "enable it", description="A new URL is checked as at registration (422 "
        "`webhook-url-refused`).", responses=[401, 403, 404, 422])
def update_webhook(webhook_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return as_dict(endpoints.update(webhook_id, data))


@bp.delete("/webhooks/<int:webhook_id>")
@bp.auth_required(auth, roles=ADMINS)
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a webhook endpoint and its delivery log", responses=[401, 403, 404])
def delete_webhook(webhook_id: int) -> tuple[str, int]:
    endpoints.remove(webhook_id)
    return "", 204


@bp.post("/webhooks/<int:webhook_id>/rotate-secret")
@bp.auth_required(auth, roles=ADMINS)
@bp.output(WebhookCreatedOut)
@bp.doc(summary="Give a webhook endpoint a new secret (shown only in this answer)",
        description="The previous secret keeps signing for 24 hours: meanwhile every "
        "delivery's `webhook-signature` carries both signatures, space-separated, so the "
        "receiver can switch secrets without missing a delivery.", responses=[401, 403, 404])
def rotate_webhook_secret(webhook_id: int) -> dict[str, Any]:
    made = endpoints.rotate(webhook_id)
    return {**as_dict(made.endpoint), "secret": made.secret}


@bp.post("/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/replay")
@bp.auth_required(auth, roles=ADMINS)
@bp.output(DeliveryOut, status_code=202)
@bp.doc(summary="Send a delivery's event to the endpoint again",
        description="A new delivery of the same event (the same `webhook-id`), sent at once "
        "and retried like any other. 409 `webhook-disabled` while the endpoint is disabled.",
        responses=[401, 403, 404, 409])
def replay_delivery(webhook_id: int, delivery_id: int) -> tuple[dict[str, Any], int]:
    return delivery_dict(endpoints.replay(webhook_id, delivery_id)), 202


@bp.get("/webhooks/<int:webhook_id>/deliveries")
@bp.auth_required(auth, roles=ADMINS)
@bp.input(DeliveryQuery, location="query", arg_name="query")
@bp.output(DeliveryPage)
@bp.doc(summary="A webhook endpoint's delivery log, newest first: attempts, status codes, "
        "timings", description="Pages back with `before`.", responses=[401, 403, 404, 422])
def list_deliveries(webhook_id: int, query: dict[str, Any]) -> dict[str, Any]:
    limit = query["limit"]
    found = endpoints.deliveries(webhook_id, before_id=query.get("before"), limit=limit + 1)
    return {"deliveries": [delivery_dict(v) for v in found[:limit]],
            "next_before": found[limit - 1].delivery.id if len(found) > limit else None}
