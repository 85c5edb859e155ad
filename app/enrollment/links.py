"""The member's card page link: unguessable, so it can be bookmarked with no login."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app

from app.auth.security import tokens_match
from app.loyalty.models import Card

# Kept apart from the Apple pass token ("apple-pass:"), so one link never unlocks the other.
_PURPOSE = "card-page:"
TOKEN_LENGTH = 32  # hex characters: 128 bits


def card_page_token(serial_number: str) -> str:
    """The secret part of a card page URL: an HMAC of the serial with the secret key."""
    key = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(key, f"{_PURPOSE}{serial_number}".encode(), hashlib.sha256)
    return digest.hexdigest()[:TOKEN_LENGTH]


def card_page_path(serial_number: str) -> str:
    """The card page's path, for redirects that stay on the host the visitor used."""
    return f"/card/{serial_number}/{card_page_token(serial_number)}"


def card_page_url(card: Card) -> str:
    """The absolute URL of the card's page, under the public ``BASE_URL``."""
    return current_app.config["BASE_URL"] + card_page_path(card.serial_number)


def token_matches(serial_number: str, token: str) -> bool:
    """Whether ``token`` is the card page token of ``serial_number``, in constant time."""
    return tokens_match(token, card_page_token(serial_number))
