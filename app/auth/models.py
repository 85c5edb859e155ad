"""API keys: stored as SHA-256 hashes, each with one role."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.timeutil import UTCDateTime, utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"
    STAFF = "staff"
    POS = "pos"


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[Role] = mapped_column(
        Enum(Role, name="api_key_role", native_enum=False, create_constraint=True, length=16,
             values_callable=lambda e: [m.value for m in e])
    )
    # The first characters of the key, shown in listings so people can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the key last authenticated a request, to the minute (see app.auth.keys): written
    # at most once a minute, so it costs no write per request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
