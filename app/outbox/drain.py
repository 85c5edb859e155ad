"""Draining the outbox of pass changes: telling every wallet that holds a changed card.

Changes write outbox rows in their own transaction (``app.loyalty.changes.announce``); after
commit a drain is asked for (coalesced: many changes, one waiting drain). A drain leases a
batch of rows by moving their ``available_at`` past the lease, hands them to their registered
channels (:mod:`app.outbox.channels`), and deletes what was delivered. Rows a dead drain had
leased become available again when the lease runs out, and the periodic sweep
(``app.wallet.sweep``) drains them: nothing is lost when Redis, the worker or the process
dies, only delayed.

Each lease counts an attempt. A row a channel asks to retry backs off (2, 4, 8 ... seconds, at
most ten minutes) until it has had ``POINTPASS_OUTBOX_MAX_ATTEMPTS`` attempts (default
:data:`MAX_ATTEMPTS`, about two hours); then it is *past its retry limit*: no drain leases it
again, it counts as given up on for its marketer update, and it stays in the table for
operators to see and retry (:mod:`app.outbox.status`, ``pointpass outbox``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from app import background, requestid
from app.dbutil import insert
from app.extensions import db
from app.outbox import channels
from app.outbox.channels import Claimed, Delivery
from app.outbox.models import OutboxEntry, PassUpdate, PassUpdateSkip, UpdateStatus
from app.timeutil import utcnow

log = logging.getLogger("pointpass.outbox")

DRAIN_KEY = "outbox-drain"
DRAIN_SECONDS = 60.0  # then a drain hands over to the next (rq kills a job after 180 s)
MAX_ATTEMPTS = 20  # 2 + 4 + ... + 512 s, then ten-minute steps: about two hours of retries


@dataclass
class DrainStats:
    rows: int = 0
    retried: int = 0
    batches: int = 0

    def add(self, other: DrainStats) -> None:
        self.rows += other.rows
        self.retried += other.retried
        self.batches += other.batches


def drain_after_commit() -> None:
    """Ask for a drain once the current transaction commits."""
    background.enqueue_after_commit(drain, coalesce=DRAIN_KEY)


def request_drain() -> None:
    """Ask for a drain now (the periodic sweep)."""
    background.dispatcher().submit(drain, (), DRAIN_KEY)


def _settings() -> tuple[int, int]:
    config = current_app.config
    return int(config.get("OUTBOX_BATCH", 2000)), int(config.get("OUTBOX_LEASE_SECONDS", 60))


def max_attempts() -> int:
    """How many attempts a row gets before it is past its retry limit."""
    return max(1, int(current_app.config.get("OUTBOX_MAX_ATTEMPTS", MAX_ATTEMPTS)))


def past_limit() -> ColumnElement[bool]:
    """The rows past their retry limit: no drain leases them until an operator retries them."""
    return OutboxEntry.attempts >= max_attempts()


def claim(channel: str, limit: int, lease_seconds: int) -> list[Claimed]:
    """Lease up to ``limit`` available rows of ``channel`` and commit; other drains skip
    them."""
    now = utcnow()
    available = (
        select(OutboxEntry.id)
        .where(OutboxEntry.channel == channel, OutboxEntry.available_at <= now, ~past_limit())
        .order_by(OutboxEntry.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = db.session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.id.in_(available.scalar_subquery()))
        .values(available_at=now + timedelta(seconds=lease_seconds),
                attempts=OutboxEntry.attempts + 1)
        .returning(OutboxEntry.id, OutboxEntry.card_id, OutboxEntry.channel,
                   OutboxEntry.update_id, OutboxEntry.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return [Claimed(*row) for row in rows]


def drain() -> DrainStats:
    """Deliver every available outbox row through its channel (the job behind every push
    and sync). Rows of a channel this app does not register stay for a release that does
    (a rolling deploy), in ``pointpass outbox status``'s sight.

    Each channel drains its own rows in batches of its own size, on PostgreSQL at the same
    time as the others (a thread each): Google's objects go at its quota's pace (20 a second)
    while Apple's pushes go at theirs, neither waiting for the other's batch.

    A paced drain of a big update goes on for a long while: after
    ``POINTPASS_OUTBOX_DRAIN_SECONDS`` (default :data:`DRAIN_SECONDS`) it asks for the next
    drain and ends after its batch, so no job runs into rq's timeout, which would kill it
    between its pushes and their bookkeeping (and push those devices again)."""
    registry = channels.registered()
    _give_up_abandoned()
    stats = DrainStats()
    names = sorted(registry)
    if len(names) < 2 or db.engine.dialect.name != "postgresql":
        # SQLite: one writer at a time anyway.
        for name in names:
            stats.add(_drain_channel(registry[name], threading.Event()))
        return stats
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stop = threading.Event()

    def drain_one(channel: channels.Channel, request_id: str) -> DrainStats:
        with app.app_context(), requestid.bound(request_id):  # a session of its own
            return _drain_channel(channel, stop)

    with ThreadPoolExecutor(len(names), thread_name_prefix="pointpass-drain") as pool:
        futures = [pool.submit(drain_one, registry[name], requestid.current())
                   for name in names]
        try:
            for future in futures:
                stats.add(future.result())
        finally:
            stop.set()  # this job is ending (an error, rq's timeout): the others end too
    return stats


def _drain_channel(channel: channels.Channel, stop: threading.Event) -> DrainStats:
    """Deliver ``channel``'s available rows, batch after batch, until none is left, the
    drain's time is up (then the next drain is asked for) or ``stop`` is set."""
    most, lease = _settings()
    budget = float(current_app.config.get("OUTBOX_DRAIN_SECONDS", DRAIN_SECONDS))
    started = time.monotonic()
    stats = DrainStats()
    while not stop.is_set():
        # A paced channel must deliver a batch within its lease: its size, asked before each
        # batch, follows the pace its deliveries keep.
        cap = channel.max_batch(lease) if channel.max_batch is not None else None
        batch = claim(channel.name, most if cap is None else min(most, cap), lease)
        if not batch:
            break
        stats.batches += 1
        outcome, finished = _delivery()
        channel.deliver(batch, outcome)
        _finish([row for row in batch if row.id not in finished], outcome)
        stats.rows += len(batch)
        stats.retried += len(outcome.retry)
        if time.monotonic() - started > budget:
            request_drain()  # the rest in a job of its own
            break
    return stats


