"""Password hashes: argon2id (``argon2-cffi``'s RFC 9106 low-memory profile: 64 MiB, three
passes), with a hash made on old parameters redone at the next good sign-in."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.config import is_test_suite

MIN_LENGTH = 10
MAX_LENGTH = 256

#: argon2id with argon2-cffi's current recommended parameters: every hash stored.
_STRONG = PasswordHasher()
#: The same scheme at its least cost, for the test suite only (``POINTPASS_ENV=testing``,
#: never a deployment: it also allows development secrets): the tests make and check
#: hundreds of passwords, each a third of a second with the strong parameters. A hash made
#: with one is redone with the other at the next good sign-in (:func:`needs_rehash`).
_TESTING = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
# Checked when no account has the e-mail given, so that answer takes as long as a wrong
# password's and does not tell which addresses have accounts. Made at the first such check,
# not at import: every process imports this (the CLI, workers), few check passwords.
_DECOYS: dict[int, str] = {}


def _hasher() -> PasswordHasher:
    if is_test_suite():
        return _TESTING
    return _STRONG


def _decoy(hasher: PasswordHasher) -> str:
    if id(hasher) not in _DECOYS:
        _DECOYS[id(hasher)] = hasher.hash("decoy password, never anyone's")
    return _DECOYS[id(hasher)]


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def check(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (None: no password set yet, or no account)."""
    hasher = _hasher()
    try:
        return hasher.verify(stored or _decoy(hasher), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher().check_needs_rehash(stored)


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
