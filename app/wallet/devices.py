"""Which wallets hold a card: the Apple devices registered for its updates, and whether its
Google Wallet object is saved.

Apple Wallet registers a device when the pass is added and unregisters it when the pass is
removed (the PassKit web service keeps the registration then, marked ``removed_at``): the
registrations listed are the devices that have the pass installed now and those it was removed
from. Google tells us through its callbacks when a
holder saves the object or deletes it; ``saved_changed_at`` is when the last of those came.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.loyalty.models import Card
from app.wallet.apple.models import Device, Registration
from app.wallet.google.models import GoogleObjectState


@dataclass(frozen=True)
class AppleDevice:
    """A device the card's pass was installed on since ``registered_at``; ``removed_at`` is when
    it was removed from it (None while installed)."""

    device_id: int
    registered_at: datetime
    removed_at: datetime | None = None

    @property
    def installed(self) -> bool:
        return self.removed_at is None


class GoogleStatus(enum.StrEnum):
    NOT_CREATED = "not-created"  # no object on Google yet
    NOT_SAVED = "not-saved"  # the object exists; nobody has saved it
    SAVED = "saved"
    DELETED = "deleted"  # saved, then deleted from Google Wallet


@dataclass(frozen=True)
class GoogleObject:
    status: GoogleStatus
    changed_at: datetime | None  # when it was last saved or deleted
    synced_at: datetime | None


@dataclass(frozen=True)
class CardDevices:
    apple: list[AppleDevice]
    google: GoogleObject


def of_card(card: Card) -> CardDevices:
    """The card's Apple devices (installed ones first, each part oldest registration first)
    and its Google object's state."""
    apple = [AppleDevice(device_id, at, removed) for device_id, at, removed in db.session.execute(
        select(Registration.device_id, Registration.created_at, Registration.removed_at)
        .join(Device, Device.id == Registration.device_id)
        .where(Registration.card_id == card.id)
        .order_by(Registration.removed_at.is_not(None), Registration.created_at,
                  Registration.id))]
    state = db.session.get(GoogleObjectState, card.id)
    if state is None:
        google = GoogleObject(GoogleStatus.NOT_CREATED, None, None)
    elif state.saved:
        google = GoogleObject(GoogleStatus.SAVED, state.saved_changed_at, state.synced_at)
    elif state.saved_changed_at is not None:
        google = GoogleObject(GoogleStatus.DELETED, state.saved_changed_at, state.synced_at)
    else:
        google = GoogleObject(GoogleStatus.NOT_SAVED, None, state.synced_at)
    return CardDevices(apple, google)
