"""PINs: 4 to 8 digits, stored as a salted scrypt hash and compared in constant time.

A PIN has at most 10^8 values, so the hash must be slow to try: scrypt with a 128 MiB-second
cost per guess makes an offline search of a stolen database costly, and the five-wrong-PINs
lock (app.staff.members) stops the online one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from app.config import is_test_suite

PIN_PATTERN = re.compile(r"[0-9]{4,8}")
# scrypt's cost: N=2^14, r=8, p=1 takes about 50 ms and 16 MiB per check on a server core.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_SCHEME = "scrypt"


def is_valid_pin(pin: str) -> bool:
    """Whether ``pin`` is 4 to 8 ASCII digits."""
    return PIN_PATTERN.fullmatch(pin) is not None


def _cost() -> int:
    """scrypt's N for new hashes: 2^14, or 2^4 for the test suite only (``POINTPASS_ENV=testing``,
    never a deployment: it also allows development secrets), whose tests sign staff in
    hundreds of times. A check uses the N stored with the hash."""
    if is_test_suite():
        return 2**4
    return _N


def hash_pin(pin: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of ``pin`` with a new random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    n = _cost()
    digest = _scrypt(pin, salt, n, _R, _P)
    return "$".join([_SCHEME, str(n), str(_R), str(_P), _b64(salt), _b64(digest)])


def check_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` matches ``stored`` (a :func:`hash_pin` value); constant-time compare."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(pin, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024,
                          dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
