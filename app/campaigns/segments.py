"""Segments: which of a program's active cards match a set of conditions.

Every condition is optional and they all must hold (AND). A segment is evaluated as one
set-based query over ``cards`` (which carries the last visit and copies of the member's
fields a segment reads), each condition on another table an ``EXISTS`` (a semi-join), so a
count over a million members is one statement on PostgreSQL and on SQLite alike;
:func:`card_ids` is the same statement selecting the ids.

A *visit* is an earn or a redemption (the member was at the till); a card's last visit is
``Card.last_visit_at``, kept by the ledger's postings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, exists, func, not_, select

from app import dbutil
from app.errors import Unprocessable
from app.extensions import db
from app.loyalty.models import (
    Card,
    CardStatus,
    EntryKind,
    LedgerEntry,
    PointLot,
    Program,
    ProgramLocation,
    Tier,
)
from app.timeutil import now as clock_now
from app.wallet.apple.models import Registration
from app.wallet.google.models import GoogleObjectState

VISITS = (EntryKind.EARN, EntryKind.REDEEM)


class UnknownInProgram(Unprocessable, code="segment-unknown-reference",
                       title="Not in this program"):
    """A segment names a tier or location that the program does not have."""


@dataclass(frozen=True)
class Segment:
    """A segment's conditions; None (or an empty tuple) is "any"."""

    tier_ids: tuple[int, ...] = ()
    languages: tuple[str, ...] = ()
    location_ids: tuple[int, ...] = ()
    last_visit_before: datetime | None = None
    last_visit_after: datetime | None = None
    balance_min: int | None = None
    balance_max: int | None = None
    expiring_within_days: int | None = None
    birthday_month: int | None = None
    apple_installed: bool | None = None
    google_installed: bool | None = None
    joined_from: date | datetime | None = None
    joined_until: date | datetime | None = None

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> Segment:
        """A segment from validated input (lists become tuples; unknown keys refused)."""
        data = dict(data or {})
        for name in ("tier_ids", "languages", "location_ids"):
            if name in data and data[name] is not None:
                data[name] = tuple(data[name])
            elif name in data:
                data[name] = ()
        return cls(**data)

    def as_json(self) -> dict[str, Any]:
        """The conditions given (not the "any" ones), JSON-ready: for storing a campaign's."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value is None or value == ():
                continue
            if isinstance(value, (datetime, date)):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        """The inverse of :meth:`as_json`."""
        data = dict(data)
        for name in ("last_visit_before", "last_visit_after", "joined_from", "joined_until"):
            if isinstance(data.get(name), str):
                data[name] = datetime.fromisoformat(data[name])
        return cls.of(data)


def _as_moment(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def conditions(segment: Segment, at: datetime | None = None) -> list[ColumnElement[bool]]:
    """The segment's conditions as filters on ``cards``, without the program and status
    ones."""
    at = at or clock_now()
    where: list[ColumnElement[bool]] = []
    if segment.tier_ids:
        where.append(Card.tier_id.in_(segment.tier_ids))
    # The member's language, birthday and joining time are copied on the card at enrolment
    # (Card.member_*): no join of members.
    if segment.languages:
        where.append(Card.member_language.in_(segment.languages))
    if segment.location_ids:
        where.append(exists().where(LedgerEntry.card_id == Card.id,
                                    LedgerEntry.location_id.in_(segment.location_ids)))
    # Card.last_visit_at is the latest visit's time (kept by the ledger's postings), so "the
    # last visit was before the moment" (visited before it and not since) is a range on it,
    # and so is "visited since the moment"; a card without a visit has None and matches
    # neither.
    if segment.last_visit_before is not None:
        where.append(Card.last_visit_at < segment.last_visit_before)
    if segment.last_visit_after is not None:
        where.append(Card.last_visit_at >= segment.last_visit_after)
    if segment.balance_min is not None:
        where.append(Card.balance >= segment.balance_min)
    if segment.balance_max is not None:
        where.append(Card.balance <= segment.balance_max)
    if segment.expiring_within_days is not None:
        where.append(exists().where(
            PointLot.card_id == Card.id, PointLot.remaining > 0, PointLot.expires_at > at,
            PointLot.expires_at <= at + timedelta(days=segment.expiring_within_days)))
    if segment.birthday_month is not None:
        where.append(Card.member_birthday_month == segment.birthday_month)
    if segment.apple_installed is not None:
        installed = exists().where(Registration.card_id == Card.id, Registration.installed())
        where.append(installed if segment.apple_installed else not_(installed))
    if segment.google_installed is not None:
        saved = exists().where(GoogleObjectState.card_id == Card.id,
                               GoogleObjectState.saved.is_(True))
        where.append(saved if segment.google_installed else not_(saved))
    if segment.joined_from is not None:
        where.append(Card.member_joined_at >= _as_moment(segment.joined_from))
    if segment.joined_until is not None:
        where.append(Card.member_joined_at < _as_moment(segment.joined_until))
    return where


def check(program: Program, segment: Segment) -> None:
    """422 ``segment-unknown-reference`` when the segment names a tier or location that is
    not the program's (it would silently match nobody)."""
    for model, ids, what in ((Tier, segment.tier_ids, "tier_ids"),
                             (ProgramLocation, segment.location_ids, "location_ids")):
        if not ids:
            continue
        found = set(db.session.scalars(select(model.id).where(
            model.program_id == program.id, model.id.in_(ids))))
        missing = sorted(set(ids) - found)
        if missing:
            raise UnknownInProgram(
                f"{what}: the program has no {', '.join(map(str, missing))}.")


def _select(column: Any, program: Program, segment: Segment,
            at: datetime | None) -> Select[Any]:
    return select(column).select_from(Card).where(
        Card.program_id == program.id, Card.status == CardStatus.ACTIVE,
        *conditions(segment, at))


def card_ids(program: Program, segment: Segment, at: datetime | None = None) -> Select[Any]:
    """The ids of the program's active cards in the segment (a SELECT to run or embed)."""
    return _select(Card.id, program, segment, at)


def count_statement(program: Program, segment: Segment,
                    at: datetime | None = None) -> Select[Any]:
    """The SELECT counting the segment's cards (what :func:`count` runs)."""
    return _select(func.count(), program, segment, at)


@contextmanager
def planner_settings() -> Iterator[None]:
    """:func:`app.dbutil.planner_settings` with at most ``SEGMENT_COUNT_WORKERS`` parallel
    workers (default 0: a count, one request among the postings, keeps to one core)."""
    with dbutil.planner_settings(int(current_app.config.get("SEGMENT_COUNT_WORKERS", 0))):
        yield


def count(program: Program, segment: Segment, at: datetime | None = None) -> int:
    """How many of the program's active cards are in the segment (with
    :func:`planner_settings`)."""
    check(program, segment)
    with planner_settings():
        return int(db.session.scalar(count_statement(program, segment, at)) or 0)
