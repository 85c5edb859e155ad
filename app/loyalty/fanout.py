"""Streaming one change to every matching card: a marketer's update, or a program-wide change
(design, artwork, rewards, locations, time zone).

A change of N cards is never one statement over N cards: it is a :class:`PassUpdate` row,
committed with the change, and a job (:func:`run`) that marks the cards chunk by chunk in id
order (keyset pagination), each chunk in its own short transaction that also moves the
update's position. So memory does not grow with N, postings never wait long for a card's
lock, a run that dies resumes after the last chunk it committed, and the update reports its
progress and an estimated finish (:func:`eta`) as it goes.

A program-wide change records *what* changed (``fields``): a channel whose per-card content
shows none of it is not told card by card (:attr:`app.outbox.channels.Channel.depends_on`;
Google keeps the design on the loyalty class, patched once), and its ``program_changed``
hook is called once instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from app import audit, background
from app.extensions import db
from app.loyalty import changes
from app.loyalty.models import Card, CardStatus, Member
from app.outbox import channels
from app.outbox import drain as outbox
from app.outbox.models import OutboxEntry, PassUpdate, UpdateStatus
from app.timeutil import utcnow

log = logging.getLogger("pointpass.updates")

CHUNK = 2000  # cards marked per transaction (POINTPASS_UPDATE_CHUNK)
# Then a run hands over to the next (POINTPASS_UPDATE_RUN_SECONDS), queued behind the drain
# its chunks asked for: a worker that runs both gets to the first pushes of a million-card
# change within seconds (at 60 s they came 65 s after the change, benchmarks/RESULTS.md).
RUN_SECONDS = 5.0
LEASE_SECONDS = 60  # how long a run may go without progress before it is presumed dead


def start(program_id: int, *, actor: str, fields: Iterable[str] | None = None,
          message: str | None = None, tier_id: int | None = None,
          language: str | None = None) -> PassUpdate:
    """Add an update of the program's active cards (in the segment) to the session; its run
    starts once the caller commits. ``fields`` names what changed program-wide (``None``: the
    cards themselves, as for a marketer's message)."""
    pass_update = PassUpdate(
        program_id=program_id, message=message, segment_tier_id=tier_id,
        segment_language=language, requested_by=actor[:64],
        fields=",".join(sorted(set(fields))) if fields is not None else None)
    db.session.add(pass_update)
    db.session.flush()
    background.enqueue_after_commit(run, pass_update.id)
    return pass_update


def program_changed(program_id: int, fields: Iterable[str]) -> PassUpdate:
    """Start telling every active card of the program that its ``fields`` changed (a design,
    artwork, rewards, locations or time-zone change), as whoever acts now; the run starts
    once the caller commits."""
    return start(program_id, actor=audit.current_actor().ref, fields=fields)


def fields_of(pass_update: PassUpdate) -> frozenset[str] | None:
    """What the update changed program-wide, or ``None`` for the cards themselves."""
    if pass_update.fields is None:
        return None
    return frozenset(name for name in pass_update.fields.split(",") if name)


# What a marketer's message to every card of a program changes program-wide for the
# channels (:func:`changed_for_channels`): a wallet that can show one message to all its
# program's passes (a Google loyalty class) needs no row per card for it.
MESSAGE = frozenset({"message"})


# The updates that are a marketer's message to the whole program: no fields, no segment.
_TO_EVERYONE = (PassUpdate.message.is_not(None) & PassUpdate.fields.is_(None)
                & PassUpdate.segment_tier_id.is_(None) & PassUpdate.segment_language.is_(None))


def changed_for_channels(pass_update: PassUpdate) -> frozenset[str] | None:
    """What the channels are told changed program-wide: :func:`fields_of`, or
    :data:`MESSAGE` for a marketer's message to every card of the program (``None``: the
    cards themselves). The test is :data:`_TO_EVERYONE`'s, on one update."""
    changed = fields_of(pass_update)
    if changed is None and pass_update.message is not None and (
            pass_update.segment_tier_id is None and pass_update.segment_language is None):
        return MESSAGE
    return changed


def _messages_after(program_id: Any, after: Any) -> Any:
    return and_(PassUpdate.program_id == program_id, PassUpdate.id > after, _TO_EVERYONE,
                PassUpdate.status != UpdateStatus.QUEUED)


def messages_to_everyone(program_id: int, after: int) -> list[tuple[int, str]]:
    """The program's messages to every card (update id, text) after update ``after``, oldest
    first, of the updates that have started (a queued one is told when its run starts)."""
    return [(update_id, message) for update_id, message in db.session.execute(
        select(PassUpdate.id, PassUpdate.message)
        .where(_messages_after(program_id, after)).order_by(PassUpdate.id))]


def any_message_to_everyone(program_id: ColumnElement[int],
                            after: ColumnElement[int]) -> ColumnElement[bool]:
    """Whether program ``program_id`` (a column) has a started message to every card after
    update ``after`` (a column): :func:`messages_to_everyone` as an SQL condition."""
    return select(PassUpdate.id).where(_messages_after(program_id, after)).exists()


def last_update(program_id: int) -> int:
    """The id of the program's newest update (0 when none)."""
    return int(db.session.scalar(select(func.max(PassUpdate.id))
                                 .where(PassUpdate.program_id == program_id)) or 0)


def eta(pass_update: PassUpdate, now: datetime | None = None) -> datetime | None:
    """When the update should be done at the pace it has kept since it started: ``None``
    before any card is done, and once it is done."""
    if pass_update.status is UpdateStatus.DONE or pass_update.started_at is None:
        return None
    done, total = pass_update.cards_done, pass_update.cards_total
    now = now or utcnow()
    elapsed = (now - pass_update.started_at).total_seconds()
    if done <= 0 or elapsed <= 0:
        return None
    return now + timedelta(seconds=max(total - done, 0) * elapsed / done)


def _segment(pass_update: PassUpdate) -> Any:
    where = (Card.program_id == pass_update.program_id) & (Card.status == CardStatus.ACTIVE)
    if pass_update.segment_tier_id is not None:
        where &= Card.tier_id == pass_update.segment_tier_id
    if pass_update.segment_language is not None:
        where &= Card.member_id.in_(select(Member.id).where(
            Member.language == pass_update.segment_language))
    return where


def _settings() -> tuple[int, int]:
    config = current_app.config
    return (int(config.get("UPDATE_CHUNK", CHUNK)),
            int(config.get("UPDATE_LEASE_SECONDS", LEASE_SECONDS)))


def run(update_id: int) -> None:
    """Mark every matching card changed, chunk by chunk, each chunk announced (a job).

    Safe to run again, and by several workers at once. A run claims a queued update, or one
    left in ``marking`` whose lease has run out (its run died), and resumes after the last card
    marked. Each chunk marks its cards, moves the recorded position and renews the lease in one
    transaction that only commits if the position is still the one it started from, so no card
    is marked (and no device pushed) twice however runs overlap; a run that finds the position
    moved under it stops.
    """
    chunk, lease = _settings()
    pass_update = _claim(update_id, lease)
    if pass_update is None:
        return  # finished, or another run holds it
    where = _segment(pass_update)
    values = {"message": pass_update.message} if pass_update.message is not None else {}
    changed = changed_for_channels(pass_update)
    position: int | None = pass_update.last_card_id
    db.session.commit()
    budget = float(current_app.config.get("UPDATE_RUN_SECONDS", RUN_SECONDS))
    started = time.monotonic()
    try:
        while position is not None and position >= 0:
            position = _mark_chunk(update_id, where, values, changed, position, chunk, lease)
            if position is not None and position >= 0 and time.monotonic() - started > budget:
                # Hand over to a fresh run (rq kills a job after 180 s): it claims the
                # update at once, the lease given up.
                _release(update_id, position)
                background.dispatcher().submit(run, (update_id,), f"update-{update_id}")
                return
    except Exception:
        # Let the retry (or the next sweep) resume at once rather than when the lease ends.
        db.session.rollback()
        if position is not None and position >= 0:
            _release(update_id, position)
        raise


def _claim(update_id: int, lease: int) -> PassUpdate | None:
    """Take the update for this run (committed), or ``None`` if it is not to be run."""
    pass_update = db.session.get(PassUpdate, update_id, populate_existing=True)
    if pass_update is None or pass_update.status not in (UpdateStatus.QUEUED,
                                                         UpdateStatus.MARKING):
        db.session.rollback()
        return None
    now = utcnow()
    first = pass_update.status is UpdateStatus.QUEUED
    guard = (PassUpdate.status == UpdateStatus.QUEUED) if first else (
        (PassUpdate.status == UpdateStatus.MARKING)
        & (PassUpdate.lease_until.is_(None) | (PassUpdate.lease_until <= now)))
    claimed = db.session.execute(
        update(PassUpdate).where(PassUpdate.id == update_id, guard)
        .values(status=UpdateStatus.MARKING, lease_until=now + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        db.session.rollback()
        return None
    if first:  # counted once: a resumed run keeps the total its first run found
        total = db.session.scalar(select(func.count(Card.id)).where(_segment(pass_update)))
        db.session.execute(update(PassUpdate).where(PassUpdate.id == update_id)
                           .values(cards_total=total or 0, started_at=now))
    db.session.commit()
    pass_update = db.session.get(PassUpdate, update_id, populate_existing=True)
    changed = changed_for_channels(pass_update) if pass_update is not None else None
    if first and pass_update is not None and changed is not None:
        _program_changed(pass_update.program_id, changed)
    return pass_update


def _program_changed(program_id: int, changed: frozenset[str]) -> None:
    """Tell the channels the program changed (once per update, as its first run starts): the
    Google class, say. A channel that fails here is caught up by its own periodic sweep."""
    for channel in channels.active():
        if channel.program_changed is None:
            continue
        try:
            channel.program_changed(program_id, changed)
        except Exception:
            db.session.rollback()
            log.warning("channel %s could not take the change of program %d now; its sweep "
                        "tries again", channel.name, program_id, exc_info=True)


def _mark_chunk(update_id: int, where: Any, values: dict[str, Any],
                changed: frozenset[str] | None, after: int, chunk: int,
                lease: int) -> int | None:
    """Mark the next chunk of cards after id ``after`` and commit.

    Returns the new position, ``-1`` once every card is marked (the update is then
    ``pushing``), or ``None`` if another run moved the position first (nothing is written).
    """
    # First statement: on PostgreSQL it locks the update's row until commit, so a second run
    # at the same position waits here, then finds the position moved and stops.
    ours = db.session.execute(
        update(PassUpdate)
        .where(PassUpdate.id == update_id, PassUpdate.status == UpdateStatus.MARKING,
               PassUpdate.last_card_id == after)
        .values(lease_until=utcnow() + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not ours:
        db.session.rollback()
        return None
    ids = list(db.session.scalars(
        select(Card.id).where(where, Card.id > after).order_by(Card.id).limit(chunk)))
    this_update = update(PassUpdate).where(PassUpdate.id == update_id)
    if ids:
        changes.touch_cards(Card.id.in_(ids), update_id=update_id, fields=changed, **values)
        # A card with no outbox row has nobody to tell card by card (no wallet holds it, or
        # its wallets were told program-wide: a Google class): it is done once marked. The
        # others are counted by the drain when their last outbox row is finished.
        told = db.session.scalar(select(func.count(func.distinct(OutboxEntry.card_id))).where(
            OutboxEntry.update_id == update_id, OutboxEntry.card_id.in_(ids))) or 0
        holding = told if changed is None else db.session.scalar(
            select(func.count(Card.id)).where(Card.id.in_(ids), channels.held(Card.id))) or 0
        db.session.execute(this_update.values(
            last_card_id=ids[-1], cards_done=PassUpdate.cards_done + len(ids) - told,
            cards_with_wallet=PassUpdate.cards_with_wallet + holding))
    else:
        db.session.execute(this_update.values(status=UpdateStatus.PUSHING, lease_until=None))
        outbox.close_finished_updates([update_id])
    db.session.commit()
    return ids[-1] if ids else -1


def _release(update_id: int, position: int) -> None:
    """Give up the lease of a run that failed at ``position``, if it still holds it."""
    try:
        db.session.execute(
            update(PassUpdate)
            .where(PassUpdate.id == update_id, PassUpdate.status == UpdateStatus.MARKING,
                   PassUpdate.last_card_id == position)
            .values(lease_until=None)
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.warning("could not release update %d; it resumes when its lease ends", update_id,
                    exc_info=True)


def resume_interrupted() -> list[int]:
    """Start a run for every update a dead run left behind (part of the periodic sweep).

    That is an update in ``marking`` whose lease has run out, or one still ``queued`` a lease
    after it was asked for (its job was lost). Also marks ``done`` any update in ``pushing``
    with nothing left in the outbox. Returns the ids of the updates a run was asked for.
    """
    _, lease = _settings()
    now = utcnow()
    stale = list(db.session.scalars(select(PassUpdate.id).where(
        ((PassUpdate.status == UpdateStatus.QUEUED)
         & (PassUpdate.created_at <= now - timedelta(seconds=lease)))
        | ((PassUpdate.status == UpdateStatus.MARKING)
           & (PassUpdate.lease_until.is_(None) | (PassUpdate.lease_until <= now)))
    ).order_by(PassUpdate.id)))
    pushing = list(db.session.scalars(select(PassUpdate.id).where(
        PassUpdate.status == UpdateStatus.PUSHING)))
    if pushing:
        outbox.close_finished_updates(pushing)
    db.session.commit()
    for update_id in stale:
        log.info("resuming pass update %d", update_id)
        background.dispatcher().submit(run, (update_id,), f"update-{update_id}")
    return stale
