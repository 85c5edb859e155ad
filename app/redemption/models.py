"""Redemptions: which reward, by which staff key or member, where and when; and their
reversal."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.timeutil import UTCDateTime, utcnow


class Redemption(db.Model):
    __tablename__ = "redemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"))
    ledger_entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    reward_id: Mapped[int | None] = mapped_column(ForeignKey("rewards.id"))
    points: Mapped[int] = mapped_column(BigInteger)  # positive: what was spent
    code_version: Mapped[int]  # the code version the card showed
    # Who redeemed: a staff (or admin) key, or a staff member signed in on a till device.
    staff_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    staff_member_id: Mapped[int | None] = mapped_column(ForeignKey("staff_members.id"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("till_devices.id"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("program_locations.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reversal_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))

    __table_args__ = (Index("ix_redemptions_card_id_id", "card_id", "id"),)
