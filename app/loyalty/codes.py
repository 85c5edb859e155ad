"""The codes a card shows: the signed code in its QR code, and the short code under it."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.loyalty.models import Card
from passes.barcode import make_code
from passes.shortcode import ShortCode, make_short_code, verified_version

# A handle names one card almost always; a few more are read in case serials share it.
_MAX_CANDIDATES = 4
# Verified when no card has the handle, so that an unknown card and a wrong check take the
# same time (not a serial: it never verifies).
_NO_CARD = "NO-CARD"


def redemption_code(card: Card) -> str:
    """The signed code for the card's current code version (``PP1:<serial>:<v>:<mac>``)."""
    return make_code(current_app.config["REDEMPTION_CODE_KEY"], card.serial_number,
                     card.barcode_version)


def short_code(card: Card) -> str:
    """The code a person types for the card's current code version (``K7QM-4XZ9-H3PA``):
    shown under the QR code on the passes and the card page, rotating with it."""
    return make_short_code(current_app.config["REDEMPTION_CODE_KEY"], card.serial_number,
                           card.barcode_version)


def find_short_code(code: ShortCode) -> tuple[str, int] | None:
    """``(serial, version)`` of the card ``code`` was made for, and the code version it was
    made for (older than the card's current one if the code has rotated since); ``None``
    when no card's check verifies. One indexed query, and a MAC per card found (at least
    one), whether or not a card has the code's handle."""
    key = current_app.config["REDEMPTION_CODE_KEY"]
    low, high = code.serial_range()
    query = select(Card.serial_number, Card.barcode_version).where(Card.serial_number >= low)
    if high is not None:
        query = query.where(Card.serial_number < high)
    candidates = db.session.execute(query.limit(_MAX_CANDIDATES)).all() or [(_NO_CARD, 0)]
    found = None
    for serial, current in candidates:
        version = verified_version(key, code, serial, current)
        if version is not None and found is None:
            found = (serial, version)
    return found
