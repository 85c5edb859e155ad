"""The "Add to Google Wallet" link of a card."""

from __future__ import annotations

from app.loyalty.models import Card


def save_url(card: Card) -> str | None:
    """The card's Google Wallet save link, or ``None`` while Google Wallet is not configured."""
    from app.wallet.google.setup import google_wallet

    wallet = google_wallet()
    if wallet is None:
        return None
    if wallet.sync_enabled:
        from app.wallet.google.sync import object_synced

        # The link is shown only once Google has the object it references.
        if not object_synced(card):
            return None
    return wallet.save_url(card)
