"""The redemption code a card shows in its QR code, on every wallet and page."""

from __future__ import annotations

from flask import current_app

from app.loyalty.models import Card
from passes.barcode import make_code


def redemption_code(card: Card) -> str:
    """The signed code for the card's current code version (``PP1:<serial>:<v>:<mac>``)."""
    return make_code(current_app.config["REDEMPTION_CODE_KEY"], card.serial_number,
                     card.barcode_version)
