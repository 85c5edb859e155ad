"""Marketer-triggered pass updates: a message and/or refresh for every matching card."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from app import access, audit
from app.errors import NotFound, Unprocessable
from app.extensions import db
from app.loyalty import fanout
from app.loyalty.models import Program, Tier
from app.outbox.models import PassUpdate, PassUpdateSkip
from passes.languages import LANGUAGES


def request_update(program: Program, *, actor: str, message: str | None = None,
                   tier: str | None = None, language: str | None = None,
                   fields: Iterable[str] | None = None) -> PassUpdate:
    """Queue an update of the program's active cards in the segment; returns it committed.
    ``fields``: the program's fields whose change the update carries (the console publishes
    a design this way), ``None`` for a marketer's update of the cards themselves."""
    tier_id = None
    if tier is not None:
        tier_id = db.session.scalar(select(Tier.id).where(Tier.program_id == program.id,
                                                          Tier.name == tier))
        if tier_id is None:
            raise Unprocessable(f"The program has no tier named {tier!r}.", errors=[
                {"location": "json", "field": "segment.tier", "message": "Unknown tier."}])
    if language is not None and language not in LANGUAGES:
        raise Unprocessable(f"Unsupported language {language!r}.")
    pass_update = fanout.start(program.id, actor=actor, fields=fields, message=message,
                               tier_id=tier_id, language=language)
    audit.record("pass-update.request", program_id=program.id,
                 target=f"pass_update:{pass_update.id}",
                 details={k: v for k, v in (("message", message), ("tier", tier),
                                            ("language", language)) if v is not None} or None)
    db.session.commit()
    return pass_update


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
