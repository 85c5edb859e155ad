"""Creating and checking API keys. Keys are shown once; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from app.auth.models import ApiKey, Role
from app.extensions import db

KEY_PREFIX = "pp_"
# Authenticated keys are remembered this long per process, sparing a query per request;
# revoking a key therefore takes effect within this many seconds everywhere.
CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's id, name and role."""

    id: int
    name: str
    role: Role


_cache: dict[str, tuple[Principal, float]] = {}
_cache_lock = threading.Lock()


def _hash(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def create(name: str, role: Role | str) -> tuple[ApiKey, str]:
    """Store a new key and return it with its plaintext, which is not kept anywhere."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=Role(role), prefix=plaintext[:10], key_hash=_hash(plaintext))
    db.session.add(key)
    db.session.commit()
    return key, plaintext


def revoke(key_id: int) -> None:
    key = db.session.get(ApiKey, key_id)
    if key is not None:
        key.revoked = True
        db.session.commit()
        with _cache_lock:
            for digest, (principal, _) in list(_cache.items()):
                if principal.id == key_id:
                    del _cache[digest]


def authenticate(plaintext: str) -> Principal | None:
    """The principal of the active key matching ``plaintext``, or ``None``."""
    if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 100:
        return None
    digest = _hash(plaintext)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(digest)
    if cached and cached[1] > now:
        return cached[0]
    row = db.session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.revoked).where(
            ApiKey.key_hash == digest
        )
    ).one_or_none()
    if row is None or row.revoked:
        return None
    principal = Principal(row.id, row.name, row.role)
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[digest] = (principal, now + CACHE_SECONDS)
    return principal


def principal_by_id(key_id: int) -> Principal | None:
    """The principal of active key ``key_id``, read now (not cached): for sessions, where a
    revoked key must stop working on the next request."""
    row = db.session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.revoked).where(ApiKey.id == key_id)
    ).one_or_none()
    if row is None or row.revoked:
        return None
    return Principal(row.id, row.name, row.role)
