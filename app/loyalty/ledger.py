"""The points ledger: the only code that changes a card's balance.

A posting is one transaction: lock the card row (finding any earlier entry with the same
idempotency key in the same query), read the program's tiers, a guarded relative update
(``balance = balance + :points WHERE balance + :points >= 0``), the ledger insert, the outbox
row that tells the wallets, commit. The
``balance >= 0`` CHECK constraint backs the guard, so no interleaving of requests, on SQLite
or PostgreSQL, can overdraw a card.

Idempotency keys are unique per card. The key lookup in the locking query serves plain retries
cheaply, but on PostgreSQL (READ COMMITTED) that statement's snapshot predates the wait for the
lock, so it cannot see an entry committed by the request it waited for. The ledger insert is
therefore ``ON CONFLICT DO NOTHING``: a conflict means a concurrent request with the same key
won, and this transaction rolls back and answers with that request's entry. A check that
fails under the lock for the same reason (the winner spent the points or used the code) looks
the key up again with a new statement before refusing (:func:`committed_replay`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, bindparam, func, select, update

from app import dbutil
from app.errors import (
    CardVoided,
    IdempotencyKeyReused,
    InsufficientPoints,
    NotFound,
    Unprocessable,
)
from app.extensions import db
from app.loyalty import changes
from app.loyalty.models import Card, CardStatus, EntryKind, LedgerEntry, Program, Tier
from app.timeutil import utcnow

MAX_POINTS = 1_000_000_000  # per posting; far beyond any real purchase, far below int64
MAX_AMOUNT = 10**15  # minor units


@dataclass(frozen=True)
class Entry:
    """A ledger entry as the API shows it."""

    id: int
    kind: EntryKind
    points: int
    balance_after: int
    reference: str | None
    reason: str | None
    amount: int | None
    currency: str | None
    created_at: datetime


@dataclass(frozen=True)
class Posting:
    """The outcome of a posting; ``replayed`` when an idempotency key returned an earlier one."""

    serial_number: str
    balance: int
    lifetime_points: int
    tier: str | None
    entry: Entry
    replayed: bool = False


@dataclass(frozen=True)
class TierRule:
    id: int
    name: str
    threshold: int
    multiplier_percent: int


@dataclass(frozen=True)
class LockedCard:
    """A card's row as read under its lock, with what earning needs from its program."""

    id: int
    serial_number: str
    status: CardStatus
    balance: int
    lifetime_points: int
    tier_id: int | None
    program_id: int
    currency: str
    earn_points: int
    earn_amount: int
    barcode_version: int
    tier_name: str | None
    replay_entry_id: int | None
    tx: dbutil.Raw = field(repr=False, compare=False)  # the transaction holding the lock


