"""What both wallets show of an open feedback invitation: "How was your visit?" and the link
to its one-question page, in every language of :data:`~passes.languages.LANGUAGES`.

The page belongs to the caller; this library only checks that the link is one a wallet opens
(an absolute ``https://`` URL, or ``http://`` for a development server) and words it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from passes.checks import ContentError
from passes.wording import N_

#: The field's label on the pass's back (and the link's text on Google Wallet).
FEEDBACK_LABEL = N_("How was your visit?")
#: What Wallet says on the lock screen when the link appears (``%@``: the link itself).
FEEDBACK_CHANGE = N_("How was your visit? Tell us in one tap: %@")

_MAX_URL = 2000


@dataclass(frozen=True)
class FeedbackLink:
    """An open invitation's page, ``url``; ``lock_screen``: Wallet announces it on the lock
    screen when it appears (the program asks for that)."""

    url: str
    lock_screen: bool = False

    def __post_init__(self) -> None:
        url = self.url
        if not isinstance(url, str) or not 0 < len(url) <= _MAX_URL:
            raise ContentError("feedback.url", f"must be a URL of at most {_MAX_URL} characters")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname or \
                any(c.isspace() or ord(c) < 32 for c in url):
            raise ContentError("feedback.url", "must be an absolute https:// (or http://) URL")
        if not isinstance(self.lock_screen, bool):
            raise ContentError("feedback.lock_screen", "must be True or False")
