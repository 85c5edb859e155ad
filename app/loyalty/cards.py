"""Card life cycle beyond the ledger: voiding."""

from __future__ import annotations

import logging

from sqlalchemy import update

from app.errors import CardVoided
from app.extensions import db
from app.loyalty import changes, ledger
from app.loyalty.models import Card, CardStatus
from app.timeutil import utcnow

log = logging.getLogger(__name__)


def void(serial_number: str, *, reason: str, actor: str) -> Card:
    """Void a card for good: its passes say so and its balance can no longer change. Commits."""
    card = ledger.lock_card(serial_number)
    if card.status is CardStatus.VOIDED:
        db.session.rollback()
        raise CardVoided(f"Card {serial_number} is already voided.")
    db.session.execute(
        update(Card).where(Card.id == card.id)
        .values(status=CardStatus.VOIDED, **changes.bump(utcnow()))
        .execution_options(synchronize_session=False)
    )
    changes.announce([card.id])
    db.session.commit()
    log.info("card %s voided by %s: %s", serial_number, actor, reason)
    return ledger.get_card(serial_number)
