"""The rollup tables of the analytics (docs/metrics.md, "How the figures are kept").

Every row describes one closed local day of one program and is written once, by the sweep
(:mod:`app.analytics.rollup`), never by a posting: the earn path writes nothing more.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.loyalty.models import Card, LedgerEntry, Member
from app.timeutil import UTCDateTime, utcnow


class DayCount(db.Model):
    """One additive figure of one local day: ``name`` (``points_redeemed``, ...) with an
    optional ``key`` (a rule's id for ``rule_points``, an amount bucket for
    ``purchase_bucket``, ``<location id>:<score>`` for ``nps_answers``). The key's order
    (name before day) lets a figure be summed over a range of days in one index range."""

    __tablename__ = "analytics_day_counts"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ActivityDay(db.Model):
    """The cards with an activity (``visit``, ``redeem``, ``purchase``) on a local day, by
    their gap: the days since their previous day with it (:data:`~app.analytics.rollup.FIRST`
    for the first ever; capped at :data:`~app.analytics.rollup.CAP`). One row a day and
    activity, whatever the number of members: ``gaps`` are the distinct gaps in increasing
    order (int16), ``cards`` the number of cards with a gap up to each (cumulative, int32) and
    ``seconds`` the same for the cards whose previous day was their first; all little-endian
    (docs/metrics.md shows the sums that give distinct-member counts)."""

    __tablename__ = "analytics_activity_days"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    activity: Mapped[str] = mapped_column(String(8), primary_key=True)
    gaps: Mapped[bytes] = mapped_column(LargeBinary)
    cards: Mapped[bytes] = mapped_column(LargeBinary)
    seconds: Mapped[bytes] = mapped_column(LargeBinary)


class CardActivity(db.Model):
    """A card's last two days of each activity, as of its program's rolled-up days: what
    the next day's gaps are measured from."""

    __tablename__ = "analytics_card_activity"

    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    visit_last: Mapped[date | None] = mapped_column(Date)
    visit_prev: Mapped[date | None] = mapped_column(Date)
    redeem_last: Mapped[date | None] = mapped_column(Date)
    redeem_prev: Mapped[date | None] = mapped_column(Date)
    purchase_last: Mapped[date | None] = mapped_column(Date)
    purchase_prev: Mapped[date | None] = mapped_column(Date)


class ExpiryDay(db.Model):
    """The points of a program's lots (pending ones too) that expire on local day ``day``
    and were left at the end of its last rolled-up day: what its lots gave minus what
    debits took from them, day by day. A few hundred rows per program: the expiring points
    of the next 30 or 90 days are a sum of 30 or 90 of them and today's changes."""

    __tablename__ = "analytics_expiry_days"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)


class OpenDay(db.Model):
    """The day after the last rolled-up one (today, usually), rolled up by the sweep up to
    ``through``: its additive counts and its cards' gaps as JSON, so that a request computes
    only what happened after ``through``. Replaced when its day is rolled up."""

    __tablename__ = "analytics_open_days"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    through: Mapped[datetime] = mapped_column(UTCDateTime)
    counts: Mapped[str] = mapped_column(Text)
    gaps: Mapped[str] = mapped_column(Text)


class OpenCard(db.Model):
    """A card's activity (``visit``, ``redeem``, ``purchase``) on its program's open day,
    counted in :class:`OpenDay` by the sweep's pass up to ``through``: a request counts the
    card's later activity of the day only if no row with a ``through`` up to the one it read
    says it was counted already."""

    __tablename__ = "analytics_open_cards"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), primary_key=True)
    activity: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    through: Mapped[datetime] = mapped_column(UTCDateTime)


class Progress(db.Model):
    """Which local days of a program are rolled up (all up to ``rolled_through``), in which
    time zone (a change of the program's zone rolls it up again), and up to which day its
    :class:`ExpiryDay` rows are (set from the lots when it differs from ``rolled_through``:
    the rows were added after the days were)."""

    __tablename__ = "analytics_progress"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    time_zone: Mapped[str] = mapped_column(String(64))
    rolled_through: Mapped[date | None] = mapped_column(Date)
    expiry_through: Mapped[date | None] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# What the rollup of one day reads, without touching the earn path's own indexes: a BRIN
# index on PostgreSQL (entries are appended in time order; it costs an insert next to
# nothing), members by joining time, and a program's voided cards.
Index("ix_ledger_entries_created_at", LedgerEntry.created_at, postgresql_using="brin")
Index("ix_members_program_id_created_at", Member.program_id, Member.created_at)
Index("ix_cards_voided", Card.program_id, postgresql_where=text("status = 'voided'"),
      sqlite_where=text("status = 'voided'"))
