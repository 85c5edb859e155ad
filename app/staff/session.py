"""Who is signed in on the staff pages: a staff member with a PIN on an enrolled till device,
or (on a device that is not enrolled) a staff key.

The session (Flask's signed cookie) holds ids and the time of sign-in, never a key or PIN. A
member's session also needs the device's own cookie (``pp_till``: the device id and a random
secret whose hash is stored, see :mod:`app.staff.devices`). Member, device and key are looked
up on every request, so deactivating a member, revoking the device or the key, or taking the
member off the device's location signs the session out at once. A session also ends after
``STAFF_SESSION_SECONDS`` (one long shift by default).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import Response, current_app, request, session

from app import access
from app.auth import keys
from app.auth.keys import Principal
from app.auth.models import Role
from app.extensions import db
from app.staff import devices, members
from app.staff.actor import TillActor
from app.staff.models import StaffMember, TillDevice

STAFF_ROLES = frozenset({Role.STAFF, Role.ADMIN})
SESSION_KEY_ID = "staff_key_id"
SESSION_MEMBER_ID = "staff_member_id"
SESSION_DEVICE_ID = "staff_device_id"
SESSION_SINCE = "staff_since"
DEVICE_COOKIE = "pp_till"
DEVICE_COOKIE_MAX_AGE = 400 * 24 * 3600  # browsers cap cookies at 400 days
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


def sign_in_member(member: StaffMember, device: TillDevice) -> None:
    """Start a fresh session for a staff member who typed their PIN on ``device``."""
    session.clear()
    session[SESSION_MEMBER_ID] = member.id
    session[SESSION_DEVICE_ID] = device.id
    session[SESSION_SINCE] = int(time.time())


def sign_out() -> None:
    """End the session (the device stays enrolled: its cookie is not the session's)."""
    session.clear()


def forget_key() -> None:
    """Drop who signed in from the session (kept: the rest, such as the CSRF token)."""
    for name in (SESSION_KEY_ID, SESSION_MEMBER_ID, SESSION_DEVICE_ID):
        session.pop(name, None)


def this_device() -> TillDevice | None:
    """The enrolled, unrevoked till device this browser is, from its device cookie."""
    return devices.authenticate(request.cookies.get(DEVICE_COOKIE))


def remember_device(response: Response, cookie: str) -> None:
    """Give the browser its long-lived device cookie (secure when the site is https)."""
    secure = urlsplit(current_app.config["BASE_URL"]).scheme == "https"
    response.set_cookie(DEVICE_COOKIE, cookie, max_age=DEVICE_COOKIE_MAX_AGE, httponly=True,
                        samesite="Lax", secure=secure, path="/staff")


def signed_in() -> TillActor | None:
    """Who acts at the till for this session: a member (on this device, still allowed at its
    location) or a still-active staff key; None when nobody is, or the session is too old."""
    since = session.get(SESSION_SINCE)
    if not isinstance(since, int | float) or time.time() - since > _session_seconds():
        return None
    member_id, device_id = session.get(SESSION_MEMBER_ID), session.get(SESSION_DEVICE_ID)
    if isinstance(member_id, int) and isinstance(device_id, int):
        return _member_actor(member_id, device_id)
    principal = signed_in_staff()
    return TillActor.from_key(principal) if principal is not None else None


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
    # The key's programs bind its till session as they bind its API requests.
    access.limit_to(access.Scope(principal.program_ids))
    return principal


def _member_actor(member_id: int, device_id: int) -> TillActor | None:
    device = this_device()
    if device is None or device.id != device_id:
        return None
    member = db.session.get(StaffMember, member_id)
    if member is None or not members.may_work_at(member, device.location_id):
        return None
    return TillActor(kind="staff", id=member.id, name=member.name, device_id=device.id,
                     location_id=device.location_id, program_id=device.location.program_id,
                     language=member.language)


def _session_seconds() -> int:
    return int(current_app.config.get("STAFF_SESSION_SECONDS", DEFAULT_SESSION_SECONDS))
