"""The audit trail: who changed what, and when.

Domain services call :func:`record` for every change a person or a system makes to a
program's setup or a member's account (design, rewards, tiers, rules, adjustments, campaigns,
accounts, staff and devices), in the transaction of the change itself, so a change and its
record land together or not at all. Who acted comes from the request: whatever authenticated it
(an API key, a console session) calls :func:`act_as` first; the command line acts as ``cli``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import g, has_app_context
from sqlalchemy import JSON, ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.timeutil import UTCDateTime, utcnow


class AuditEvent(db.Model):
    """One change: ``action`` (such as ``reward.retire``) by ``actor`` (``account:3``,
    ``api_key:7``, ``cli``) to ``target`` (``reward:12``) of a program, with the details that
    say what changed (field names and their new values; never a password or a key)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    # Who that was when it happened (an e-mail address, a key's name), kept as it was.
    actor_name: Mapped[str] = mapped_column(String(254))
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_events_program_id_id", "program_id", "id"),)


@dataclass(frozen=True)
class Actor:
    """Who acts: a reference (``account:3``) and a name for people to read."""

    ref: str
    name: str


SYSTEM = Actor("system", "Pointpass")
CLI = Actor("cli", "command line")


def act_as(actor: Actor) -> None:
    """Record ``actor`` as who makes the changes of this request (or command)."""
    g.audit_actor = actor


def current_actor() -> Actor:
    """Who acts in this request or command (``system`` when nobody said)."""
    if has_app_context():
        actor = g.get("audit_actor")
        if isinstance(actor, Actor):
            return actor
    return SYSTEM


def record(action: str, *, program_id: int | None = None, target: str | None = None,
           details: dict[str, Any] | None = None, actor: Actor | None = None) -> AuditEvent:
    """Add a record of ``action`` to the session, to commit with the change it records."""
    who = actor or current_actor()
    event = AuditEvent(actor=who.ref, actor_name=who.name[:254], program_id=program_id,
                       action=action, target=target, details=details or None)
    db.session.add(event)
    return event


def events(*, program_ids: frozenset[int] | None, program_id: int | None = None,
           before_id: int | None = None, limit: int = 50) -> Sequence[AuditEvent]:
    """The newest records first, ``limit`` of them before ``before_id`` (to page back).

    ``program_ids`` is the reader's scope (None: every program, and the records of no
    program, such as accounts); ``program_id`` narrows to one program.
    """
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if program_ids is not None:
        query = query.where(AuditEvent.program_id.in_(program_ids))
    if program_id is not None:
        query = query.where(AuditEvent.program_id == program_id)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return db.session.scalars(query).all()
