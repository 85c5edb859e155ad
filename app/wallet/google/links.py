"""The "Add to Google Wallet" link of a card."""

from __future__ import annotations

from app.loyalty.models import Card
from app.wallet.google.setup import google_wallet
from app.wallet.google.sync import object_synced


def save_url(card: Card) -> str | None:
    """The card's Google Wallet save link, or ``None`` for an erased member's card, while
    Google Wallet is not configured or, when it syncs, until the outbox has created the
    card's object on Google."""
    wallet = google_wallet()
    if wallet is None or card.erased_at is not None:  # an erased member's card: none
        return None
    # The link is shown only once Google has the object it references.
    if wallet.sync_enabled and not object_synced(card):
        return None
    return wallet.save_url(card)
