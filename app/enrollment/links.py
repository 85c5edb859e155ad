"""The member's card page link: unguessable, so it can be bookmarked with no login."""

from __future__ import annotations

import enum
import hashlib
import hmac

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from app import audit
from app.accounts import mail
from app.accounts.mail import Sent
from app.auth.security import tokens_match
from app.extensions import db
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


class LinkSent(enum.StrEnum):
    """What became of a card link: sent by e-mail, or to be shown to copy (``no-email``: the
    member gave no address; ``not-configured``: e-mail is not set up; ``failed``: the mail
    server refused or could not be reached)."""

    SENT = "sent"
    NO_EMAIL = "no-email"
    NOT_CONFIGURED = "not-configured"
    FAILED = "failed"


def send_card_link(card: Card) -> LinkSent:
    """Send the member the link to their card page, in their language, when e-mail is set
    up and they gave an address. Recorded in the audit trail as ``card.resend-link`` (with
    the outcome, never the link), and committed."""
    member = card.member
    if not member.email:
        result = LinkSent.NO_EMAIL
    elif not mail.configured():
        result = LinkSent.NOT_CONFIGURED
    else:
        with force_locale(member.language):
            subject = _("Your %(program)s card", program=card.program.name)
            body = _("Hello %(name)s,\n\nyour %(program)s card is here:\n%(link)s\n\nKeep "
                     "this link to yourself: anyone with it can see your card.",
                     name=member.name, program=card.program.name, link=card_page_url(card))
        sent = mail.send(member.email, subject, body, purpose="card-link")
        result = LinkSent.SENT if sent is Sent.SENT else LinkSent.FAILED
    audit.record("card.resend-link", program_id=card.program_id,
                 target=f"card:{card.serial_number}", details={"result": result.value})
    db.session.commit()
    return result
