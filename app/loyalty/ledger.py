"""The points ledger: the only code that changes a card's balance.

Every posting locks the card row, checks the idempotency key, applies a guarded relative
``UPDATE`` (``balance = balance + :points WHERE balance + :points >= 0``) and appends its ledger
entry, all in one transaction. The ``balance >= 0`` CHECK constraint backs the guard, so no
interleaving of requests, on SQLite or PostgreSQL, can overdraw a card or credit a key twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from app.errors import (
    CardVoided,
    IdempotencyKeyReused,
    InsufficientPoints,
    NotFound,
    Unprocessable,
)
from app.extensions import db
from app.loyalty.models import Card, CardStatus, EntryKind, LedgerEntry, Program, Tier
from app.timeutil import utcnow

MAX_POINTS = 1_000_000_000  # per posting; far beyond any real purchase, far below int64
MAX_AMOUNT = 10**15  # minor units


@dataclass(frozen=True)
class Posting:
    """The outcome of a posting; ``replayed`` when an idempotency key returned an earlier one."""

    entry: LedgerEntry
    card: Card
    replayed: bool = False


def fingerprint(**request: Any) -> str:
    """A stable hash of what a request asked for, stored with its idempotency key."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def points_for_amount(program: Program, tier: Tier | None, amount: int) -> int:
    """Points earned for a purchase of ``amount`` minor units (rounded down), tier included."""
    multiplier = tier.multiplier_percent if tier else 100
    return amount * program.earn_points * multiplier // (program.earn_amount * 100)


def tier_for(tiers: list[Tier], lifetime_points: int) -> Tier | None:
    """The highest tier whose threshold ``lifetime_points`` has reached."""
    reached = [t for t in tiers if t.threshold <= lifetime_points]
    return max(reached, key=lambda t: t.threshold) if reached else None


def lock_card(serial_number: str) -> Card:
    """Load a card and lock its row until the transaction ends (SQLite: the write lock)."""
    card = db.session.scalar(
        select(Card)
        .where(Card.serial_number == serial_number)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if card is None:
        raise NotFound(f"No card with serial number {serial_number!r}.")
    return card


def earn(
    serial_number: str,
    *,
    actor: str,
    points: int | None = None,
    amount: int | None = None,
    currency: str | None = None,
    reference: str | None = None,
    idempotency_key: str | None = None,
) -> Posting:
    """Credit points, given directly or computed from a purchase amount, then commit."""
    request_fp = fingerprint(op="earn", points=points, amount=amount, currency=currency,
                             reference=reference)
    card = lock_card(serial_number)
    if (replay := _replay(card, idempotency_key, request_fp)) is not None:
        return replay
    if amount is not None:
        program = card.program
        if currency != program.currency:
            raise Unprocessable(
                f"This program earns in {program.currency}; the purchase is in {currency}.",
                errors=[{"location": "json", "field": "currency",
                         "message": f"Must be {program.currency}."}],
            )
        points = points_for_amount(program, card.tier, amount)
        if points <= 0:
            raise Unprocessable(
                f"A purchase of {amount} minor units earns no points at this program's rate.",
                errors=[{"location": "json", "field": "amount",
                         "message": "Too small to earn a point."}],
            )
    if points is None or points <= 0:
        raise Unprocessable("Earn needs a positive number of points or a purchase amount.")
    return _post(card, EntryKind.EARN, points, actor=actor, reference=reference,
                 idempotency_key=idempotency_key, request_fp=request_fp, amount=amount,
                 currency=currency)


def adjust(
    serial_number: str,
    *,
    points: int,
    reason: str,
    actor: str,
    idempotency_key: str | None = None,
) -> Posting:
    """Add or remove points by hand (signed), with a reason, then commit."""
    request_fp = fingerprint(op="adjust", points=points, reason=reason)
    card = lock_card(serial_number)
    if (replay := _replay(card, idempotency_key, request_fp)) is not None:
        return replay
    return _post(card, EntryKind.ADJUST, points, actor=actor, reason=reason,
                 idempotency_key=idempotency_key, request_fp=request_fp)


def _replay(card: Card, idempotency_key: str | None, request_fp: str) -> Posting | None:
    # Safe without a race: the card row is locked, and keys are unique per card.
    if not idempotency_key:
        return None
    entry = db.session.scalar(
        select(LedgerEntry).where(
            LedgerEntry.card_id == card.id, LedgerEntry.idempotency_key == idempotency_key
        )
    )
    if entry is None:
        return None
    db.session.rollback()  # release the lock; nothing was written
    if entry.request_fingerprint != request_fp:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request on this card."
        )
    return Posting(entry=entry, card=entry.card, replayed=True)


def _post(
    card: Card,
    kind: EntryKind,
    points: int,
    *,
    actor: str,
    reference: str | None = None,
    reason: str | None = None,
    idempotency_key: str | None = None,
    request_fp: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
) -> Posting:
    if card.status is CardStatus.VOIDED:
        db.session.rollback()
        raise CardVoided(f"Card {card.serial_number} is voided.")
    if points == 0 or abs(points) > MAX_POINTS:
        db.session.rollback()
        raise Unprocessable(f"Points must be non-zero and at most {MAX_POINTS} in size.")

    values: dict[str, Any] = {
        "balance": Card.balance + points,
        "version": Card.version + 1,
        "updated_at": utcnow(),
    }
    if kind is EntryKind.EARN:
        # The row is locked, so the stored lifetime is current: the new tier can be chosen here.
        lifetime = card.lifetime_points + points
        values["lifetime_points"] = Card.lifetime_points + points
        new_tier = tier_for(list(card.program.tiers), lifetime)
        values["tier_id"] = new_tier.id if new_tier else None

    row = db.session.execute(
        update(Card)
        .where(Card.id == card.id, Card.balance + points >= 0)
        .values(**values)
        .returning(Card.balance)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        balance = card.balance
        db.session.rollback()
        raise InsufficientPoints(
            f"Card {card.serial_number} has {balance} points; {-points} are needed.",
            balance=balance,
        )

    entry = LedgerEntry(
        card_id=card.id,
        kind=kind,
        points=points,
        balance_after=row.balance,
        actor=actor,
        reference=reference,
        reason=reason,
        idempotency_key=idempotency_key or None,
        request_fingerprint=request_fp if idempotency_key else None,
        amount=amount,
        currency=currency,
    )
    db.session.add(entry)
    db.session.commit()
    db.session.refresh(card)
    return Posting(entry=entry, card=card)


def recent_entries(card: Card, limit: int = 10) -> list[LedgerEntry]:
    """The card's latest ledger entries, newest first."""
    return list(
        db.session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.card_id == card.id)
            .order_by(LedgerEntry.id.desc())
            .limit(limit)
        )
    )


def get_card(serial_number: str) -> Card:
    card = db.session.scalar(select(Card).where(Card.serial_number == serial_number))
    if card is None:
        raise NotFound(f"No card with serial number {serial_number!r}.")
    return card
