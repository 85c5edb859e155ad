"""Wallet channels: how the outbox tells a wallet, without knowing which wallets there are.

A channel (Apple push, Google sync, later webhooks) supplies two things and registers with
the app in ``create_app``:

- its *audience*: given the changed cards' id column, an SQL condition (typically an
  ``EXISTS`` over its own tables) saying which cards it has someone to tell about. The
  announce insert writes an outbox row for each card and channel whose condition holds, in
  the transaction of the change itself.
- its *delivery*: given the leased outbox rows of its name, tell the wallet, and record in
  a :class:`Delivery` what to retry and how each marketer update fared.

The registry lives in ``app.extensions``, so every app built by ``create_app`` has its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Integer, bindparam, false, insert, literal, or_, select, true, union_all
from sqlalchemy.sql.elements import ColumnElement

from app.outbox.models import OutboxEntry

EXTENSION = "pointpass.channels"


@dataclass(frozen=True)
class Claimed:
    """An outbox row a drain has leased: tell ``channel`` that card ``card_id`` changed."""

    id: int
    card_id: int
    channel: str
    update_id: int | None
    attempts: int


@dataclass
class Delivery:
    """What a channel did with a batch: rows to retry, and per-update counts."""

    retry: set[int] = field(default_factory=set)  # outbox ids
    devices_pushed: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    failures: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    # update id -> reason (e.g. "apns-not-configured") -> devices not told for that reason
    skipped: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    # Set by the drain: ``finish_now(rows, part)`` finishes some of the batch's rows with
    # their own outcome ``part`` at once (deleted, counted, committed).
    finish_now: Callable[[list[Claimed], Delivery], None] | None = None

    def finish(self, rows: list[Claimed], part: Delivery) -> None:
        """``rows`` of the batch are delivered, with the outcome ``part``: finished now when
        the drain allows it (so a long delivery killed midway repeats only what it had not
        finished), else counted in this outcome, for the drain to finish with the batch."""
        if self.finish_now is None:
            self.add(part)
            return
        part.retry = self.retry & {row.id for row in rows}
        self.finish_now(rows, part)

    def add(self, other: Delivery) -> None:
        """Count ``other``'s outcome in this one."""
        self.retry |= other.retry
        for update_id, devices in other.devices_pushed.items():
            self.devices_pushed[update_id] += devices
        for update_id, failures in other.failures.items():
            self.failures[update_id] += failures
        for update_id, reasons in other.skipped.items():
            self.skipped[update_id].update(reasons)

    def skip(self, update_id: int, reason: str, count: int = 1) -> None:
        """Record that ``count`` devices (or wallet objects) of the update were not told,
        for ``reason`` (such as ``apns-not-configured``); their rows are finished anyway."""
        self.skipped[update_id][reason] += count


# ``audience(card_id, new_cards)``: the condition on the changed cards' id column for the
# cards this channel must hear about, or ``None`` for all of them. ``new_cards`` is true for
# cards just created, which no wallet holds yet.
Audience = Callable[[ColumnElement[int], bool], ColumnElement[bool] | None]
# ``deliver(rows, outcome)``: tell the wallet about the leased ``rows`` (all of this channel)
# and commit; record in ``outcome`` the rows to retry and the per-update counts.
Deliver = Callable[[list[Claimed], Delivery], None]
# ``program_changed(program_id, fields)``: the program's ``fields`` changed (a design, say);
# called once per change, in a job, before its cards are marked (may call out; may raise).
ProgramChanged = Callable[[int, frozenset[str]], None]


@dataclass(frozen=True)
class Channel:
    """A wallet the outbox tells about card changes (see the module's docstring).

    ``name`` is stored in each outbox row (at most 8 characters). ``enabled`` says, in an
    app context, whether the channel is configured: no rows are written for it while not.
    ``depends_on`` names the program-wide fields its per-card deliveries show (``None``: all
    of them); a program change of none of them writes no rows for it, and only its
    ``program_changed`` hook hears of it.
    """

    name: str
    audience: Audience
    deliver: Deliver
    enabled: Callable[[], bool] = lambda: True
    depends_on: frozenset[str] | None = None
    program_changed: ProgramChanged | None = None
    # ``max_batch(lease_seconds)``: the most rows it can deliver within a lease (a paced
    # channel), or ``None`` for no limit.
    max_batch: Callable[[int], int | None] | None = None

    def shows(self, fields: frozenset[str] | None) -> bool:
        """Whether a change of ``fields`` (``None``: of the cards themselves) changes what
        this channel's wallets show card by card."""
        return fields is None or self.depends_on is None or bool(fields & self.depends_on)

    def __post_init__(self) -> None:
        if not 0 < len(self.name) <= 8:
            raise ValueError(f"channel name {self.name!r} must have 1 to 8 characters")


def register(app: Flask, channel: Channel) -> None:
    """Make ``channel`` one of ``app``'s channels (at set-up, before any request)."""
    registry: dict[str, Channel] = app.extensions.setdefault(EXTENSION, {})
    if channel.name in registry:
        raise ValueError(f"a channel named {channel.name!r} is already registered")
    registry[channel.name] = channel


def registered() -> dict[str, Channel]:
    """The current app's channels by name, configured or not."""
    return current_app.extensions.get(EXTENSION, {})  # type: ignore[no-any-return]


def active(fields: frozenset[str] | None = None) -> tuple[Channel, ...]:
    """The current app's channels that are configured: those to write outbox rows for (for
    a program change of ``fields``, those that show it card by card)."""
    return tuple(channel for channel in registered().values()
                 if channel.enabled() and channel.shows(fields))


def held(card_id: ColumnElement[int]) -> ColumnElement[bool]:
    """The condition on ``card_id`` for cards some configured wallet holds (a device
    registered them, a Google object exists), whether or not a change is told card by card."""
    holds = []
    for channel in active():
        condition = channel.audience(card_id, False)
        if condition is None:
            return true()
        holds.append(condition)
    return or_(*holds) if holds else false()


def announce_statement(channels: tuple[Channel, ...], card_id: ColumnElement[int],
                       cards: ColumnElement[bool], new_cards: bool = False) -> Any:
    """The outbox insert for ``channels`` and the changed cards: rows of ``card_id`` matching
    ``cards``, one per card and channel whose audience holds. Its parameters are ``now`` and
    ``update_id`` (and whatever ``cards`` binds)."""
    now = bindparam("now", type_=OutboxEntry.available_at.type)
    selects = []
    for channel in channels:
        query = select(card_id, literal(channel.name), bindparam("update_id", type_=Integer),
                       literal(0), now, now).where(cards)
        audience = channel.audience(card_id, new_cards)
        if audience is not None:
            query = query.where(audience)
        selects.append(query)
    # SQLAlchemy reports -1 rows for an INSERT unless asked to keep the driver's count.
    return insert(OutboxEntry).from_select(
        ["card_id", "channel", "update_id", "attempts", "available_at", "created_at"],
        selects[0] if len(selects) == 1 else union_all(*selects),
    ).execution_options(preserve_rowcount=True)
