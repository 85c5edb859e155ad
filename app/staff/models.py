"""Staff members (a name, a hashed PIN, the locations they may work at) and the till devices
enrolled at a location."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.loyalty.models import ProgramLocation
from app.timeutil import UTCDateTime, utcnow

staff_member_locations = Table(
    "staff_member_locations",
    db.metadata,
    Column("staff_member_id", ForeignKey("staff_members.id", ondelete="CASCADE"),
           primary_key=True),
    Column("location_id", ForeignKey("program_locations.id", ondelete="CASCADE"),
           primary_key=True),
)


class StaffMember(db.Model):
    """A person at the till. The PIN is stored as a salted scrypt hash (see app.staff.pins)."""

    __tablename__ = "staff_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    pin_hash: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(2), default="en", server_default="en")
    active: Mapped[bool] = mapped_column(default=True, server_default="1")
    # Wrong PINs since the last good one or lock; at the limit the member is locked until
    # ``locked_until``. In the database, so every instance agrees.
    failed_pin_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    locations: Mapped[list[ProgramLocation]] = relationship(
        secondary=staff_member_locations, order_by=ProgramLocation.id)


class TillDevice(db.Model):
    """A phone or tablet enrolled once, with a one-time link, to work at one location.

    Until enrolled it has the hash of its enrolment token (and an expiry); once enrolled, the
    hash of the secret in its device cookie. Revoked devices are kept, for the ledger's sake.
    """

    __tablename__ = "till_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("program_locations.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(120))
    enrol_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    enrol_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    location: Mapped[ProgramLocation] = relationship()