def fingerprint(**request: Any) -> str:
    """A stable hash of what a request asked for, stored with its idempotency key."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def points_for_amount(earn_points: int, earn_amount: int, multiplier_percent: int,
                      amount: int) -> int:
    """Points earned for a purchase of ``amount`` minor units, rounded down."""
    return amount * earn_points * multiplier_percent // (earn_amount * 100)


def tier_for(tiers: list[Any], lifetime_points: int) -> Any:
    """The highest tier (``Tier`` or ``TierRule``) whose threshold ``lifetime_points`` reached."""
    reached = [t for t in tiers if t.threshold <= lifetime_points]
    return max(reached, key=lambda t: t.threshold) if reached else None


_TIER_RULES = dbutil.Prebuilt(lambda _dialect: select(
    Tier.id, Tier.name, Tier.threshold, Tier.multiplier_percent
).where(Tier.program_id == bindparam("program_id")))
_LOCK_COLUMNS = (Card.id, Card.serial_number, Card.status, Card.balance, Card.lifetime_points,
                 Card.tier_id, Card.program_id, Program.currency, Program.earn_points,
                 Program.earn_amount, Card.barcode_version, Tier.name)


def _lock_statement(with_key: bool) -> Any:
    """The locking read (with the idempotency key lookup when a key is given)."""
    columns: list[Any] = list(_LOCK_COLUMNS)
    if with_key:
        columns.append(
            select(LedgerEntry.id)
            .where(and_(LedgerEntry.card_id == Card.id,
                        LedgerEntry.idempotency_key == bindparam("key")))
            .scalar_subquery()
            .label("replay")
        )
    return (
        select(*columns)
        .join(Program, Program.id == Card.program_id)
        .outerjoin(Tier, Tier.id == Card.tier_id)
        .where(Card.serial_number == bindparam("serial"))
        .with_for_update(of=Card)
    )


# The statements of every posting, compiled once per database (postings are the hot path).
_LOCK = {with_key: dbutil.Prebuilt(lambda _dialect, with_key=with_key: _lock_statement(with_key))
         for with_key in (False, True)}


def _tier_rules(tx: dbutil.Raw, program_id: int) -> list[TierRule]:
    return [TierRule(*row) for row in tx.all(_TIER_RULES, {"program_id": program_id})]


def lock_card(serial_number: str, idempotency_key: str | None = None) -> LockedCard:
    """Lock a card's row until the transaction ends (SQLite: the database write lock).

    The same statement looks up an earlier entry with ``idempotency_key``: a plain retry is
    answered without writing (see the module docstring for the concurrent case).
    """
    tx = dbutil.begin()
    row = tx.first(_LOCK[bool(idempotency_key)], {"serial": serial_number, "key": idempotency_key})
    if row is None:
        tx.rollback()
        raise NotFound(f"No card with serial number {serial_number!r}.")
    return LockedCard(*row[:12], replay_entry_id=row[12] if idempotency_key else None, tx=tx)


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
    card = lock_card(serial_number, idempotency_key)
    if card.replay_entry_id is not None:
        return replay(card, request_fp)
    tiers = _tier_rules(card.tx, card.program_id)
    if amount is not None:
        if currency != card.currency:
            card.tx.rollback()
            raise Unprocessable(
                f"This program earns in {card.currency}; the purchase is in {currency}.",
                errors=[{"location": "json", "field": "currency",
                         "message": f"Must be {card.currency}."}],
            )
        tier = next((t for t in tiers if t.id == card.tier_id), None)
        points = points_for_amount(card.earn_points, card.earn_amount,
                                   tier.multiplier_percent if tier else 100, amount)
        if points <= 0:
            card.tx.rollback()
            raise Unprocessable(
                f"A purchase of {amount} minor units earns no points at this program's rate.",
                errors=[{"location": "json", "field": "amount",
                         "message": "Too small to earn a point."}],
            )
    if points is None or points <= 0:
        card.tx.rollback()
        raise Unprocessable("Earn needs a positive number of points or a purchase amount.")
    return post(card, EntryKind.EARN, points, actor=actor, tiers=tiers, reference=reference,
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
    card = lock_card(serial_number, idempotency_key)
    if card.replay_entry_id is not None:
        return replay(card, request_fp)
    return post(card, EntryKind.ADJUST, points, actor=actor, reason=reason,
                idempotency_key=idempotency_key, request_fp=request_fp)


def replay(card: LockedCard, request_fp: str) -> Posting:
    """The earlier posting made with the card's idempotency key (rolls back; see lock_card)."""
    row = card.tx.first(_ENTRY_BY_ID, {"id": card.replay_entry_id})
    card.tx.rollback()  # release the lock; nothing was written
    assert row is not None
    entry, fingerprint_of_first = Entry(*row[:9]), row[9]
    if fingerprint_of_first != request_fp:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request on this card."
        )
    return Posting(
        serial_number=card.serial_number,
        balance=entry.balance_after,
        lifetime_points=card.lifetime_points,
        tier=card.tier_name,
        entry=entry,
        replayed=True,
    )


_ENTRY_BY_ID = dbutil.Prebuilt(lambda _dialect: select(
    LedgerEntry.id, LedgerEntry.kind, LedgerEntry.points, LedgerEntry.balance_after,
    LedgerEntry.reference, LedgerEntry.reason, LedgerEntry.amount, LedgerEntry.currency,
    LedgerEntry.created_at, LedgerEntry.request_fingerprint,
).where(LedgerEntry.id == bindparam("id")))
_ENTRY_ID_FOR_KEY = dbutil.Prebuilt(lambda _dialect: select(LedgerEntry.id).where(
    LedgerEntry.card_id == bindparam("card_id"), LedgerEntry.idempotency_key == bindparam("key")))


def _posting_update(dialect: str) -> Any:
    """The guarded update of every posting.

    Parameters: ``card_id``, ``points`` (signed), ``lifetime_delta``, ``new_tier_id``,
    ``rotate`` (1 moves the card's code version on), ``totp_counter`` (or None) and
    :func:`changes.bump_params`.
    """
    cards = Card.__table__
    points = bindparam("points", type_=BigInteger)
    return (
        update(cards)
        .where(cards.c.id == bindparam("card_id"), cards.c.balance + points >= 0)
        .values(
            balance=cards.c.balance + points,
            lifetime_points=cards.c.lifetime_points
            + bindparam("lifetime_delta", type_=BigInteger),
            tier_id=bindparam("new_tier_id", type_=Integer),
            barcode_version=cards.c.barcode_version + bindparam("rotate", type_=Integer),
            totp_last_counter=func.coalesce(bindparam("totp_counter", type_=BigInteger),
                                            cards.c.totp_last_counter),
            **changes.bump_template(dialect),
        )
        .returning(cards.c.balance)
    )


