"""What the outbox is waiting on, for operators, and putting given-up rows back in the queue.

One place for ``pointpass outbox status|retry`` and ``/api/v1/admin/outbox``: both call
:func:`status` and :func:`retry` and only shape the answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select, update

from app.errors import Unprocessable
from app.extensions import db
from app.outbox import channels
from app.outbox import drain as outbox
from app.outbox.models import OutboxEntry
from app.timeutil import utcnow


@dataclass(frozen=True)
class ChannelBacklog:
    """The outbox rows of one channel."""

    channel: str
    rows: int  # every row waiting, whatever its state
    due: int  # available now: the next drain sends them
    past_limit: int  # given up on after the most attempts: only `retry` sends them again
    oldest_created_at: datetime | None
    oldest_age_seconds: float | None  # age of the oldest row, None when there is none


@dataclass(frozen=True)
class OutboxStatus:
    max_attempts: int
    channels: list[ChannelBacklog]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def channel_names() -> list[str]:
    """The channels an operator may name: those the app registered."""
    return sorted(channels.registered())


def check_channel(name: str) -> None:
    """Raise :class:`Unprocessable` unless ``name`` is a registered channel."""
    if name not in channels.registered():
        raise Unprocessable(
            f"Unknown channel {name!r}; the channels are: {', '.join(channel_names())}.",
            errors=[{"location": "json", "field": "channel", "message": "Unknown channel."}])


def status() -> OutboxStatus:
    """The backlog of every registered channel (and of any other channel rows name)."""
    now = utcnow()
    limit = outbox.past_limit()
    rows = db.session.execute(
        select(OutboxEntry.channel, func.count(OutboxEntry.id),
               func.sum(case(((OutboxEntry.available_at <= now) & ~limit, 1), else_=0)),
               func.sum(case((limit, 1), else_=0)),
               func.min(OutboxEntry.created_at))
        .group_by(OutboxEntry.channel)
    ).all()
    db.session.rollback()
    found = {row[0]: row for row in rows}
    backlog = []
    for name in sorted(set(channel_names()) | set(found)):
        _, count, due, past, oldest = found.get(name, (name, 0, 0, 0, None))
        backlog.append(ChannelBacklog(
            channel=name, rows=count, due=int(due or 0), past_limit=int(past or 0),
            oldest_created_at=oldest,
            oldest_age_seconds=None if oldest is None else
            round(max((now - oldest).total_seconds(), 0.0), 3)))
    return OutboxStatus(max_attempts=outbox.max_attempts(), channels=backlog)


def retry(channel: str | None = None, *, everything: bool = False) -> int:
    """Make due now, with no attempts counted, the rows past their retry limit (with
    ``everything``: every row not due now), of ``channel`` or all; ask for a drain once that
    commits. Returns how many rows it changed: running it again changes none.

    With ``everything``, rows a drain holds at that moment are made due too: they may be
    sent twice (a repeated push, or a sync of the newest version), never counted twice.
    """
    if channel is not None:
        check_channel(channel)
    now = utcnow()
    which = outbox.past_limit()
    if everything:
        which = or_(which, OutboxEntry.available_at > now, OutboxEntry.attempts > 0)
    statement = update(OutboxEntry).where(which)
    if channel is not None:
        statement = statement.where(OutboxEntry.channel == channel)
    changed = db.session.execute(
        statement.values(attempts=0, available_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if changed:
        outbox.drain_after_commit()
    db.session.commit()
    return int(changed)
