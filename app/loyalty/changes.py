"""What happens to a card whenever something its passes show changes.

Every change (a ledger entry, a tier change, a reward or design change, a message, voiding)
goes through :func:`bump` or :func:`touch_cards` in the same transaction as the change itself,
so a pass's version, update time and Last-Modified can never lag behind what it shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, update
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db
from app.loyalty.models import Card
from app.timeutil import utcnow


def bump(now: datetime) -> dict[str, Any]:
    """Column values for an ``UPDATE cards`` that records a change made at ``now``."""
    seconds = int(now.timestamp())
    # Last-Modified has one-second resolution; two versions in one second still must differ.
    next_modified = case(
        (Card.last_modified + 1 > seconds, Card.last_modified + 1), else_=seconds
    )
    return {"version": Card.version + 1, "updated_at": now, "last_modified": next_modified}


def touch_cards(where: ColumnElement[bool]) -> int:
    """Record a change on every card matching ``where`` (not committed). Returns the count."""
    result = db.session.execute(
        update(Card).where(where).values(**bump(utcnow()))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
