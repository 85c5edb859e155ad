"""Who is signed in to the console.

Flask's signed session cookie holds the account's id, the account's session version at
sign-in, and the times of sign-in and of the last request: never a password. The account is
read on every request, so deactivating it, changing its password or "sign out everywhere"
(both bump ``session_version``) end its sessions at the next click. A session ends after
``CONSOLE_IDLE_SECONDS`` without a request (30 minutes by default) and, however busy,
``CONSOLE_SESSION_SECONDS`` after sign-in (12 hours).
"""

from __future__ import annotations

from flask import current_app, g, session

from app.accounts.models import Account
from app.extensions import db
from app.timeutil import now as clock

SESSION_ACCOUNT = "console_account"
SESSION_VERSION = "console_version"
SESSION_SINCE = "console_since"
SESSION_SEEN = "console_seen"
DEFAULT_IDLE_SECONDS = 30 * 60
DEFAULT_SESSION_SECONDS = 12 * 3600
# The last-request time is rewritten (a new cookie) at most this often, not on every request.
SEEN_RESOLUTION_SECONDS = 30
_CHECKED = "console_signed_in"  # this request's answer of signed_in(), on flask.g


def sign_in(account: Account) -> None:
    """Start a fresh session: nothing from before sign-in carries over (a new CSRF token too,
    so a token planted before sign-in is worthless)."""
    g.pop(_CHECKED, None)
    session.clear()
    now = int(clock().timestamp())
    session[SESSION_ACCOUNT] = account.id
    session[SESSION_VERSION] = account.session_version
    session[SESSION_SINCE] = now
    session[SESSION_SEEN] = now


def sign_out() -> None:
    g.pop(_CHECKED, None)
    for name in (SESSION_ACCOUNT, SESSION_VERSION, SESSION_SINCE, SESSION_SEEN):
        session.pop(name, None)


def signed_in() -> Account | None:
    """The account of this session, if the session is still good; else None (and the session
    is ended). Checked once per request (the language selector and the page both ask)."""
    if _CHECKED not in g:
        g.setdefault(_CHECKED, _check())
    return g.get(_CHECKED)  # type: ignore[no-any-return]


def _check() -> Account | None:
    account_id, version = session.get(SESSION_ACCOUNT), session.get(SESSION_VERSION)
    since, seen = session.get(SESSION_SINCE), session.get(SESSION_SEEN)
    if not all(isinstance(v, int) for v in (account_id, version, since, seen)):
        return None
    now = int(clock().timestamp())
    config = current_app.config
    if now - seen > int(config.get("CONSOLE_IDLE_SECONDS", DEFAULT_IDLE_SECONDS)) or \
            now - since > int(config.get("CONSOLE_SESSION_SECONDS", DEFAULT_SESSION_SECONDS)):
        sign_out()
        return None
    account = db.session.get(Account, account_id)
    if account is None or not account.active or account.session_version != version:
        sign_out()
        return None
    if now - seen >= SEEN_RESOLUTION_SECONDS:
        session[SESSION_SEEN] = now
    return account