def _entry_insert(dialect: str) -> Any:
    """The ledger insert; a concurrent request with the same key makes it insert nothing."""
    entries = LedgerEntry.__table__
    return (
        dbutil.INSERT[dialect](entries)
        .on_conflict_do_nothing(index_elements=["card_id", "idempotency_key"])
        .returning(entries.c.id)
    )


_ENTRY_COLUMNS = ["card_id", "kind", "points", "balance_after", "actor", "reference", "reason",
                  "idempotency_key", "request_fingerprint", "amount", "currency", "created_at"]
_UPDATE = dbutil.Prebuilt(_posting_update)
_INSERT_ENTRY = dbutil.Prebuilt(_entry_insert, _ENTRY_COLUMNS)


def post(
    card: LockedCard,
    kind: EntryKind,
    points: int,
    *,
    actor: str,
    tiers: list[TierRule] | None = None,
    reference: str | None = None,
    reason: str | None = None,
    idempotency_key: str | None = None,
    request_fp: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    rotate_code: bool = False,
    totp_counter: int | None = None,
    before_commit: Callable[[Entry], None] | None = None,
) -> Posting:
    """Apply ``points`` to a card locked with :func:`lock_card`, append the entry, commit.

    ``rotate_code`` moves the card's code version on in the same guarded update (and
    ``totp_counter`` records the rotating code value used); ``before_commit`` runs with the
    new entry inside the transaction (to record what the posting was for).
    """
    if card.status is CardStatus.VOIDED:
        card.tx.rollback()
        raise CardVoided(f"Card {card.serial_number} is voided.")
    if points == 0 or abs(points) > MAX_POINTS:
        card.tx.rollback()
        raise Unprocessable(f"Points must be non-zero and at most {MAX_POINTS} in size.")

    now = utcnow()
    lifetime = card.lifetime_points
    tier_id = card.tier_id
    tier_name = card.tier_name
    if kind is EntryKind.EARN:
        # The row is locked, so the stored lifetime is current: the new tier is chosen here.
        if tiers is None:
            tiers = _tier_rules(card.tx, card.program_id)
        lifetime += points
        new_tier = tier_for(tiers, lifetime)
        tier_id = new_tier.id if new_tier else None
        tier_name = new_tier.name if new_tier else None

    tx = card.tx
    updated = tx.first(_UPDATE, {
        "card_id": card.id, "points": points, "lifetime_delta": lifetime - card.lifetime_points,
        "new_tier_id": tier_id, "rotate": int(rotate_code), "totp_counter": totp_counter,
        **changes.bump_params(now),
    })
    if updated is None:
        if idempotency_key and (earlier := _entry_id_for_key(tx, card.id, idempotency_key)):
            return replay(replace(card, replay_entry_id=earlier), request_fp or "")
        tx.rollback()
        raise InsufficientPoints(
            f"Card {card.serial_number} has {card.balance} points; {-points} are needed.",
            balance=card.balance,
        )

    (balance,) = updated
    inserted = tx.first(_INSERT_ENTRY, {
        "card_id": card.id,
        "kind": kind,
        "points": points,
        "balance_after": balance,
        "actor": actor,
        "reference": reference,
        "reason": reason,
        "idempotency_key": idempotency_key or None,
        "request_fingerprint": request_fp if idempotency_key else None,
        "amount": amount,
        "currency": currency,
        "created_at": now,
    })
    if inserted is None:  # a concurrent request with the same key committed first
        earlier = _entry_id_for_key(tx, card.id, idempotency_key or "")
        return replay(replace(card, replay_entry_id=earlier), request_fp or "")
    entry = Entry(inserted[0], kind, points, balance, reference, reason, amount, currency, now)
    if before_commit is not None:
        before_commit(entry)
    changes.announce_card(tx, card.id, now)
    tx.commit()
    return Posting(
        serial_number=card.serial_number,
        balance=balance,
        lifetime_points=lifetime,
        tier=tier_name,
        entry=entry,
    )


def _entry_id_for_key(tx: dbutil.Raw, card_id: int, idempotency_key: str) -> int | None:
    row = tx.first(_ENTRY_ID_FOR_KEY, {"card_id": card_id, "key": idempotency_key})
    return None if row is None else int(row[0])


def committed_replay(card: LockedCard, idempotency_key: str, request_fp: str) -> Posting | None:
    """The posting made with ``idempotency_key`` on the locked card, looked up again with a new
    statement, or None (the transaction then stays open).

    For a check that fails under the lock because a concurrent request with the same key
    already went through: the locking read's lookup can miss it (see the module docstring).
    A replay rolls back, as :func:`replay` does.
    """
    earlier = _entry_id_for_key(card.tx, card.id, idempotency_key)
    if earlier is None:
        return None
    return replay(replace(card, replay_entry_id=earlier), request_fp)


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
