"""What a member sees of a card's points: available, pending, the next release and the next
expiry (docs/loyalty-engine.md).

:func:`summary` reads the card's open lots (``remaining > 0``) in one query, with the card's
balance and its program's time zone and reminder setting. The API, the card page and both
passes show what it answers.

Points released or expiring at different times of one day are one line for the member
("+40 pending until 3 Dec", "120 points expire on 31 Dec 2026"): the next release is every
pending lot due on the local day (program's time zone) of the earliest one, the next expiry
every available lot expiring on the local day of the soonest one. ``at`` is that earliest
instant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Row, and_, select

from app.errors import NotFound
from app.extensions import db
from app.loyalty.models import Card, PointLot, Program
from passes.points_lines import ExpiringPoints, PendingPoints


@dataclass(frozen=True)
class PointsOnDay:
    """Points that become available (or expire) on one day: ``at`` is the earliest instant
    of them, ``day`` its date in the program's time zone."""

    points: int
    at: datetime
    day: date


@dataclass(frozen=True)
class LotSummary:
    """A card's points as its member sees them.

    ``available`` is the balance (spendable points); ``pending`` all points not yet
    spendable. ``next_release`` and ``next_expiry`` are ``None`` when no lot is pending or
    due to expire. ``expiry_reminder_due``: the next expiry is within the program's
    ``expiry_reminder_days`` (the passes and the card page say it then).
    """

    available: int
    pending: int
    next_release: PointsOnDay | None
    next_expiry: PointsOnDay | None
    expiry_reminder_due: bool
    time_zone: ZoneInfo


def program_zone(name: str | None) -> ZoneInfo:
    """The program's time zone; UTC for a name this system does not know."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


_lots = PointLot.__table__.c
_QUERY = (
    select(Card.balance, Program.time_zone, Program.expiry_reminder_days,
           _lots.pending, _lots.available_at, _lots.expires_at, _lots.remaining)
    .select_from(Card)
    .join(Program, Program.id == Card.program_id)
    # The open lots' partial index (ix_point_lots_open) answers this join.
    .outerjoin(PointLot.__table__, and_(_lots.card_id == Card.id, _lots.remaining > 0))
)


def summary(card_id: int, now: datetime) -> LotSummary:
    """The card's available and pending points, its next release and next expiry at ``now``
    (aware). One query. Raises ``NotFound`` for an unknown card."""
    found = summaries([card_id], now)
    if card_id not in found:
        raise NotFound(f"No card with id {card_id}.")
    return found[card_id]


def summaries(card_ids: Collection[int], now: datetime) -> dict[int, LotSummary]:
    """:func:`summary` of each of ``card_ids`` that exists, in one query (a pre-build of a
    batch of passes reads them all at once)."""
    rows_of: dict[int, list[Row[Any]]] = defaultdict(list)
    for row in db.session.execute(_QUERY.add_columns(Card.id.label("card_id"))
                                  .where(Card.id.in_(list(card_ids)))):
        rows_of[row.card_id].append(row)
    return {card_id: _summarize(rows, now) for card_id, rows in rows_of.items()}


def _summarize(rows: list[Row[Any]], now: datetime) -> LotSummary:
    first = rows[0]
    zone = program_zone(first.time_zone)
    pending = 0
    releases: list[tuple[datetime, int]] = []
    expiries: list[tuple[datetime, int]] = []
    for row in rows:
        if row.remaining is None:  # the outer join's row of a card without open lots
            continue
        if row.pending:
            pending += row.remaining
            releases.append((row.available_at, row.remaining))
        elif row.expires_at is not None:
            expiries.append((row.expires_at, row.remaining))
    next_expiry = _first_day(expiries, zone)
    reminder_due = next_expiry is not None and (
        next_expiry.at - now <= timedelta(days=first.expiry_reminder_days))
    return LotSummary(
        available=first.balance,
        pending=pending,
        next_release=_first_day(releases, zone),
        next_expiry=next_expiry,
        expiry_reminder_due=reminder_due,
        time_zone=zone,
    )


def _first_day(lots: list[tuple[datetime, int]], zone: ZoneInfo) -> PointsOnDay | None:
    """The points of the lots falling on the local day of the earliest of ``lots``."""
    if not lots:
        return None
    at = min(when for when, _ in lots)
    day = at.astimezone(zone).date()
    points = sum(points for when, points in lots if when.astimezone(zone).date() == day)
    return PointsOnDay(points, at, day)


def pass_lines(lots: LotSummary) -> tuple[PendingPoints | None, ExpiringPoints | None]:
    """What both passes say of the card's pending points ("+40 pending until 3 Dec") and,
    within the reminder window only, of its points that expire next."""
    pending = None
    if lots.next_release is not None:
        release = lots.next_release
        pending = PendingPoints(release.points, release.day,
                                later=max(lots.pending - release.points, 0))
    expiring = None
    if lots.next_expiry is not None and lots.expiry_reminder_due:
        expiring = ExpiringPoints(lots.next_expiry.points, lots.next_expiry.day)
    return pending, expiring
