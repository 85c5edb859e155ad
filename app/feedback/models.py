"""Feedback invitations and their answers (one answer per invitation)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.timeutil import UTCDateTime, utcnow


class FeedbackInvitation(db.Model):
    """An invitation to rate a visit, made in the visit's transaction (the ledger entry
    ``entry_id``, at ``location_id``, served by ``staff_member_id``), reached by ``token``
    until ``expires_at``. The answer (``score`` 0-10, ``comment``) is written on the same
    row once: ``answered_at`` set means answered."""

    __tablename__ = "feedback_invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("program_locations.id"))
    staff_member_id: Mapped[int | None] = mapped_column(ForeignKey("staff_members.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    score: Mapped[int | None] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(2))

    __table_args__ = (
        CheckConstraint("score >= 0 AND score <= 10", name="score_0_to_10"),
        Index("ix_feedback_invitations_card_id_created_at", "card_id", "created_at"),
        Index("ix_feedback_invitations_program_id_answered_at", "program_id", "answered_at"),
    )
