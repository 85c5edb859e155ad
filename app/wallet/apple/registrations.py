"""Which devices hold which cards' passes: the rules behind Apple's web service."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.loyalty import changes
from app.loyalty.models import Card
from app.timeutil import utcnow
from app.wallet.apple.models import Device, Registration


def register(library_identifier: str, card: Card, push_token: str) -> bool:
    """Register a device for a card's pushes and commit; ``True`` if the registration is new.

    Registering again gives the device's current push token: it is stored, with its time, so a
    later 410 carrying an older timestamp does not remove the device.
    """
    now = utcnow()
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
    exists = db.session.scalar(select(Registration.id).where(
        Registration.device_id == device.id, Registration.card_id == card.id))
    if exists is None:
        db.session.add(Registration(device_id=device.id, card_id=card.id))
    try:
        db.session.commit()
    except IntegrityError:  # the same device registered the same pass concurrently
        db.session.rollback()
        return False
    return exists is None


def unregister(library_identifier: str, card: Card) -> None:
    """Stop pushes for the card on the device (and forget a device left with none). Commits."""
    device_id = db.session.scalar(select(Device.id).where(
        Device.library_identifier == library_identifier))
    if device_id is not None:
        db.session.execute(delete(Registration).where(
            Registration.device_id == device_id, Registration.card_id == card.id))
        if db.session.scalar(select(Registration.id).where(
                Registration.device_id == device_id).limit(1)) is None:
            db.session.execute(delete(Device).where(Device.id == device_id))
    db.session.commit()


def updated_serials(library_identifier: str, since: int | None) -> tuple[list[str], int]:
    """Serials of the device's cards changed since tag ``since`` (all without one), and the
    tag to hand out next."""
    tag = changes.horizon()
    query = (
        select(Card.serial_number)
        .join(Registration, Registration.card_id == Card.id)
        .join(Device, Device.id == Registration.device_id)
        .where(Device.library_identifier == library_identifier)
        .order_by(Card.serial_number)
    )
    if since is not None:
        query = query.where(Card.change_stamp >= since)
    return list(db.session.scalars(query)), tag
