"""Creating, checking, listing and revoking API keys. Keys are shown once; only their SHA-256
is stored."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, column, insert, or_, select, table, update
from sqlalchemy.exc import SQLAlchemyError

from app import audit
from app.auth.models import ApiKey, Role, api_key_programs
from app.errors import NotFound
from app.extensions import db
from app.timeutil import utcnow

KEY_PREFIX = "pp_"
# Authenticated keys are remembered this long per process, sparing a query per request;
# revoking a key therefore takes effect within this many seconds everywhere (at once in the
# process that revoked it).
CACHE_SECONDS = 10.0
# A key's last use is recorded to this resolution: it is written when the stored time is
# older, so a key in steady use costs one small write a minute, not one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)

log = logging.getLogger("pointpass.auth")


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's id, name and role, and the programs it reaches
    (``program_ids``; None: every program)."""

    id: int
    name: str
    role: Role
    program_ids: frozenset[int] | None = None


_cache: dict[str, tuple[Principal, float]] = {}
_cache_lock = threading.Lock()
# Bumped by every revocation: an authentication that read its key before a revocation does
# not put it (back) in the cache after the revocation emptied it.
_cache_generation = 0


def _hash(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


# The programs' ids, named without the loyalty models (keys know of programs only by id).
_PROGRAM_ID = table("programs", column("id")).c.id


def create(name: str, role: Role | str, program_ids: Iterable[int] = ()) -> tuple[ApiKey, str]:
    """Store a new key and return it with its plaintext, which is not kept anywhere.

    ``program_ids``: the programs the key may reach (none given: every program, also those
    made later). ``NotFound`` for an unknown program. The creation is recorded in the audit
    trail (never the key). Commits."""
    wanted = sorted(set(program_ids))
    found = set(db.session.scalars(select(_PROGRAM_ID).where(_PROGRAM_ID.in_(wanted))))
    missing = [program_id for program_id in wanted if program_id not in found]
    if missing:
        raise NotFound(f"No program with id {missing[0]}.")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=Role(role), prefix=plaintext[:10], key_hash=_hash(plaintext))
    db.session.add(key)
    db.session.flush()
    if wanted:
        db.session.execute(insert(api_key_programs),
                           [{"api_key_id": key.id, "program_id": p} for p in wanted])
    audit.record("key.create", target=f"api_key:{key.id}",
                 details={"name": key.name, "role": key.role.value, "prefix": key.prefix,
                          "program_ids": wanted or None})
    db.session.commit()
    return key, plaintext


def all_keys() -> Sequence[ApiKey]:
    """Every key, revoked ones included, by id."""
    return db.session.scalars(select(ApiKey).order_by(ApiKey.id)).all()


def programs_of(key_ids: Iterable[int]) -> dict[int, list[int]]:
    """The programs each of ``key_ids`` is limited to, by key id, in id order; a key that
    reaches every program is not in the answer."""
    wanted = sorted(set(key_ids))
    granted: dict[int, list[int]] = {}
    if not wanted:
        return granted
    rows = db.session.execute(
        select(api_key_programs.c.api_key_id, api_key_programs.c.program_id)
        .where(api_key_programs.c.api_key_id.in_(wanted))
        .order_by(api_key_programs.c.api_key_id, api_key_programs.c.program_id))
    for key_id, program_id in rows:
        granted.setdefault(key_id, []).append(program_id)
    return granted


def revoke(key_id: int) -> bool | None:
    """Revoke key ``key_id``: ``True`` if it was active, ``False`` if it was already revoked,
    ``None`` if there is no such key. Idempotent. This process stops accepting the key at
    once; other processes within ``CACHE_SECONDS``, when their cached entry expires."""
    global _cache_generation
    key = db.session.get(ApiKey, key_id)
    if key is None:
        return None
    was_active = not key.revoked
    if was_active:
        key.revoked = True
        audit.record("key.revoke", target=f"api_key:{key.id}",
                     details={"name": key.name, "role": key.role.value, "prefix": key.prefix})
        db.session.commit()
    with _cache_lock:
        _cache_generation += 1
        for digest, (principal, _) in list(_cache.items()):
            if principal.id == key_id:
                del _cache[digest]
    return was_active


def authenticate(plaintext: str) -> Principal | None:
    """The principal of the active key matching ``plaintext``, or ``None``."""
    if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 100:
        return None
    digest = _hash(plaintext)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(digest)
        generation = _cache_generation
    if cached and cached[1] > now:
        return cached[0]
    principal = _active_key(ApiKey.key_hash == digest)
    if principal is None:
        return None
    with _cache_lock:
        if generation == _cache_generation:
            if len(_cache) > 10_000:
                _cache.clear()
            _cache[digest] = (principal, now + CACHE_SECONDS)
    return principal


def principal_by_id(key_id: int) -> Principal | None:
    """The principal of active key ``key_id``, read now (not cached): for sessions, where a
    revoked key must stop working on the next request."""
    return _active_key(ApiKey.id == key_id)


def _active_key(which: ColumnElement[bool]) -> Principal | None:
    """The principal of the active key ``which`` selects, read now; its use is noted."""
    fresh = _session_is_clean()
    row = db.session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.revoked, ApiKey.last_used_at)
        .where(which)
    ).one_or_none()
    if row is None or row.revoked:
        return None
    granted = frozenset(db.session.scalars(
        select(api_key_programs.c.program_id).where(api_key_programs.c.api_key_id == row.id)))
    if fresh:
        _note_use(row)
    return Principal(row.id, row.name, row.role, granted or None)


def _session_is_clean() -> bool:
    """Whether the request's session has neither a transaction nor unsaved objects."""
    session = db.session()
    return not (session.in_transaction() or session.new or session.dirty or session.deleted)


def _note_use(row: Any) -> None:
    """Record that key ``row.id`` was used now, if its stored last use is older than
    ``LAST_USED_RESOLUTION``.

    Called only when the session held nothing before reading the key (authentication comes
    first in a request), and written in a transaction of its own: the read of
    the key is ended first, so the write never joins the request's work (a posting that
    rolls back keeps the key's last use) and, on SQLite, a reading request takes the write
    lock only for this statement. A failure is logged and skipped: recording a use must never
    refuse the request.
    """
    now = utcnow()
    if row.last_used_at is not None and now - row.last_used_at < LAST_USED_RESOLUTION:
        return
    session = db.session()
    try:
        session.rollback()  # ends the read of the key (nothing else happened in it)
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id,
                   # Another process may have just written it.
                   or_(ApiKey.last_used_at.is_(None),
                       ApiKey.last_used_at < now - LAST_USED_RESOLUTION))
            .values(last_used_at=now)
        )
        session.commit()
    except SQLAlchemyError as error:
        session.rollback()
        log.warning("last use of API key #%d not recorded: %s", row.id,
                    str(error).splitlines()[0] if str(error) else type(error).__name__)
