"""What Pointpass keeps about Google Wallet: sync state, notifications, callback nonces."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.timeutil import UTCDateTime, utcnow


class GoogleObjectState(db.Model):
    """The card's loyalty object as last sent to Google, and whether a holder saved it."""

    __tablename__ = "google_objects"

    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"),
                                         primary_key=True)
    synced_version: Mapped[int]
    synced_balance: Mapped[int] = mapped_column(BigInteger)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    saved: Mapped[bool] = mapped_column(default=False)
    saved_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class GoogleClassState(db.Model):
    """The program's loyalty class as last sent to Google (by design version), and the last
    of the program's messages to every card that Google shows on it (by update id)."""

    __tablename__ = "google_classes"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"),
                                            primary_key=True)
    synced_design_version: Mapped[int]
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    messages_through: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class GoogleNotification(db.Model):
    """A notifying update sent for a card: Google allows three per pass per 24 hours."""

    __tablename__ = "google_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_google_notifications_card_id_sent_at", "card_id", "sent_at"),)


class GoogleCallbackNonce(db.Model):
    """Nonces of callbacks already handled: Google may deliver an event more than once."""

    __tablename__ = "google_callback_nonces"

    nonce: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
