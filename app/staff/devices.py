"""Till devices: enrolled once at a location with a one-time link, revoked at any time.

An admin makes an enrolment link (``pointpass enrol-device``, ``POST /api/v1/devices``); the
link's token is shown once and only its SHA-256 is stored. Opening the link on the phone and
confirming uses the token up, in one guarded UPDATE (so two taps cannot both enrol), and gives
the device a random secret for its cookie; again only its hash is stored. Tokens and secrets
carry 192 random bits, so a fast hash is enough. Revoking a device refuses its cookie from the
next request on, and with it every staff session on it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from app import access, audit
from app.errors import NotFound, Unprocessable
from app.extensions import db
from app.loyalty.models import ProgramLocation
from app.staff.models import TillDevice
from app.timeutil import now

ENROL_HOURS = 24
ENROL_PATH = "/staff/enrol/"


@dataclass(frozen=True)
class NewDevice:
    device: TillDevice
    enrol_url: str


def create(location_id: int, name: str | None = None) -> NewDevice:
    """A device-to-be at ``location_id`` and its one-time enrolment URL (shown only now).
    Recorded in the audit trail (``device.enrol``, never the link). Commits.
    ``Unprocessable`` (422) for an unknown location (or one outside the caller's programs)."""
    location = db.session.get(ProgramLocation, location_id)
    if location is None or not access.current().allows(location.program_id):
        raise Unprocessable(f"No location with id {location_id}.", errors=[
            {"location": "json", "field": "location_id", "message": "Unknown location."}])
    token = secrets.token_urlsafe(24)
    device = TillDevice(location_id=location_id, name=(name or "").strip() or None,
                        enrol_token_hash=_hash(token),
                        enrol_expires_at=now() + timedelta(hours=ENROL_HOURS))
    db.session.add(device)
    db.session.flush()
    audit.record("device.enrol", program_id=location.program_id, target=f"device:{device.id}",
                 details={"location_id": location_id, "name": device.name})
    db.session.commit()
    return NewDevice(device, enrol_url(token))


def enrol_url(token: str) -> str:
    return f"{current_app.config['BASE_URL']}{ENROL_PATH}{token}"


def pending(token: str) -> TillDevice | None:
    """The device this enrolment token is for, while the link is unused, unexpired and the
    device not revoked; else None."""
    device = db.session.scalar(select(TillDevice).where(
        TillDevice.enrol_token_hash == _hash(token)))
    if device is None or device.revoked_at is not None or device.enrolled_at is not None:
        return None
    return device if device.enrol_expires_at > now() else None


def enrol(token: str) -> tuple[TillDevice, str] | None:
    """Use the enrolment token up: the device and its new cookie value, or None when the link
    was used, expired or revoked. Commits."""
    secret = secrets.token_urlsafe(24)
    current = now()
    table = TillDevice.__table__
    result = db.session.execute(update(table).where(
        table.c.enrol_token_hash == _hash(token), table.c.enrolled_at.is_(None),
        table.c.revoked_at.is_(None), table.c.enrol_expires_at > current,
    ).values(enrol_token_hash=None, enrolled_at=current, secret_hash=_hash(secret))
        .returning(table.c.id))
    row = result.first()
    db.session.commit()
    if row is None:
        return None
    device = db.session.get(TillDevice, row[0])
    assert device is not None
    return device, f"{device.id}.{secret}"


def authenticate(cookie: str | None) -> TillDevice | None:
    """The enrolled, unrevoked device whose cookie this is, or None."""
    if not cookie or "." not in cookie:
        return None
    device_id, _, secret = cookie.partition(".")
    if not device_id.isdigit() or len(device_id) > 12:
        return None
    device = db.session.get(TillDevice, int(device_id))
    if device is None or device.revoked_at is not None or device.secret_hash is None:
        return None
    return device if hmac.compare_digest(device.secret_hash, _hash(secret)) else None


def revoke(device_id: int) -> bool:
    """Revoke the device: ``True`` if it was not revoked yet (recorded in the audit trail,
    ``device.revoke``). Idempotent. Commits. ``NotFound`` (404) when there is no such device
    (or it is at a location outside the caller's programs)."""
    device = get(device_id)
    if device.revoked_at is not None:
        return False
    device.revoked_at = now()
    device.enrol_token_hash = None
    audit.record("device.revoke", program_id=device.location.program_id,
                 target=f"device:{device.id}", details={"location_id": device.location_id})
    db.session.commit()
    return True


def get(device_id: int) -> TillDevice:
    """The device, if at a location of one of the caller's programs (:mod:`app.access`);
    else ``NotFound`` (404), as for one that does not exist."""
    device = db.session.get(TillDevice, device_id)
    if device is None or not access.current().allows(device.location.program_id):
        raise NotFound(f"No device with id {device_id}.")
    return device


def all_devices(*, program_id: int | None = None,
                location_id: int | None = None) -> Sequence[TillDevice]:
    """The devices at the caller's programs' locations (at ``program_id``'s, at
    ``location_id``, when given), by id."""
    query = select(TillDevice).join(ProgramLocation).where(
        access.current().where(ProgramLocation.program_id)).order_by(TillDevice.id)
    if program_id is not None:
        query = query.where(ProgramLocation.program_id == program_id)
    if location_id is not None:
        query = query.where(TillDevice.location_id == location_id)
    return db.session.scalars(query).all()


def status(device: TillDevice) -> str:
    """``revoked``, ``enrolled``, ``expired`` (the link, never used) or ``pending``."""
    if device.revoked_at is not None:
        return "revoked"
    if device.enrolled_at is not None:
        return "enrolled"
    return "expired" if device.enrol_expires_at <= now() else "pending"


def as_dict(device: TillDevice) -> dict[str, Any]:
    return {"id": device.id, "location_id": device.location_id, "name": device.name,
            "status": status(device), "expires_at": device.enrol_expires_at,
            "enrolled_at": device.enrolled_at, "revoked_at": device.revoked_at,
            "created_at": device.created_at}


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
