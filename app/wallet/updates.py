"""Marketer-triggered pass updates: a message and/or refresh for every matching card."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update

from app import access, audit, background
from app.errors import NotFound, Unprocessable
from app.extensions import db
from app.loyalty import changes
from app.loyalty.models import Card, CardStatus, Member, Program, Tier
from app.outbox import drain as outbox
from app.outbox.models import OutboxEntry, PassUpdate, PassUpdateSkip, UpdateStatus
from app.timeutil import utcnow
from passes.languages import LANGUAGES

log = logging.getLogger("pointpass.updates")

CHUNK = 2000  # cards marked per transaction (POINTPASS_UPDATE_CHUNK)
LEASE_SECONDS = 60  # how long a run may go without progress before it is presumed dead


def request_update(program: Program, *, actor: str, message: str | None = None,
                   tier: str | None = None, language: str | None = None) -> PassUpdate:
    """Queue an update of the program's active cards in the segment; returns it committed."""
    tier_id = None
    if tier is not None:
        tier_id = db.session.scalar(select(Tier.id).where(Tier.program_id == program.id,
                                                          Tier.name == tier))
        if tier_id is None:
            raise Unprocessable(f"The program has no tier named {tier!r}.", errors=[
                {"location": "json", "field": "segment.tier", "message": "Unknown tier."}])
    if language is not None and language not in LANGUAGES:
        raise Unprocessable(f"Unsupported language {language!r}.")
    pass_update = PassUpdate(program_id=program.id, message=message, segment_tier_id=tier_id,
                             segment_language=language, requested_by=actor)
    db.session.add(pass_update)
    db.session.flush()
    audit.record("pass-update.request", program_id=program.id,
                 target=f"pass_update:{pass_update.id}",
                 details={k: v for k, v in (("message", message), ("tier", tier),
                                            ("language", language)) if v is not None} or None)
    background.enqueue_after_commit(run, pass_update.id)
    db.session.commit()
    return pass_update


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
    position: int | None = pass_update.last_card_id
    db.session.commit()
    try:
        while position is not None and position >= 0:
            position = _mark_chunk(update_id, where, values, position, chunk, lease)
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
                           .values(cards_total=total or 0))
    db.session.commit()
    return db.session.get(PassUpdate, update_id, populate_existing=True)


def _mark_chunk(update_id: int, where: Any, values: dict[str, Any], after: int, chunk: int,
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
        changes.touch_cards(Card.id.in_(ids), update_id=update_id, **values)
        # A card no wallet holds has nobody to tell: it is done once marked. The others are
        # counted by the drain when their last outbox row is finished.
        told = db.session.scalar(select(func.count(func.distinct(OutboxEntry.card_id))).where(
            OutboxEntry.update_id == update_id, OutboxEntry.card_id.in_(ids))) or 0
        db.session.execute(this_update.values(
            last_card_id=ids[-1], cards_done=PassUpdate.cards_done + len(ids) - told,
            cards_with_wallet=PassUpdate.cards_with_wallet + told))
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


def get(update_id: int) -> PassUpdate:
    """The pass update with this id; ``NotFound`` (404) when there is none or its program is
    outside the caller's reach (:mod:`app.access`), alike."""
    pass_update = db.session.get(PassUpdate, update_id)
    if pass_update is None or not access.current().allows(pass_update.program_id):
        raise NotFound(f"No update with id {update_id}.")
    return pass_update


def skipped_by_reason(update_id: int) -> dict[str, int]:
    """The devices (or wallet objects) of the update not told, by reason."""
    return {reason: devices for reason, devices in db.session.execute(
        select(PassUpdateSkip.reason, PassUpdateSkip.devices)
        .where(PassUpdateSkip.update_id == update_id).order_by(PassUpdateSkip.reason))}
