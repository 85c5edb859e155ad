"""Short codes: the card code a person reads under the QR code and types at the till.

A short code is 12 symbols, shown in groups of four (``K7QM-4XZ9-H3PA``). It packs 60 bits:

- 35 bits of the card's serial number (its first nine hex digits, less the last bit): a
  *handle* that finds the card (or, rarely, two or three cards) by a range of the serial's
  unique index. The whole serial (80 bits, 16 symbols) would make the code too long to type;
  no stored column is needed instead, because the rest of the serial is checked by the MAC.
- 5 bits of the card's code version (the version modulo 32): the code rotates with the QR.
- 20 bits of an HMAC-SHA256 over the *whole* serial and the *whole* version, with the
  redemption code key. A wrong symbol, another card's serial or another version fails it.

The alphabet has 32 symbols and none that reads as another one: no ``0``/``O`` and no
``1``/``I`` (neither member of either pair is in it). ``L`` stays: with no ``1`` or ``I`` in
the alphabet a handwritten ``l`` can only be ``L``. ``U`` stays too (Crockford's base 32 leaves
it out only to avoid accidental words); ``U`` and ``V`` differ in every print font. So do
``2``/``Z``, ``5``/``S`` and ``8``/``B``: leaving them out too would take the alphabet below 32.

Reading ignores case and the separators people type or see (spaces, dashes, dots).

Twenty bits of MAC is little against someone who can try codes without limit: the service
that accepts short codes must count failed lookups and lock the caller out after a few (a
random guess names an issued serial's handle and passes the MAC with odds of roughly
``cards / 2**55``; someone who knows a card's handle still needs about half a million tries).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from passes.barcode import InvalidCode

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 12
GROUP = 4
HANDLE_BITS = 35
VERSION_BITS = 5
MAC_BITS = 20
VERSIONS = 1 << VERSION_BITS  # a short code tells versions apart modulo this
# The hex digits of the serial the handle is read from (36 bits; the last one is dropped).
HANDLE_HEX_DIGITS = 9

_SEPARATORS = " \t\r\n.-"
_SYMBOL = "2-9A-HJ-NP-Za-hj-np-z"
_SERIAL = re.compile(rf"[0-9A-F]{{{HANDLE_HEX_DIGITS},40}}")
_VALUE = {symbol: index for index, symbol in enumerate(ALPHABET)}

# The text of a short code as it may be sent, as a regular expression JSON Schema (ECMA 262)
# and Python read alike: 12 symbols in either case, with spaces, dashes or dots anywhere.
SHORT_CODE_TEXT_PATTERN = rf"^[ \t\r\n.-]*(?:[{_SYMBOL}][ \t\r\n.-]*){{{LENGTH}}}$"

assert len(ALPHABET) == 1 << 5 and (HANDLE_BITS + VERSION_BITS + MAC_BITS) == 5 * LENGTH


@dataclass(frozen=True)
class ShortCode:
    """What a well-formed short code says; :func:`verified_version` checks it against a card."""

    handle: int
    version_bits: int
    mac: int

    def serial_range(self) -> tuple[str, str | None]:
        """The serials that have this handle: ``low <= serial < high`` (``high`` is ``None``
        for the last handle). Serials are upper-case hex, so text order is number order."""
        low = self.handle << 1
        high = low + 2
        top = 16**HANDLE_HEX_DIGITS
        return (f"{low:0{HANDLE_HEX_DIGITS}X}",
                f"{high:0{HANDLE_HEX_DIGITS}X}" if high < top else None)


def handle_of(serial: str) -> int:
    """The 35-bit handle of an issued serial (upper-case hex, at least nine digits)."""
    if not isinstance(serial, str) or not _SERIAL.fullmatch(serial):
        raise ValueError(f"a short code needs a serial of {HANDLE_HEX_DIGITS}-40 hex digits")
    return int(serial[:HANDLE_HEX_DIGITS], 16) >> 1


def _mac(key: bytes, serial: str, version: int) -> int:
    digest = hmac.new(key, f"PPS:{serial}:{version}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - MAC_BITS)


def make_short_code(key: bytes, serial: str, version: int) -> str:
    """The short code of version ``version`` of card ``serial``, grouped (``K7QM-4XZ9-H3PA``)."""
    if version < 0:
        raise ValueError("version must not be negative")
    value = handle_of(serial)
    value = (value << VERSION_BITS) | (version % VERSIONS)
    value = (value << MAC_BITS) | _mac(key, serial, version)
    symbols = "".join(ALPHABET[(value >> (5 * (LENGTH - 1 - i))) & 31] for i in range(LENGTH))
    return "-".join(symbols[i:i + GROUP] for i in range(0, LENGTH, GROUP))


def normalize(text: str) -> str | None:
    """The 12 symbols of ``text`` in upper case without separators, or ``None`` when ``text``
    is not shaped like a short code (wrong length, or a character outside the alphabet)."""
    if not isinstance(text, str) or len(text) > 200:
        return None
    symbols = text.translate({ord(c): None for c in _SEPARATORS}).upper()
    if len(symbols) != LENGTH or any(s not in _VALUE for s in symbols):
        return None
    return symbols


def looks_like_short_code(text: str) -> bool:
    """Whether ``text`` has a short code's shape (nothing is verified)."""
    return normalize(text) is not None


def read_short_code(text: str) -> ShortCode:
    """The parts of a short code; :class:`InvalidCode` when ``text`` is not shaped like one.

    Nothing is verified yet: that needs the card's serial and version
    (:func:`verified_version`).
    """
    symbols = normalize(text)
    if symbols is None:
        raise InvalidCode("not a Pointpass short code")
    value = 0
    for symbol in symbols:
        value = (value << 5) | _VALUE[symbol]
    mac = value & ((1 << MAC_BITS) - 1)
    value >>= MAC_BITS
    return ShortCode(handle=value >> VERSION_BITS, version_bits=value & (VERSIONS - 1), mac=mac)


def verified_version(key: bytes, code: ShortCode, serial: str, current_version: int) -> int | None:
    """The code version of card ``serial`` that ``code`` was made for, or ``None``.

    That is the newest version up to ``current_version`` with the code's version bits (at
    most 31 versions old), if the code's MAC verifies for it: the current version when the
    code is current, an older one when the card's code has rotated since (the caller answers
    "already used"). ``None`` for another card, a wrong symbol, a code more than 31 versions
    old, or a serial outside the code's handle. Always computes one MAC, so a caller that
    verifies every card found (or a stand-in when none is) takes the same time either way.
    """
    version = current_version - ((current_version - code.version_bits) % VERSIONS)
    candidate = _mac(key, serial, max(version, 0))
    try:
        right_card = handle_of(serial) == code.handle
    except ValueError:
        right_card = False
    if hmac.compare_digest(candidate.to_bytes(3, "big"), code.mac.to_bytes(3, "big")) \
            and right_card and version >= 0:
        return version
    return None