def _delivery() -> tuple[Delivery, set[int]]:
    """A batch's :class:`Delivery`, and the ids of the rows its channels finish early."""
    finished: set[int] = set()

    def finish_now(rows: list[Claimed], part: Delivery) -> None:
        _finish(rows, part)
        finished.update(row.id for row in rows)

    return Delivery(finish_now=finish_now), finished


def _finish(batch: list[Claimed], outcome: Delivery) -> None:
    done = [row.id for row in batch if row.id not in outcome.retry]
    finished: set[int] = set()
    if done:
        # Only the rows this drain deleted count: an operator's retry may have had another
        # drain deliver (and count) a row while this one held it.
        finished.update(db.session.scalars(
            delete(OutboxEntry).where(OutboxEntry.id.in_(done)).returning(OutboxEntry.id)))
    now = utcnow()
    limit = max_attempts()
    given_up = [row for row in batch if row.id in outcome.retry and row.attempts >= limit]
    _give_up(given_up, outcome)
    finished.update(row.id for row in given_up)
    backing_off: dict[int, list[int]] = defaultdict(list)  # delay in seconds: row ids
    for row in batch:
        if row.id in outcome.retry and row.attempts < limit:
            # 2, 4, 8 ... seconds, at most ten minutes: a host that stays down is not hammered.
            backing_off[min(2 ** min(row.attempts, 10), 600)].append(row.id)
    for delay, ids in backing_off.items():  # one statement per delay, not per row
        db.session.execute(update(OutboxEntry).where(OutboxEntry.id.in_(ids))
                           .values(available_at=now + timedelta(seconds=delay)))
    _count_updates([row for row in batch if row.id in finished], outcome)
    db.session.commit()


def _give_up(rows: list[Claimed], outcome: Delivery) -> None:
    """Rows past their retry limit: each card counts as a failure of its update and, once
    counted (:func:`_count_updates`), as done; the rows stay, out of the drain's way and of
    their update, for an operator to retry as plain changes (not committed)."""
    if not rows:
        return
    failed = {(row.update_id, row.card_id) for row in rows if row.update_id is not None}
    for update_id, _ in failed:
        outcome.failures[update_id] += 1
    db.session.execute(update(OutboxEntry).where(OutboxEntry.id.in_([row.id for row in rows]))
                       .values(update_id=None))
    log.warning("%d outbox row(s) past their retry limit of %d attempts (%s): see "
                "`pointpass outbox status`", len(rows), max_attempts(),
                ", ".join(sorted({row.channel for row in rows})))


