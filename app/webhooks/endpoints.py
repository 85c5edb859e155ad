"""The webhook endpoints' service: register, change, disable, delete, rotate the secret, read
the delivery log, replay a delivery. The API (and any other caller) goes through here.

Every change is recorded in the audit trail (``webhook.create``, ``webhook.update``,
``webhook.disable``, ``webhook.delete``, ``webhook.rotate``) in its own transaction; a
secret never is, nor is it logged: it is shown once, when made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app import access, audit
from app.errors import Conflict, NotFound, Unprocessable
from app.extensions import db
from app.timeutil import utcnow
from app.webhooks import drain, signing, targets
from app.webhooks.emit import EVENT_TYPES
from app.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookSubscription,
)

ROTATION_OVERLAP = timedelta(hours=24)
MAX_ENDPOINTS_PER_PROGRAM = 20


@dataclass(frozen=True)
class Made:
    """An endpoint with its secret, shown this once (creation, rotation)."""

    endpoint: WebhookEndpoint
    secret: str


def events_of(endpoint: WebhookEndpoint) -> list[str]:
    return sorted(db.session.scalars(select(WebhookSubscription.event_type).where(
        WebhookSubscription.endpoint_id == endpoint.id)))


def _subscribe(endpoint: WebhookEndpoint, events: Sequence[str]) -> None:
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:  # the API's schema refuses these first
        raise ValueError(f"unknown event types {unknown}")
    db.session.execute(delete(WebhookSubscription).where(
        WebhookSubscription.endpoint_id == endpoint.id))
    db.session.add_all(WebhookSubscription(endpoint_id=endpoint.id, event_type=event_type,
                                           program_id=endpoint.program_id)
                       for event_type in sorted(set(events)))


def create(program_id: int, url: str, events: Sequence[str],
           description: str | None = None, enabled: bool = True) -> Made:
    """Register ``url`` for ``events`` of the program, with a new secret, and commit.
    ``TargetRefused`` (422) for a URL a webhook may not call; ``NotFound`` for a program out
    of reach."""
    # A program outside the caller's programs is refused like one that does not exist (the
    # endpoint's foreign key finds those): the webhooks sit below the points store, which
    # emits their events, so they name no program model.
    if not access.current().allows(program_id):
        raise _unknown_program(program_id)
    targets.check(url)
    count = db.session.scalar(select(db.func.count()).select_from(WebhookEndpoint).where(
        WebhookEndpoint.program_id == program_id)) or 0
    if count >= MAX_ENDPOINTS_PER_PROGRAM:
        raise Conflict(f"A program has at most {MAX_ENDPOINTS_PER_PROGRAM} webhook endpoints.",
                       code="too-many-webhooks")
    now = utcnow()
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(program_id=program_id, url=url, description=description,
                               enabled=enabled, secret=secret, created_at=now, updated_at=now,
                               disabled_at=None if enabled else now,
                               disabled_reason=None if enabled else "manual")
    db.session.add(endpoint)
    try:
        db.session.flush()
    except IntegrityError:  # no such program
        db.session.rollback()
        raise _unknown_program(program_id) from None
    _subscribe(endpoint, events)
    audit.record("webhook.create", program_id=program_id, target=f"webhook:{endpoint.id}",
                 details={"url": url, "events": sorted(set(events)), "enabled": enabled})
    db.session.commit()
    return Made(endpoint, secret)


def _unknown_program(program_id: int) -> Unprocessable:
    return Unprocessable(f"No program with id {program_id}.", errors=[
        {"location": "json", "field": "program_id", "message": "Unknown program."}])


def get(endpoint_id: int) -> WebhookEndpoint:
    """The endpoint; ``NotFound`` when there is none or its program is out of reach."""
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or not access.current().allows(endpoint.program_id):
        raise NotFound(f"No webhook endpoint with id {endpoint_id}.")
    return endpoint


def in_reach(program_id: int | None = None) -> list[WebhookEndpoint]:
    """The endpoints of the caller's programs (of one, with ``program_id``)."""
    query = select(WebhookEndpoint).where(access.current().where(WebhookEndpoint.program_id))
    if program_id is not None:
        query = query.where(WebhookEndpoint.program_id == program_id)
    return list(db.session.scalars(query.order_by(WebhookEndpoint.id)))


