"""Staff members: adding and changing them, who may work where, and checking a PIN.

Five wrong PINs in a row lock the member for 15 minutes. The count and the lock are in the
member's row, changed under its row lock, so every instance of the service agrees and two
guesses at once cannot both slip under the limit. Time comes from :func:`app.timeutil.now`,
so tests can move it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, select, true

from app import access, audit
from app.errors import NotFound, Unprocessable
from app.extensions import db
from app.loyalty.models import ProgramLocation
from app.staff import pins
from app.staff.models import StaffMember, staff_member_locations
from app.timeutil import now
from passes.languages import LANGUAGES

MAX_PIN_ATTEMPTS = 5
LOCK_MINUTES = 15
NAME_LENGTH = 120


@dataclass(frozen=True)
class PinCheck:
    """The outcome of a PIN: ``ok``; else the attempts left before the lock, or the lock."""

    ok: bool
    attempts_left: int
    locked_until: datetime | None = None


def create(name: str, pin: str, location_ids: Iterable[int], *,
           language: str = "en") -> StaffMember:
    """Add a staff member who may work at ``location_ids``. Recorded in the audit trail
    (``staff.create``, never the PIN). Commits. ``Unprocessable`` (422) for a blank name, a PIN
    that is not 4 to 8 digits, an unknown location (one outside the caller's programs too, see
    :mod:`app.access`) or language."""
    member = StaffMember(name=_checked_name(name), pin_hash=_hashed(pin),
                         language=_checked_language(language),
                         locations=_locations(location_ids))
    db.session.add(member)
    db.session.flush()
    _record("staff.create", member, _programs_of(member.locations), {
        "name": member.name, "language": member.language,
        "location_ids": [loc.id for loc in member.locations]})
    db.session.commit()
    return member


def update(member_id: int, *, name: str | None = None, pin: str | None = None,
           location_ids: Iterable[int] | None = None, active: bool | None = None,
           language: str | None = None, unlock: bool = False,
           program_id: int | None = None) -> StaffMember:
    """Change what is given; ``unlock`` lifts a PIN lock and forgets wrong PINs. Commits.
    Deactivating a member signs their sessions out on their next request.

    The member must work at one of the caller's programs (else ``NotFound``). ``location_ids``
    replaces the member's locations at the caller's programs (only at ``program_id``, when
    given); their locations at other programs stay. Recorded in the audit trail:
    ``staff.update`` (the fields changed, their new values), ``staff.pin`` (never the PIN)
    and ``staff.unlock``.
    """
    member = get(member_id)
    before = _programs_of(member.locations)
    changed: dict[str, Any] = {}
    if name is not None and _checked_name(name) != member.name:
        member.name = changed["name"] = _checked_name(name)
    if pin is not None:
        member.pin_hash = _hashed(pin)
    if location_ids is not None:
        mine = [loc for loc in member.locations if _replaceable(loc, program_id)]
        kept = [loc for loc in member.locations if loc not in mine]
        wanted = _locations(location_ids, program_id=program_id, allow_empty=bool(kept))
        if [loc.id for loc in mine] != [loc.id for loc in wanted]:
            member.locations = sorted([*kept, *wanted], key=lambda loc: loc.id)
            changed["location_ids"] = [loc.id for loc in member.locations]
    if language is not None and _checked_language(language) != member.language:
        member.language = changed["language"] = language
    if active is not None and active != member.active:
        member.active = changed["active"] = active
    was_locked = locked_until(member) is not None or member.failed_pin_attempts > 0
    if unlock or pin is not None:
        member.failed_pin_attempts = 0
        member.locked_until = None
    programs = before | _programs_of(member.locations)
    if changed:
        _record("staff.update", member, programs, changed)
    if pin is not None:
        _record("staff.pin", member, programs, None)
    if unlock and was_locked:
        _record("staff.unlock", member, programs, None)
    db.session.commit()
    return member


def unlock(member_id: int) -> StaffMember:
    """Lift the member's PIN lock and forget their wrong PINs (see :func:`update`)."""
    return update(member_id, unlock=True)


def in_reach(program_id: int | None = None) -> Sequence[StaffMember]:
    """The staff members who work at a location of the caller's programs (of ``program_id``
    only, when given) and at none outside them, deactivated ones too, by name."""
    scope = access.current()
    where = [scope.where(ProgramLocation.program_id)]
    if program_id is not None:
        where.append(ProgramLocation.program_id == program_id)
    ids = select(staff_member_locations.c.staff_member_id).join(
        ProgramLocation, ProgramLocation.id == staff_member_locations.c.location_id).where(*where)
    query = select(StaffMember).where(StaffMember.id.in_(ids))
    if scope.program_ids is not None:
        elsewhere = select(staff_member_locations.c.staff_member_id).join(
            ProgramLocation, ProgramLocation.id == staff_member_locations.c.location_id).where(
            ~scope.where(ProgramLocation.program_id))
        query = query.where(StaffMember.id.not_in(elsewhere))
    return db.session.scalars(query.order_by(StaffMember.name, StaffMember.id)).all()


def get(member_id: int) -> StaffMember:
    """The staff member with this id; ``NotFound`` (404) when there is none or they may work
    at a location of a program outside the caller's reach (:mod:`app.access`), alike."""
    member = db.session.get(StaffMember, member_id)
    scope = access.current()
    if member is None or not all(scope.allows(loc.program_id) for loc in member.locations):
        raise NotFound(f"No staff member with id {member_id}.")
    return member


