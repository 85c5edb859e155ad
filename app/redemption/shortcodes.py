"""Typed short codes at the till, and the lock-out that keeps guessing them from paying.

A short code (:mod:`passes.shortcode`) is short enough to guess at, so every lookup that
finds no card counts as a failure of the acting key or staff member
(:attr:`TillActor.actor`) and of the device (:attr:`TillActor.device_id`, when one is
enrolled). :data:`MAX_FAILURES` failures within :data:`WINDOW_SECONDS` lock that actor or
device out of typed short codes for :data:`LOCK_SECONDS` (429 with ``Retry-After``); while
locked, even a right short code is refused. Scanned QR codes are not affected.

A failed lookup answers the same whatever failed (no card has the handle, or one has and
its check does not verify), after the same work: one indexed query and at least one MAC.
"""

from __future__ import annotations

from collections.abc import Iterator

from app.errors import InvalidCode
from app.lockout import LockedOut, Lockout
from app.loyalty.codes import find_short_code
from app.staff.actor import TillActor
from passes.shortcode import read_short_code

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60
LOCK_SECONDS = 15 * 60

LOCKOUT = Lockout("short-code", max_failures=MAX_FAILURES, window_seconds=WINDOW_SECONDS,
                  lock_seconds=LOCK_SECONDS)

NOT_VALID = "No card has this code. Check the code and type it again."


def _subjects(staff: TillActor) -> Iterator[str]:
    yield f"actor:{staff.actor}"
    if staff.device_id is not None:
        yield f"device:{staff.device_id}"


def _locked(retry_after: int) -> LockedOut:
    minutes = max(1, -(-retry_after // 60))
    return LockedOut(
        f"Too many wrong card codes were typed here. Typed codes are refused for "
        f"{minutes} min (until Retry-After has passed); scanning the QR code still works.",
        code="short-code-locked", headers={"Retry-After": str(retry_after)})


def read(text: str, staff: TillActor) -> tuple[str, int]:
    """``(serial, code version)`` of the card a typed short code names; the version is older
    than the card's current one if the code has rotated since.

    Raises ``LockedOut`` (429 ``short-code-locked``) while the actor or device is locked out,
    and on the failure that locks it; ``InvalidCode`` (422) when no card's code matches.
    """
    subjects = list(_subjects(staff))
    wait = LOCKOUT.retry_after(subjects)
    if wait is not None:
        raise _locked(wait)
    found = find_short_code(read_short_code(text))
    if found is None:
        wait = LOCKOUT.fail(subjects)
        if wait is not None:
            raise _locked(wait)
        raise InvalidCode(NOT_VALID)
    return found
