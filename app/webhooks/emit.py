"""Emitting events: the webhook outbox rows, written in the transaction of the change.

:func:`emit` sits on hot paths (every ledger posting), so it is cheap when nobody listens:
one indexed lookup of the program's enabled endpoints subscribed to the type, and nothing
else when there is none. A posting asks its locking read whether the program has any enabled
endpoint (``LockedCard.has_webhooks``) and calls :func:`emit` only then: a posting in a
program without webhooks runs no statement more. When someone listens it inserts the event
(with the exact body every delivery sends) and, in one ``INSERT ... SELECT``, a delivery per
subscribed enabled endpoint, then asks for a webhook drain once the transaction commits.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, delete, insert, literal, select

from app import dbutil
from app.extensions import db
from app.timeutil import utcnow
from app.webhooks import drain
from app.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookSubscription,
)

MEMBER_CREATED = "member.created"
CARD_BALANCE_CHANGED = "card.balance_changed"
CARD_INSTALLED = "card.installed"
CARD_REMOVED = "card.removed"
REDEMPTION_CREATED = "redemption.created"
REDEMPTION_REVERSED = "redemption.reversed"
CARD_VOIDED = "card.voided"
POINTS_EXPIRING = "points.expiring"
CAMPAIGN_FINISHED = "campaign.finished"
MEMBER_ERASED = "member.erased"

EVENT_TYPES = (MEMBER_CREATED, CARD_BALANCE_CHANGED, CARD_INSTALLED, CARD_REMOVED,
               REDEMPTION_CREATED, REDEMPTION_REVERSED, CARD_VOIDED, POINTS_EXPIRING,
               CAMPAIGN_FINISHED, MEMBER_ERASED)

def subscribed_condition(program_id: Any, event_type: Any) -> Any:
    """An EXISTS: an enabled endpoint of the program hears ``event_type`` (for a caller's
    own read, such as a posting's locking read)."""
    return select(WebhookSubscription.endpoint_id).join(
        WebhookEndpoint, WebhookEndpoint.id == WebhookSubscription.endpoint_id,
    ).where(WebhookSubscription.program_id == program_id,
            WebhookSubscription.event_type == event_type,
            WebhookEndpoint.enabled.is_(True)).exists()


def any_endpoint_condition(program_id: Any) -> Any:
    """An EXISTS: the program has an enabled endpoint (what a posting's locking read asks, so
    a posting in a program without webhooks spends nothing more on them)."""
    return select(WebhookEndpoint.id).where(WebhookEndpoint.program_id == program_id,
                                            WebhookEndpoint.enabled.is_(True)).exists()


_SUBSCRIBED = select(subscribed_condition(bindparam("program_id", type_=Integer),
                                          bindparam("event_type", type_=String)))
_EVENT_COLUMNS = ("message_id", "program_id", "type", "body", "card_serial", "created_at")
_INSERT_EVENT = insert(WebhookEvent.__table__).values(
    {name: bindparam(name, type_=WebhookEvent.__table__.c[name].type)
     for name in _EVENT_COLUMNS}).returning(WebhookEvent.__table__.c.id)
_INSERT_DELIVERIES = insert(WebhookDelivery.__table__).from_select(
    ["event_id", "endpoint_id", "status", "attempts", "available_at", "created_at"],
    select(bindparam("event_id", type_=WebhookDelivery.event_id.type),
           WebhookSubscription.endpoint_id, literal(DeliveryStatus.PENDING), literal(0),
           bindparam("now", type_=WebhookDelivery.available_at.type),
           bindparam("now", type_=WebhookDelivery.created_at.type))
    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookSubscription.endpoint_id)
    .where(and_(WebhookSubscription.program_id == bindparam("program_id", type_=Integer),
                WebhookSubscription.event_type == bindparam("event_type", type_=String),
                WebhookEndpoint.enabled.is_(True))),
).execution_options(preserve_rowcount=True)
# The same statements for a posting's driver transaction (compiled once per database).
_DRIVER = {name: dbutil.DriverStatement(lambda _dialect, s=statement: s) for name, statement in
           (("subscribed", _SUBSCRIBED), ("event", _INSERT_EVENT),
            ("deliveries", _INSERT_DELIVERIES))}


def body(event_type: str, data: dict[str, Any], at: datetime) -> str:
    """The JSON body of an event (the specification's ``type``, ``timestamp``, ``data``)."""
    return json.dumps({"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"),
                       "data": data}, separators=(",", ":"), ensure_ascii=False, default=str)


def emit(program_id: int, event_type: str, data: dict[str, Any], *,
         card_serial: str | None = None, tx: dbutil.DriverTransaction | None = None,
         known_subscribed: bool = False,
         listening: dict[tuple[int, str], bool] | None = None) -> int:
    """Record event ``event_type`` of program ``program_id`` with ``data`` for every enabled
    endpoint of the program subscribed to it, in the current transaction (``tx``: a posting's
    driver transaction; else the Session's). Not committed; a drain is asked for after commit.
    Returns the number of deliveries written (0, cheaply, when nobody listens).

    ``card_serial``: the card the event is about (a member's erasure deletes its events).

    ``known_subscribed``: the caller has just seen that someone listens (skip the lookup).
    ``listening``: a dict a caller emitting many events in one transaction passes to each
    call, so the lookup runs once per program and type.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    params: dict[str, Any] = {"program_id": program_id, "event_type": event_type}
    if not known_subscribed:
        known = None if listening is None else listening.get((program_id, event_type))
        if known is None:
            if tx is not None:
                row = tx.first(_DRIVER["subscribed"], params)
                known = bool(row and row[0])
            else:
                known = bool(db.session.execute(_SUBSCRIBED, params).scalar())
            if listening is not None:
                listening[(program_id, event_type)] = known
        if not known:
            return 0
    now = utcnow()
    event = {"message_id": "msg_" + secrets.token_hex(16), "program_id": program_id,
             "type": event_type, "body": body(event_type, data, now), "card_serial": card_serial,
             "created_at": now}
    if tx is not None:
        (event_id,) = tx.first(_DRIVER["event"], event) or (None,)
        written = tx.execute(_DRIVER["deliveries"], {**params, "event_id": event_id, "now": now})
    else:
        event_id = db.session.execute(_INSERT_EVENT, event).scalar_one()
        written = int(db.session.execute(
            _INSERT_DELIVERIES, {**params, "event_id": event_id, "now": now}).rowcount or 0)
    if written:
        drain.drain_after_commit()
    return written


def forget_card(serial_number: str) -> int:
    """Delete the webhook events about card ``serial_number`` (their bodies hold the
    member's personal data), with their deliveries, pending ones included, and attempts.
    Not committed. Returns how many events."""
    return int(db.session.execute(delete(WebhookEvent).where(
        WebhookEvent.card_serial == serial_number)).rowcount or 0)  # type: ignore[attr-defined]


def member_erased(program_id: int, member_id: int, *, serial_number: str | None = None,
                  erased_at: datetime | None = None) -> int:
    """For the member-erasure feature, in the erasure's transaction (the Session's): delete
    the webhook events about the member's card (:func:`forget_card`), then emit
    ``member.erased``, which carries ids only: ``member_id``, ``program_id``,
    ``serial_number`` and ``erased_at``. Returns the deliveries written."""
    if serial_number is not None:
        forget_card(serial_number)
    return emit(program_id, MEMBER_ERASED, {
        "member_id": member_id, "program_id": program_id, "serial_number": serial_number,
        "erased_at": (erased_at or utcnow()).isoformat()})
