"""Devices that hold Apple passes, and which cards they registered for updates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ColumnElement, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.loyalty.models import Card
from app.timeutil import UTCDateTime, utcnow


class Device(db.Model):
    """A device's Wallet, as Apple identifies it, with the push token it last gave us."""

    __tablename__ = "apple_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    library_identifier: Mapped[str] = mapped_column(String(128), unique=True)
    push_token: Mapped[str] = mapped_column(String(200), index=True)
    # When the push token was last given: a 410 older than this does not remove the device.
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The tag its last list of changed serials was computed at (app.loyalty.changes): every
    # change with a smaller stamp was in its view then, so a push for it would tell the device
    # nothing new. A drain that resumes a dead drain's rows does not push again the devices
    # that have since asked (app.wallet.apple.push). NULL: it never asked.
    listed_through: Mapped[int | None] = mapped_column(BigInteger)


class Registration(db.Model):
    """A device asked to be told when a card's pass changes.

    Unregistering (the pass removed from the device) keeps the row with ``removed_at`` set,
    so a member's page can show the device as removed; registering again clears it. Every
    reader for pushes, serial lists and counts takes only the rows where it is None
    (``Registration.installed()``).
    """

    __tablename__ = "apple_registrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("apple_devices.id", ondelete="CASCADE"))
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    device: Mapped[Device] = relationship()
    card: Mapped[Card] = relationship()

    # (card_id, removed_at): "the card is installed on a device" is read from the index alone.
    __table_args__ = (UniqueConstraint("device_id", "card_id"),
                      Index("ix_apple_registrations_card_id_removed_at", "card_id", "removed_at"))

    @classmethod
    def installed(cls) -> ColumnElement[bool]:
        """The condition for a registration whose pass is still on the device."""
        return cls.removed_at.is_(None)
