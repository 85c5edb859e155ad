"""Which devices hold which cards' passes: the rules behind Apple's web service."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.sql.dml import Update

from app import timeutil
from app.extensions import db
from app.loyalty import changes
from app.loyalty.models import Card
from app.timeutil import utcnow
from app.wallet.apple.models import Device, Registration
from app.wallet.events import Platform, WalletEventKind
from app.wallet.events import record as record_event

log = logging.getLogger("pointpass.apple.webservice")


def register(library_identifier: str, card: Card, push_token: str) -> bool:
    """Register a device for a card's pushes and commit; ``True`` if the registration is new.

    Registering again gives the device's current push token: it is stored, with its time, so a
    later 410 carrying an older timestamp does not remove the device.
    """
    now = utcnow()
    # When the pass was installed: the app's clock (tests move it), as for ledger entries.
    installed_at = timeutil.now()
    device = db.session.scalar(select(Device).where(
        Device.library_identifier == library_identifier))
    if device is None:
        device = Device(library_identifier=library_identifier, push_token=push_token,
                        registered_at=now)
        db.session.add(device)
    else:
        device.push_token = push_token
        device.registered_at = now
    db.session.flush()
    registration = db.session.scalar(select(Registration).where(
        Registration.device_id == device.id, Registration.card_id == card.id))
    if registration is None:
        db.session.add(Registration(device_id=device.id, card_id=card.id,
                                    created_at=installed_at))
        created = True
    else:
        # A pass removed from the device and added again is a new registration to Apple
        # (201), installed since now.
        created = registration.removed_at is not None
        if created:
            registration.removed_at = None
            registration.created_at = installed_at
    if created:
        record_event([card.id], Platform.APPLE, WalletEventKind.INSTALLED, device_id=device.id,
                     at=installed_at)
    try:
        db.session.commit()
    except IntegrityError:  # the same device registered the same pass concurrently
        db.session.rollback()
        return False
    return created


def unregister(library_identifier: str, card: Card) -> None:
    """Stop pushes for the card on the device: its registration is kept, marked removed (the
    member's page lists it so). Commits."""
    device_id = db.session.scalar(select(Device.id).where(
        Device.library_identifier == library_identifier))
    if device_id is not None:
        removed_at = timeutil.now()
        removed = db.session.execute(update(Registration).where(
            Registration.device_id == device_id, Registration.card_id == card.id,
            Registration.installed()).values(removed_at=removed_at)).rowcount
        if removed:
            record_event([card.id], Platform.APPLE, WalletEventKind.REMOVED,
                         device_id=device_id, at=removed_at)
    db.session.commit()


def updated_serials(library_identifier: str, since: int | None) -> tuple[list[str], int]:
    """Serials of the device's cards changed since tag ``since`` (all without one), and the
    tag to hand out next. Records the tag as the device's ``listed_through`` and commits."""
    tag = changes.horizon()
    serials = list(db.session.scalars(CHANGED_SERIALS, {"device": library_identifier,
                                                        "since": since or 0}))
    # The record is a write of its own, after the read: SQLite refuses to turn a read into a
    # write once another writer has committed. The answer does not depend on it, so a
    # database too busy to take it loses only the record (a drain may push the device again).
    db.session.rollback()
    try:
        db.session.execute(listed(tag), {"device": library_identifier})
        db.session.commit()
    except OperationalError:
        db.session.rollback()
        log.info("a device's list of changed serials was not recorded (database busy)",
                 exc_info=True)
    return serials, tag


def listed(tag: Any) -> Update:
    """Record that the device (bind parameter ``device``) asked for its changed serials at
    ``tag`` (a value or an expression): ``Device.listed_through`` never goes back."""
    return (update(Device)
            .where(Device.library_identifier == bindparam("device"),
                   or_(Device.listed_through.is_(None), Device.listed_through < tag))
            .values(listed_through=tag))


# The serials of a device's cards changed since tag ``since`` (stamps are never negative, so
# 0 is "all"), as the fast path asks too (app.wallet.apple.fastpath). "+ 0": no index on the
# stamp for this. Right after a change of every card, the planner (on statistics from before
# it) would walk that index over every changed card for each device; a device's few cards,
# through its registrations, are cheap.
CHANGED_SERIALS = (
    select(Card.serial_number)
    .join(Registration, Registration.card_id == Card.id)
    .join(Device, Device.id == Registration.device_id)
    .where(Device.library_identifier == bindparam("device"), Registration.installed(),
           Card.change_stamp + 0 >= bindparam("since"))
    .order_by(Card.serial_number)
)
