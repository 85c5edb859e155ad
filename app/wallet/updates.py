"""Marketer-triggered pass updates: a message and/or refresh for every matching card."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from app import jobs
from app.errors import NotFound, Unprocessable
from app.extensions import db
from app.loyalty import changes
from app.loyalty.models import LANGUAGES, Card, CardStatus, Member, Program, Tier
from app.wallet import outbox
from app.wallet.models import PassUpdate, UpdateStatus

CHUNK = 2000


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
    jobs.enqueue_after_commit(run, pass_update.id)
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


def run(update_id: int) -> None:
    """Mark every matching card changed, chunk by chunk, each chunk announced (a job)."""
    pass_update = db.session.get(PassUpdate, update_id)
    if pass_update is None or pass_update.status is not UpdateStatus.QUEUED:
        return  # already run (a retried job)
    where = _segment(pass_update)
    pass_update.status = UpdateStatus.MARKING
    pass_update.cards_total = db.session.scalar(select(func.count(Card.id)).where(where)) or 0
    message = pass_update.message
    db.session.commit()

    values = {"message": message} if message is not None else {}
    last_id = 0
    while True:
        ids = list(db.session.scalars(
            select(Card.id).where(where, Card.id > last_id).order_by(Card.id).limit(CHUNK)))
        if not ids:
            break
        changes.touch_cards(Card.id.in_(ids), update_id=update_id, **values)
        db.session.commit()
        last_id = ids[-1]

    db.session.execute(update(PassUpdate).where(PassUpdate.id == update_id)
                       .values(status=UpdateStatus.PUSHING))
    outbox.close_finished_updates([update_id])
    db.session.commit()


def get(update_id: int) -> PassUpdate:
    pass_update = db.session.get(PassUpdate, update_id)
    if pass_update is None:
        raise NotFound(f"No update with id {update_id}.")
    return pass_update
