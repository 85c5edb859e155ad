"""Creating and checking API keys. Keys are shown once; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from app.auth.models import ApiKey, Role
from app.extensions import db

KEY_PREFIX = "pp_"


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


def authenticate(plaintext: str) -> ApiKey | None:
    """The active key matching ``plaintext``, or ``None``."""
    if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 100:
        return None
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == _hash(plaintext)))
    if key is None or key.revoked:
        return None
    return key