def update(endpoint_id: int, changes: dict[str, Any]) -> WebhookEndpoint:
    """Change ``url``, ``events``, ``description`` or ``enabled`` and commit. Disabling is
    recorded as ``webhook.disable``; enabling again clears the failure state."""
    endpoint = get(endpoint_id)
    now = utcnow()
    if "url" in changes:
        targets.check(changes["url"])
        endpoint.url = changes["url"]
    if "description" in changes:
        endpoint.description = changes["description"]
    if "events" in changes:
        _subscribe(endpoint, changes["events"])
    details = {k: (sorted(set(v)) if k == "events" else v) for k, v in changes.items()
               if k != "enabled"}
    if details:
        audit.record("webhook.update", program_id=endpoint.program_id,
                     target=f"webhook:{endpoint.id}", details=details)
    if "enabled" in changes and changes["enabled"] != endpoint.enabled:
        endpoint.enabled = changes["enabled"]
        if endpoint.enabled:
            endpoint.disabled_at = endpoint.disabled_reason = endpoint.failing_since = None
            audit.record("webhook.enable", program_id=endpoint.program_id,
                         target=f"webhook:{endpoint.id}")
        else:
            endpoint.disabled_at, endpoint.disabled_reason = now, "manual"
            audit.record("webhook.disable", program_id=endpoint.program_id,
                         target=f"webhook:{endpoint.id}", details={"reason": "manual"})
    endpoint.updated_at = now
    db.session.commit()
    return endpoint


def remove(endpoint_id: int) -> None:
    """Delete the endpoint, its subscriptions and deliveries, and commit."""
    endpoint = get(endpoint_id)
    audit.record("webhook.delete", program_id=endpoint.program_id,
                 target=f"webhook:{endpoint.id}", details={"url": endpoint.url})
    db.session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))
    db.session.commit()


def rotate(endpoint_id: int) -> Made:
    """A new secret for the endpoint, and commit; the old one stays valid (deliveries carry
    both signatures) for 24 hours."""
    endpoint = get(endpoint_id)
    now = utcnow()
    secret = signing.new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + ROTATION_OVERLAP
    endpoint.secret = secret
    endpoint.updated_at = now
    audit.record("webhook.rotate", program_id=endpoint.program_id,
                 target=f"webhook:{endpoint.id}",
                 details={"previous_secret_until": endpoint.previous_secret_until.isoformat()})
    db.session.commit()
    return Made(endpoint, secret)


@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    event: WebhookEvent
    attempts: list[WebhookAttempt]


def deliveries(endpoint_id: int, *, before_id: int | None = None,
               limit: int = 20) -> list[DeliveryView]:
    """The endpoint's deliveries, newest first (``limit`` before ``before_id``), each with its
    event and attempts."""
    endpoint = get(endpoint_id)
    query = (select(WebhookDelivery, WebhookEvent)
             .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
             .where(WebhookDelivery.endpoint_id == endpoint.id)
             .order_by(WebhookDelivery.id.desc()).limit(limit))
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    rows = db.session.execute(query).all()
    attempts: dict[int, list[WebhookAttempt]] = {row[0].id: [] for row in rows}
    if attempts:
        for attempt in db.session.scalars(select(WebhookAttempt).where(
                WebhookAttempt.delivery_id.in_(list(attempts))).order_by(WebhookAttempt.id)):
            attempts[attempt.delivery_id].append(attempt)
    return [DeliveryView(delivery, event, attempts[delivery.id]) for delivery, event in rows]


def replay(endpoint_id: int, delivery_id: int) -> DeliveryView:
    """Send a delivery's event to its endpoint again, as a new delivery (same ``webhook-id``,
    so a receiver that has it can tell), and commit. ``Conflict`` while the endpoint is
    disabled."""
    endpoint = get(endpoint_id)
    original = db.session.get(WebhookDelivery, delivery_id)
    if original is None or original.endpoint_id != endpoint.id:
        raise NotFound(f"No delivery with id {delivery_id} of webhook endpoint {endpoint_id}.")
    if not endpoint.enabled:
        raise Conflict("The webhook endpoint is disabled; enable it first.",
                       code="webhook-disabled")
    now = utcnow()
    again = WebhookDelivery(event_id=original.event_id, endpoint_id=endpoint.id,
                            status=DeliveryStatus.PENDING, attempts=0, available_at=now,
                            created_at=now)
    db.session.add(again)
    audit.record("webhook.replay", program_id=endpoint.program_id,
                 target=f"webhook:{endpoint.id}", details={"delivery_id": original.id})
    drain.drain_after_commit()
    db.session.commit()
    event = db.session.get(WebhookEvent, again.event_id)
    assert event is not None
    return DeliveryView(again, event, [])


def disabled_for_failing(program_ids: frozenset[int] | None) -> list[WebhookEndpoint]:
    """Endpoints disabled because they kept failing, in the given programs (None: all): what
    the console's banner tells admins."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(False),
                                          WebhookEndpoint.disabled_reason == "failing")
    if program_ids is not None:
        query = query.where(WebhookEndpoint.program_id.in_(sorted(program_ids)))
    return list(db.session.scalars(query.order_by(WebhookEndpoint.id).limit(20)))
