"""Redemption codes: what a card's QR code says.

A code is ``PP1:<serial>:<version>:<mac>``: the card's serial number, the code version (base 36)
and a truncated HMAC-SHA256 over both, in base 32. It carries no personal data, is well under
100 characters, and uses only characters of the QR alphanumeric mode (digits, A-Z, ``:``), so
the symbol stays small enough to scan from a phone screen. A forged or altered code fails
verification with the key alone, before any database is asked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

PREFIX = "PP1"
MAC_BYTES = 15  # 120 bits; base 32 without padding: 24 characters
_CODE = re.compile(r"PP1:([0-9A-Z]{1,40}):([0-9A-Z]{1,7}):([A-Z2-7]{24})")
MAX_VERSION = 36**7 - 1


class InvalidCode(ValueError):
    """The text is not a redemption code, or its signature does not verify."""


def derive_key(secret: str | bytes, purpose: str = "redemption-code") -> bytes:
    """A key for redemption codes derived from a service secret, separate from its other uses."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, f"pointpass:{purpose}".encode(), hashlib.sha256).digest()


def _base36(n: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _mac(key: bytes, serial: str, version: int) -> str:
    digest = hmac.new(key, f"{PREFIX}:{serial}:{version}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:MAC_BYTES]).decode()


def make_code(key: bytes, serial: str, version: int) -> str:
    """The redemption code for version ``version`` of card ``serial`` (uppercase alphanumeric)."""
    if not re.fullmatch(r"[0-9A-Z]{1,40}", serial):
        raise ValueError("serial must be 1-40 characters of 0-9 and A-Z")
    if not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version must be between 0 and {MAX_VERSION}")
    return f"{PREFIX}:{serial}:{_base36(version)}:{_mac(key, serial, version)}"


def read_code(key: bytes, code: str) -> tuple[str, int]:
    """Return ``(serial, version)`` from a genuine code; raise :class:`InvalidCode` otherwise."""
    match = _CODE.fullmatch(code.strip().upper()) if isinstance(code, str) else None
    if match is None:
        raise InvalidCode("not a Pointpass redemption code")
    serial, version_text, mac = match.groups()
    version = int(version_text, 36)
    if not hmac.compare_digest(mac, _mac(key, serial, version)):
        raise InvalidCode("the code's signature does not verify")
    return serial, version


# Rotating codes (Google Wallet's rotating barcode): ``PPT:<serial>:<TOTP value>``, where
# Google's app computes the value from a per-card key (RFC 6238, HMAC-SHA1) every period.

ROTATING_PREFIX = "PPT"
TOTP_DIGITS = 8
TOTP_PERIOD_SECONDS = 30
_ROTATING = re.compile(r"PPT:([0-9A-Z]{1,40}):([0-9]{8})")

# The text of either kind of code as it may be sent (read in any case, with spaces or line
# ends around it), as a regular expression that JSON Schema (ECMA 262) and Python read alike:
# an API document states it, so clients and fuzzers know what is a code before asking.
CODE_TEXT_PATTERN = (r"^[ \t\r\n]*(?:[Pp][Pp]1:[0-9A-Za-z]{1,40}:[0-9A-Za-z]{1,7}:[A-Za-z2-7]{24}"
                     r"|[Pp][Pp][Tt]:[0-9A-Za-z]{1,40}:[0-9]{8})[ \t\r\n]*$")


def totp_key(key: bytes, serial: str) -> bytes:
    """The card's TOTP secret, derived from the service key: no database needed to check it."""
    return hmac.new(key, f"{ROTATING_PREFIX}:{serial}".encode(), hashlib.sha256).digest()[:20]


def totp_value(secret: bytes, counter: int, digits: int = TOTP_DIGITS) -> str:
    """The RFC 4226 HOTP value for ``counter`` (RFC 6238 TOTP when counter = time // period)."""
    digest = hmac.new(secret, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = int.from_bytes(digest[offset:offset + 4], "big") & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def rotating_pattern(serial: str) -> str:
    """Google's ``valuePattern``: it substitutes ``{totp_value_0}`` on the phone."""
    return f"{ROTATING_PREFIX}:{serial}:{{totp_value_0}}"


def is_rotating(code: str) -> bool:
    return isinstance(code, str) and code.strip().upper().startswith(f"{ROTATING_PREFIX}:")


def read_rotating_code(key: bytes, code: str, now: float, window: int = 1) -> tuple[str, int]:
    """``(serial, counter)`` of a rotating code valid within ``window`` periods of ``now``.

    Raises :class:`InvalidCode` for a malformed code or a value no nearby period produces.
    """
    match = _ROTATING.fullmatch(code.strip().upper()) if isinstance(code, str) else None
    if match is None:
        raise InvalidCode("not a Pointpass rotating code")
    serial, value = match.groups()
    secret = totp_key(key, serial)
    current = int(now // TOTP_PERIOD_SECONDS)
    for counter in range(current - window, current + window + 1):
        if hmac.compare_digest(value, totp_value(secret, counter)):
            return serial, counter
    raise InvalidCode("the rotating code is wrong or too old")
