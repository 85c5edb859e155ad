"""The webhook tables: a program's endpoints and the event types each hears, the events, one
delivery per event and endpoint (the outbox row of this channel), and every attempt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.timeutil import UTCDateTime, utcnow

BIG_ID = BigInteger().with_variant(db.Integer, "sqlite")


class WebhookEndpoint(db.Model):
    """A URL of a program's that hears the event types of its subscriptions.

    ``secret`` signs the deliveries (``whsec_`` and base64); after a rotation the previous
    one signs too until ``previous_secret_until``. ``failing_since``: the first failed
    attempt since the last success; an endpoint failing for the retry period is disabled
    (``disabled_reason`` ``failing``) and the program's admins are told in the console.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"),
                                            index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True)
    secret: Mapped[str] = mapped_column(String(80))
    previous_secret: Mapped[str | None] = mapped_column(String(80))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "manual" (someone disabled it) or "failing" (it failed for the whole retry period).
    disabled_reason: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookSubscription(db.Model):
    """An event type an endpoint hears (with its program, for the emit's lookup)."""

    __tablename__ = "webhook_subscriptions"

    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))

    __table_args__ = (Index("ix_webhook_subscriptions_program_type", "program_id",
                            "event_type"),)


class WebhookEvent(db.Model):
    """Something that happened in a program, with the exact body every delivery sends."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    # The ``webhook-id`` header: the same for every attempt and replay (receivers dedupe).
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    # The card the event is about, if any: a member's erasure deletes its events (their
    # bodies hold personal data such as the name given at enrollment).
    card_serial: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class DeliveryStatus:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up on after the retry period, or its endpoint went away


class WebhookDelivery(db.Model):
    """An event still to tell (or told) one endpoint: the outbox row of the webhooks.

    Written in the transaction of the change. A drain leases it by moving ``available_at``
    past the lease; a dead drain's delivery is due again when the lease runs out, and the
    periodic sweep asks for a drain. A failure moves ``available_at`` to the next retry.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"),
                                          index=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(10), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When retrying stops: the first attempt's time plus the retry period (set then).
    retry_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_webhook_deliveries_status_available_at", "status", "available_at"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )


class WebhookAttempt(db.Model):
    """One POST of a delivery: when, how long, the status code or the error."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(default=0)
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(200))
    succeeded: Mapped[bool] = mapped_column(default=False)
