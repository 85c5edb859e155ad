"""What a push can come to: outcomes, results, errors, and reading APNs' answers.

The bottom of the APNs package: it imports nothing from the rest of it, and everything
else imports from here.
"""

from __future__ import annotations

import enum
import json
import ssl
from dataclasses import dataclass

APNS_URL = "https://api.push.apple.com"
#: Wallet's pushes carry no alert: the body is an empty JSON dictionary.
PAYLOAD = b"{}"
#: The 400 reasons that mean "this token is no good" rather than "this request is wrong".
BAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})


class Outcome(enum.StrEnum):
    """What became of one push."""

    DELIVERED = "delivered"
    #: 410: the device no longer wants pushes for this pass type; stop using the token.
    UNREGISTERED = "unregistered"
    #: 400 BadDeviceToken / DeviceTokenNotForTopic, or a token that is not hex at all.
    BAD_TOKEN = "bad_token"  # noqa: S105 - an outcome name, not a password
    #: 429, 5xx or connection failures, still failing after every retry.
    RETRY_EXHAUSTED = "retry_exhausted"
    #: Any other error (other 4xx, a TLS refusal): retrying would not help.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PushResult:
    """The result of pushing to one token.

    ``status`` is the last HTTP status (``None`` if no response came back), ``reason`` APNs'
    error reason or a description of the connection error, ``timestamp_ms`` the time APNs says
    the token stopped being valid (410 only), ``attempts`` how many times the push was tried.
    """

    token: str
    outcome: Outcome
    status: int | None
    reason: str | None
    timestamp_ms: int | None
    attempts: int


class APNsCredentialsError(ValueError):
    """The client certificate or key could not be loaded (the message never holds a secret)."""


class APNsClientClosed(RuntimeError):
    """The client was closed before (or while) pushing."""


class FatalConnectionError(ConnectionError):
    """A connection failure that retrying cannot fix (wrong certificate, no HTTP/2)."""


def parse_error(body: bytes) -> tuple[str | None, int | None]:
    """APNs' error body: ``{"reason": "...", "timestamp": ms}`` (timestamp only on 410).

    Returns ``(reason, timestamp_ms)``, each ``None`` when missing or malformed.
    """
    if not body:
        return None, None
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    reason = document.get("reason")
    timestamp = document.get("timestamp")
    return (
        reason if isinstance(reason, str) else None,
        timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
    )


def describe(exc: BaseException) -> str:
    """A short description of a connection error, with no payloads or secrets in it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{type(exc).__name__}: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{type(exc).__name__}: {exc.reason}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def is_fatal(exc: BaseException) -> bool:
    """Whether the same request would meet this error again: certificates, no HTTP/2."""
    if isinstance(exc, FatalConnectionError | ssl.SSLCertVerificationError):
        return True
    # The server refused our certificate (TLS alerts such as UNKNOWN_CA or
    # CERTIFICATE_REQUIRED); EOFs and resets are transient and stay retryable.
    return isinstance(exc, ssl.SSLError) and "ALERT" in str(exc.reason or "").upper()
