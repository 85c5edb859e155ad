"""Card life cycle beyond the ledger: voiding."""

from __future__ import annotations

import logging

from sqlalchemy import bindparam, update

from app import access, dbutil
from app.errors import CardVoided
from app.loyalty import changes, ledger
from app.loyalty.models import Card, CardStatus
from app.timeutil import utcnow
from app.webhooks import emit as webhooks

log = logging.getLogger("pointpass.cards")

_VOID = dbutil.DriverStatement(lambda dialect: update(Card.__table__).where(
    Card.__table__.c.id == bindparam("card_id")
).values(status=bindparam("status", type_=Card.status.type), **changes.bump_template(dialect)))


def void(serial_number: str, *, reason: str, actor: str) -> Card:
    """Void a card for good: its passes say so and its balance can no longer change. Commits;
    recorded in the audit trail as ``card.void``. ``NotFound`` for a card outside the
    caller's programs (:mod:`app.access`), as for one that does not exist."""
    with ledger.posting(serial_number) as p:  # no ledger entry: the card's lock, one commit
        access.check(p.card.program_id, f"card with serial number {serial_number!r}")
        if p.card.status is CardStatus.VOIDED:
            raise CardVoided(f"Card {serial_number} is already voided.")
        now = utcnow()
        p.tx.execute(_VOID, {"card_id": p.card.id, "status": CardStatus.VOIDED,
                             **changes.bump_params(now)})
        changes.announce_card(p.tx, p.card.id, now)
        p.record("card.void", details={"reason": reason})
        p.emit(webhooks.CARD_VOIDED, {"card": {"serial_number": serial_number,
                                               "balance": p.card.balance},
                                      "reason": reason, "voided_at": now.isoformat()})
    log.info("card %s voided by %s: %s", serial_number, actor, reason)
    return ledger.get_card(serial_number)
