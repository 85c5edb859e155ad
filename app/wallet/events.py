"""Wallet events: a card's pass added to or removed from a wallet, as they happened.

The registrations (Apple) and the object states (Google) say what is installed now; these
rows keep the history the analytics count installs and removals from. An Apple event is one
device's (``device_id``); a Google event is the object's (saved or deleted by its holder).
Each event is also a ``card.installed`` or ``card.removed`` webhook (with its platform).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ForeignKey, Index, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from app import timeutil
from app.extensions import db, stored_enum
from app.loyalty.models import Card
from app.timeutil import UTCDateTime, utcnow
from app.webhooks import emit as webhooks


class Platform(enum.StrEnum):
    APPLE = "apple"
    GOOGLE = "google"


class WalletEventKind(enum.StrEnum):
    INSTALLED = "installed"
    REMOVED = "removed"


class WalletEvent(db.Model):
    __tablename__ = "wallet_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"))
    platform: Mapped[Platform] = mapped_column(stored_enum(Platform, "wallet_platform"))
    kind: Mapped[WalletEventKind] = mapped_column(
        stored_enum(WalletEventKind, "wallet_event_kind"))
    device_id: Mapped[int | None]  # Apple: the device (no foreign key: devices may go)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_wallet_events_program_id_at", "program_id", "at"),
                      Index("ix_wallet_events_card_id", "card_id"))


def record(card_ids: Iterable[int], platform: Platform, kind: WalletEventKind, *,
           device_id: int | None = None, at: datetime | None = None) -> None:
    """Add the events of ``card_ids`` to the session's transaction (not committed), at
    ``at`` or the app's clock (:func:`app.timeutil.now`, which tests move)."""
    ids = list(card_ids)
    if not ids:
        return
    when = at or timeutil.now()
    cards = {row.id: row for row in db.session.execute(
        select(Card.id, Card.program_id, Card.serial_number).where(Card.id.in_(ids)))}
    db.session.execute(insert(WalletEvent), [
        {"program_id": cards[card_id].program_id, "card_id": card_id, "platform": platform,
         "kind": kind, "device_id": device_id, "at": when}
        for card_id in ids if card_id in cards])
    # ``card.installed`` / ``card.removed`` webhooks, in the same transaction.
    event_type = webhooks.CARD_INSTALLED if kind is WalletEventKind.INSTALLED \
        else webhooks.CARD_REMOVED
    for card_id in ids:
        if card_id in cards:
            webhooks.emit(cards[card_id].program_id, event_type, {
                "card": {"serial_number": cards[card_id].serial_number},
                "platform": str(platform), "device_id": device_id, "at": when.isoformat()},
                card_serial=cards[card_id].serial_number)
