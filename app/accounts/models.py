"""Console accounts, the programs each may manage, and one-time invitation and reset links."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db, stored_enum
from app.loyalty.models import Program
from app.timeutil import UTCDateTime, utcnow

account_programs = Table(
    "account_programs",
    db.metadata,
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("program_id", ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True),
)


class AccountRole(enum.StrEnum):
    """``admin``: every program, and the accounts; ``marketer``: the programs granted;
    ``staff``: none of the console (the till only)."""

    ADMIN = "admin"
    MARKETER = "marketer"
    STAFF = "staff"


class Account(db.Model):
    """A person who signs in with an e-mail address and a password (an argon2id hash; none
    until the invitation is accepted)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored as typed, compared case-insensitively through ``email_key`` (lower-cased).
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[AccountRole] = mapped_column(stored_enum(AccountRole, "account_role"))
    language: Mapped[str] = mapped_column(String(2), default="en", server_default="en")
    password_hash: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True, server_default="1")
    # Bumped by "sign out everywhere" and by a password change: sessions carry the version
    # they started with, and one with an older version is signed out.
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    programs: Mapped[list[Program]] = relationship(secondary=account_programs,
                                                   order_by=Program.id)


class TokenPurpose(enum.StrEnum):
    INVITE = "invite"
    RESET = "reset"


class AccountToken(db.Model):
    """A one-time link: an invitation to set a first password, or a password reset. Only the
    SHA-256 of its secret is stored; it is used up by ``used_at``, and useless after
    ``expires_at``."""

    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            index=True)
    purpose: Mapped[TokenPurpose] = mapped_column(stored_enum(TokenPurpose, "token_purpose"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship()