def _give_up_abandoned() -> None:
    """Give up (and commit) the rows whose last allowed attempt's drain died: its lease ran
    out, and no drain leases them again, so their updates would never finish."""
    rows = [Claimed(*row) for row in db.session.execute(
        select(OutboxEntry.id, OutboxEntry.card_id, OutboxEntry.channel, OutboxEntry.update_id,
               OutboxEntry.attempts)
        .where(past_limit(), OutboxEntry.update_id.is_not(None),
               OutboxEntry.available_at <= utcnow())
        .with_for_update(skip_locked=True))]
    if rows:
        outcome = Delivery()
        _give_up(rows, outcome)
        _count_updates(rows, outcome)
    db.session.commit()


def _count_updates(finished: list[Claimed], outcome: Delivery) -> None:
    """Add a batch's outcome to its updates' progress (after its rows were deleted).

    A card is done when the last of its outbox rows for the update is finished (delivered,
    or given up on): a card in Apple and Google Wallet counts once.
    """
    touched: dict[int, set[int]] = defaultdict(set)
    for row in finished:
        if row.update_id is not None:
            touched[row.update_id].add(row.card_id)
    counted = sorted(set(touched) | set(outcome.devices_pushed) | set(outcome.failures)
                     | set(outcome.skipped))
    if counted:
        # Channels drain at the same time: the update rows are locked first, in id order, so
        # the other channel's transaction on them has committed and what follows sees its
        # deleted rows (a card in both wallets, finished by both at once, counts once, not
        # never), and no two transactions wait for each other.
        db.session.execute(select(PassUpdate.id).where(PassUpdate.id.in_(counted))
                           .order_by(PassUpdate.id).with_for_update())
    if touched:
        pending = db.session.execute(select(OutboxEntry.update_id, OutboxEntry.card_id).where(
            OutboxEntry.update_id.in_(list(touched)),
            OutboxEntry.card_id.in_({card for cards in touched.values() for card in cards}),
        )).all()
        for update_id, card_id in pending:
            touched[update_id].discard(card_id)
    finished_cards = {update_id: len(cards) for update_id, cards in touched.items()}
    for update_id in counted:
        skipped = outcome.skipped.get(update_id, {})
        db.session.execute(
            update(PassUpdate).where(PassUpdate.id == update_id).values(
                cards_done=PassUpdate.cards_done + finished_cards.get(update_id, 0),
                devices_pushed=PassUpdate.devices_pushed
                + outcome.devices_pushed.get(update_id, 0),
                failures=PassUpdate.failures + outcome.failures.get(update_id, 0),
                devices_skipped=PassUpdate.devices_skipped + sum(skipped.values()),
            )
        )
        for reason, devices in skipped.items():
            _add_skips(update_id, reason, devices)
    if touched:
        close_finished_updates(list(touched))


def close_finished_updates(update_ids: list[int]) -> None:
    """Mark ``done`` the updates among ``update_ids`` that are pushing with no outbox row
    left (not committed)."""
    # NOT EXISTS, not NOT IN: it stops at the update's first row left, where NOT IN would
    # read all of them (hundreds of thousands, at every batch of a big update).
    still_queued = select(OutboxEntry.id).where(OutboxEntry.update_id == PassUpdate.id)
    db.session.execute(
        update(PassUpdate)
        .where(PassUpdate.id.in_(update_ids), PassUpdate.status == UpdateStatus.PUSHING,
               ~still_queued.exists())
        .values(status=UpdateStatus.DONE, finished_at=utcnow())
    )


def _add_skips(update_id: int, reason: str, devices: int) -> None:
    statement = insert(PassUpdateSkip).values(update_id=update_id, reason=reason,
                                              devices=devices)
    db.session.execute(statement.on_conflict_do_update(
        index_elements=["update_id", "reason"],
        set_={"devices": PassUpdateSkip.devices + statement.excluded.devices}))


def pending() -> int:
    """How many outbox rows are waiting (leased or not)."""
    return int(db.session.scalar(select(func.count(OutboxEntry.id))) or 0)
