"""The outbox of pass changes still to announce, and the marketer updates whose progress
its drain counts (each outbox row may belong to one)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db, stored_enum
from app.timeutil import UTCDateTime, utcnow


class UpdateStatus(enum.StrEnum):
    QUEUED = "queued"
    MARKING = "marking"
    PUSHING = "pushing"
    DONE = "done"


class PassUpdate(db.Model):
    """A marketer's update of every matching card: optional message, progress counters."""

    __tablename__ = "pass_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    message: Mapped[str | None] = mapped_column(Text)
    segment_tier_id: Mapped[int | None] = mapped_column(ForeignKey("tiers.id"))
    segment_language: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[UpdateStatus] = mapped_column(stored_enum(UpdateStatus, "pass_update_status"),
                                                 default=UpdateStatus.QUEUED)
    cards_total: Mapped[int] = mapped_column(default=0)
    cards_done: Mapped[int] = mapped_column(default=0)
    devices_pushed: Mapped[int] = mapped_column(default=0)
    failures: Mapped[int] = mapped_column(default=0)
    # Cards some wallet holds (an outbox row was written for them); the others are done as
    # soon as they are marked.
    cards_with_wallet: Mapped[int] = mapped_column(default=0, server_default="0")
    # Devices (or wallet objects) a channel did not tell because it could not: the reasons
    # are in ``pass_update_skips``.
    devices_skipped: Mapped[int] = mapped_column(default=0, server_default="0")
    # Where marking got to: every matching card with a smaller or equal id has been marked
    # (keyset position), so a run interrupted by a dead worker resumes after it.
    last_card_id: Mapped[int] = mapped_column(default=0, server_default="0")
    # While marking, the run holding the update renews this after every chunk; once it has
    # passed, the run is presumed dead and the sweep may resume the update.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requested_by: Mapped[str] = mapped_column(String(64))
    # What changed program-wide, comma-separated (``background_color,logo``), for a design,
    # artwork, reward, location or time-zone change; NULL for a marketer's update of the
    # cards. A channel whose per-card content shows none of it is not told card by card.
    fields: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When its first run started marking: the pace since then gives the estimated finish.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PassUpdateSkip(db.Model):
    """How many devices of an update a channel skipped for one reason (such as
    ``apns-not-configured``): one row per update and reason, added to by each drain."""

    __tablename__ = "pass_update_skips"

    update_id: Mapped[int] = mapped_column(ForeignKey("pass_updates.id", ondelete="CASCADE"),
                                           primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), primary_key=True)
    devices: Mapped[int] = mapped_column(default=0)


class OutboxEntry(db.Model):
    """A card whose passes changed and whose holders have not been told yet.

    Written in the transaction that changed the card, so no change is lost when Redis or the
    worker is down. A drain leases rows by moving ``available_at`` forward and counting the
    attempt; rows whose drain died become available again when the lease runs out. A row
    whose ``attempts`` reached the drain's limit (``POINTPASS_OUTBOX_MAX_ATTEMPTS``) is no
    longer leased: it stays for operators to see and retry (``pointpass outbox``).
    """

    __tablename__ = "pass_outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(db.Integer, "sqlite"),
                                    primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    # Which wallet to tell: the name of a registered channel (app.outbox.channels), such as
    # "apple" (push to registered devices) or "google" (patch the object).
    channel: Mapped[str] = mapped_column(String(8), default="apple")
    update_id: Mapped[int | None] = mapped_column(
        ForeignKey("pass_updates.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # Each channel leases its own rows, oldest first (app.outbox.drain.claim): read in
        # the index's order, they need no sort however many wait.
        Index("ix_pass_outbox_channel_id", "channel", "id"),
        # An update's rows, and which of a chunk's cards have one: a marking chunk asks that
        # of its 2,000 cards however many rows the update has (update_id alone read them all).
        Index("ix_pass_outbox_update_id_card_id", "update_id", "card_id"),
        # A card's rows: Google's audience asks whether one is on its way (in every
        # posting's announce, for a card without a synced object), and a card's deletion
        # cascades here. Without it, each read a million-row outbox (52 ms a posting).
        Index("ix_pass_outbox_card_id", "card_id"),
    )