def _reachable() -> ColumnElement[bool]:
    """Staff members whose every location is in a program the caller reaches: one who also
    works for another program is that program's too, so a caller limited to some programs
    neither sees nor changes them."""
    scope = access.current()
    if scope.program_ids is None:
        return true()
    return ~exists().where(
        staff_member_locations.c.staff_member_id == StaffMember.id,
        ProgramLocation.id == staff_member_locations.c.location_id,
        ~scope.where(ProgramLocation.program_id))


def get_or_none(member_id: int) -> StaffMember | None:
    return db.session.get(StaffMember, member_id)


def all_members() -> Sequence[StaffMember]:
    """Every staff member the caller reaches (see :func:`get`), deactivated ones too, by id."""
    return db.session.scalars(
        select(StaffMember).where(_reachable()).order_by(StaffMember.id)).all()


def at_location(location_id: int) -> Sequence[StaffMember]:
    """The active members who may work at ``location_id``, by name."""
    return db.session.scalars(
        select(StaffMember).join(staff_member_locations).where(
            staff_member_locations.c.location_id == location_id, StaffMember.active)
        .order_by(StaffMember.name, StaffMember.id)).all()


def may_work_at(member: StaffMember, location_id: int) -> bool:
    return member.active and any(loc.id == location_id for loc in member.locations)


def locked_until(member: StaffMember) -> datetime | None:
    """When the member's PIN lock ends, or None when they are not locked."""
    if member.locked_until is not None and member.locked_until > now():
        return member.locked_until
    return None


def check_pin(member_id: int, pin: str) -> PinCheck:
    """Check a PIN typed for ``member_id``, counting wrong ones. Commits.

    While locked no PIN is checked (the right one neither): the answer is the lock.
    """
    # Locked and read afresh (populate_existing): the count another instance just wrote
    # counts, even when this session loaded the member before.
    member = db.session.scalar(
        select(StaffMember).where(StaffMember.id == member_id).with_for_update()
        .execution_options(populate_existing=True))
    if member is None:
        raise NotFound(f"No staff member with id {member_id}.")
    current = now()
    if member.locked_until is not None:
        if member.locked_until > current:
            db.session.rollback()
            return PinCheck(False, 0, member.locked_until)
        member.locked_until = None
        member.failed_pin_attempts = 0
    if pins.is_valid_pin(pin) and pins.check_pin(pin, member.pin_hash):
        member.failed_pin_attempts = 0
        db.session.commit()
        return PinCheck(True, MAX_PIN_ATTEMPTS)
    member.failed_pin_attempts += 1
    if member.failed_pin_attempts >= MAX_PIN_ATTEMPTS:
        member.failed_pin_attempts = 0
        member.locked_until = current + timedelta(minutes=LOCK_MINUTES)
        until = member.locked_until
        db.session.commit()
        return PinCheck(False, 0, until)
    left = MAX_PIN_ATTEMPTS - member.failed_pin_attempts
    db.session.commit()
    return PinCheck(False, left)


def as_dict(member: StaffMember) -> dict[str, Any]:
    """What the API and CLI show of a member (never the PIN or its hash)."""
    return {"id": member.id, "name": member.name, "language": member.language,
            "active": member.active, "location_ids": [loc.id for loc in member.locations],
            "failed_pin_attempts": member.failed_pin_attempts,
            "locked_until": locked_until(member), "created_at": member.created_at}


def _checked_name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > NAME_LENGTH:
        raise Unprocessable("The name must be 1 to 120 characters.", errors=[
            {"location": "json", "field": "name", "message": "1 to 120 characters."}])
    return name


def _hashed(pin: str) -> str:
    if not pins.is_valid_pin(pin):
        raise Unprocessable("The PIN must be 4 to 8 digits.", errors=[
            {"location": "json", "field": "pin", "message": "4 to 8 digits."}])
    return pins.hash_pin(pin)


def _checked_language(language: str) -> str:
    if language not in LANGUAGES:
        raise Unprocessable(f"Unknown language {language!r}.", errors=[
            {"location": "json", "field": "language",
             "message": f"One of {', '.join(LANGUAGES)}."}])
    return language


def _replaceable(location: ProgramLocation, program_id: int | None) -> bool:
    """Whether an update's ``location_ids`` replaces this location of the member's."""
    if program_id is not None and location.program_id != program_id:
        return False
    return access.current().allows(location.program_id)


def _locations(location_ids: Iterable[int], *, program_id: int | None = None,
               allow_empty: bool = False) -> list[ProgramLocation]:
    """The locations, each of the caller's programs (and of ``program_id``, when given):
    others are unknown (422), as ones that do not exist."""
    wanted = sorted(set(location_ids))
    if not wanted and not allow_empty:
        raise Unprocessable("Give at least one location.", errors=[
            {"location": "json", "field": "location_ids", "message": "At least one."}])
    query = select(ProgramLocation).where(ProgramLocation.id.in_(wanted),
                                          access.current().where(ProgramLocation.program_id))
    if program_id is not None:
        query = query.where(ProgramLocation.program_id == program_id)
    found = db.session.scalars(query).all()
    missing = sorted(set(wanted) - {loc.id for loc in found})
    if missing:
        raise Unprocessable(f"No location with id {missing[0]}.", errors=[
            {"location": "json", "field": "location_ids", "message": "Unknown location."}])
    return sorted(found, key=lambda loc: loc.id)


def _programs_of(locations: Iterable[ProgramLocation]) -> set[int]:
    return {loc.program_id for loc in locations}


def _record(action: str, member: StaffMember, program_ids: set[int],
            details: dict[str, Any] | None) -> None:
    """One record per program the member works at: each program's trail shows the change."""
    for program_id in sorted(program_ids):
        audit.record(action, program_id=program_id, target=f"staff:{member.id}",
                     details=details)
