"""API keys: stored as SHA-256 hashes, each with one role."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db, stored_enum
from app.timeutil import UTCDateTime, utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"
    STAFF = "staff"
    POS = "pos"


# The programs a key may reach; a key with none reaches every program.
api_key_programs = Table(
    "api_key_programs",
    db.metadata,
    Column("api_key_id", ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("program_id", ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True),
)


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[Role] = mapped_column(stored_enum(Role, "api_key_role"))
    # The first characters of the key, shown in listings so people can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the key last authenticated a request, to the minute (see app.auth.keys): written
    # at most once a minute, so it costs no write per request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
