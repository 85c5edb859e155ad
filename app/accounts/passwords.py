"""Password hashes: argon2id (``argon2-cffi``'s RFC 9106 low-memory profile: 64 MiB, three
passes), with a hash made on old parameters redone at the next good sign-in."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
MAX_LENGTH = 256

_hasher = PasswordHasher()  # argon2id with argon2-cffi's current recommended parameters
# Checked when no account has the e-mail given, so that answer takes as long as a wrong
# password's and does not tell which addresses have accounts.
_DECOY = _hasher.hash("decoy password, never anyone's")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (None: no password set yet, or no account)."""
    try:
        return _hasher.verify(stored or _DECOY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


def problem_with(password: str) -> str | None:
    """Why ``password`` cannot be used, or None. Length is what counts (NIST SP 800-63B):
    no rules about character classes."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if not password.strip():
        return "A password cannot be only spaces."
    return None
