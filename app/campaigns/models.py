"""Campaigns, their recipients, and the indexes segments are counted with."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db, stored_enum
from app.loyalty.models import Card, LedgerEntry, PointLot
from app.timeutil import UTCDateTime, utcnow

_VISIT = text("kind IN ('earn', 'redeem')")

# Indexes for segment conditions (see app.campaigns.segments and benchmarks/RESULTS.md):
# a program's active cards in id order, and by last visit (on PostgreSQL both with every
# card column a segment reads, so a count reads an index only); visits by card and by time;
# entries at a location; lots with points left by expiry.
_SEGMENT_COLUMNS = [Card.tier_id, Card.balance, Card.member_language, Card.member_birthday_month,
                    Card.member_joined_at]
Index("ix_cards_program_id_status_id", Card.program_id, Card.status, Card.id,
      postgresql_include=[*_SEGMENT_COLUMNS, Card.last_visit_at])
Index("ix_cards_program_id_status_last_visit_at", Card.program_id, Card.status,
      Card.last_visit_at, postgresql_include=[*_SEGMENT_COLUMNS, Card.id])
Index("ix_ledger_entries_visits_card_id_created_at", LedgerEntry.card_id,
      LedgerEntry.created_at, postgresql_where=_VISIT, sqlite_where=_VISIT)
Index("ix_ledger_entries_visits_created_at_card_id", LedgerEntry.created_at,
      LedgerEntry.card_id, postgresql_where=_VISIT, sqlite_where=_VISIT)
Index("ix_ledger_entries_location_id_card_id", LedgerEntry.location_id, LedgerEntry.card_id,
      postgresql_where=text("location_id IS NOT NULL"),
      sqlite_where=text("location_id IS NOT NULL"))
Index("ix_point_lots_left_expires_at_card_id", PointLot.expires_at, PointLot.card_id,
      postgresql_where=text("remaining > 0"), sqlite_where=text("remaining > 0"))


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"


class Campaign(db.Model):
    """A message (and optional bonus points) for a segment of a program's members."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    # The segment's conditions (app.campaigns.segments.Segment.as_json).
    segment: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Per language: {"en": {"lock_screen": "...", "back": "..."}, ...}
    messages: Mapped[dict[str, dict[str, str]]] = mapped_column(JSON)
    bonus_points: Mapped[int | None] = mapped_column(BigInteger)
    holdout_percent: Mapped[int] = mapped_column(default=0, server_default="0")
    status: Mapped[CampaignStatus] = mapped_column(
        stored_enum(CampaignStatus, "campaign_status"), default=CampaignStatus.DRAFT)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Counted when the send starts (the recipients are fixed then), and as it goes.
    recipients_total: Mapped[int] = mapped_column(default=0, server_default="0")
    held_out_total: Mapped[int] = mapped_column(default=0, server_default="0")
    sent_total: Mapped[int] = mapped_column(default=0, server_default="0")
    skipped_total: Mapped[int] = mapped_column(default=0, server_default="0")
    # The pass update whose outbox rows carry the campaign's changes: the outbox drain counts
    # its devices reached and failures (app.outbox.drain).
    pass_update_id: Mapped[int | None] = mapped_column(ForeignKey("pass_updates.id"))

    __table_args__ = (
        CheckConstraint("holdout_percent >= 0 AND holdout_percent <= 50",
                        name="holdout_percent_range"),
        Index("ix_campaigns_status_scheduled_at", "status", "scheduled_at"),
    )


class Recipient(db.Model):
    """A card the campaign was sent to (or held out from): one row each, so a send gives
    each card its message and bonus once, and a stopped send resumes where it was."""

    __tablename__ = "campaign_recipients"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"),
                                         primary_key=True)
    held_out: Mapped[bool] = mapped_column(default=False)
    # None: not done yet; "sent": message (and bonus) given; "held_out"; "skipped" (the
    # card was voided, or its member withdrew marketing consent, before its turn).
    outcome: Mapped[str | None] = mapped_column(String(16))
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
