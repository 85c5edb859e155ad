"""Staff sign-in by session: the staff pages remember which key signed in, never the key.

The session (Flask's signed cookie) holds the key's id and the time of sign-in. The key is
looked up on every request, so revoking it, or demoting it below staff, signs its sessions out
at once; a session also ends after ``STAFF_SESSION_SECONDS`` (one long shift by default).
"""

from __future__ import annotations

import time

from flask import current_app, session

from app.auth import keys
from app.auth.keys import Principal
from app.auth.models import Role

STAFF_ROLES = frozenset({Role.STAFF, Role.ADMIN})
SESSION_KEY_ID = "staff_key_id"
SESSION_SINCE = "staff_since"
# A lost or shared phone stays signed in for one long shift at most.
DEFAULT_SESSION_SECONDS = 12 * 3600


def is_staff(principal: Principal) -> bool:
    """Whether the key may use the staff pages (staff and admin keys may)."""
    return principal.role in STAFF_ROLES


def sign_in(principal: Principal) -> None:
    """Start a fresh session for this staff key: nothing from before sign-in carries over
    (so the CSRF token, kept in the session, is a new one too)."""
    session.clear()
    session[SESSION_KEY_ID] = principal.id
    session[SESSION_SINCE] = int(time.time())


def sign_out() -> None:
    """End the session, and with it the signed-in key."""
    session.clear()


def forget_key() -> None:
    """Drop the signed-in key id from the session (kept: the rest, such as the CSRF token)."""
    session.pop(SESSION_KEY_ID, None)


def signed_in_staff() -> Principal | None:
    """The staff (or admin) key this session signed in with, if it is still active."""
    key_id = session.get(SESSION_KEY_ID)
    since = session.get(SESSION_SINCE)
    if not isinstance(key_id, int) or not isinstance(since, int | float):
        return None
    if time.time() - since > _session_seconds():
        return None
    principal = keys.principal_by_id(key_id)
    if principal is None or not is_staff(principal):
        return None
    return principal


def _session_seconds() -> int:
    return int(current_app.config.get("STAFF_SESSION_SECONDS", DEFAULT_SESSION_SECONDS))
