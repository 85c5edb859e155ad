"""Visits: a member at a shop, as an ``earn`` of a purchase or a ``redeem``.

Features that react to a visit (the feedback invitation, challenges and their badges) register
a listener with :func:`on_visit`; the services that post a visit call :func:`visited` inside
the posting's transaction, after the visit's entries (and the redemption's row) are written
and before it commits. So whatever a listener writes commits with the visit, or not at all;
a retried request (an idempotent replay) is no new visit and calls nothing.

Listeners run on the hot path of every earn and redemption: each must decide from the locked
card (:class:`app.loyalty.ledger.LockedCard`: ``feedback_every_days``, ``has_challenges``)
whether it has anything to do before it asks the database anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from app.loyalty.models import EntryKind

if TYPE_CHECKING:
    from app.loyalty.ledger import PostingTransaction


@dataclass(frozen=True)
class Visit:
    """One visit: the entry that records it and where, by whom, for which reward."""

    entry_id: int
    kind: EntryKind  # EARN or REDEEM
    at: datetime
    location_id: int | None = None
    staff_member_id: int | None = None
    device_id: int | None = None
    reward_id: int | None = None  # a redemption's reward
    redemption_id: int | None = None


VisitListener = Callable[["PostingTransaction", Visit], None]
_listeners: list[VisitListener] = []


def on_visit(listener: VisitListener) -> VisitListener:
    """Register ``listener`` (once; usable as a decorator)."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def forget(listener: VisitListener) -> None:
    """Unregister ``listener`` (tests)."""
    if listener in _listeners:
        _listeners.remove(listener)


def visited(p: PostingTransaction, visit: Visit) -> None:
    """Tell every listener of ``visit``, in the posting's transaction ``p``."""
    for listener in _listeners:
        listener(p, visit)
