"""The points ledger: the only code that changes a card's balance.

A posting is one transaction, ``with posting(serial, idempotency_key, request_fp) as p:``
lock the card row (finding any earlier entry with the same idempotency key in the same query),
read the program's tiers, then ``p.post()``: a guarded relative update (``balance = balance +
:points WHERE balance + :points >= 0``), the ledger insert, the outbox row that tells the
wallets; and whatever else the caller writes in the block. It commits when the block ends and
rolls back if anything raises. The ``balance >= 0`` CHECK constraint backs the guard,
so no interleaving of requests, on SQLite or PostgreSQL, can overdraw a card.

Idempotency keys are unique per card. The key lookup in the locking query serves plain retries
cheaply, but on PostgreSQL (READ COMMITTED) that statement's snapshot predates the wait for the
lock, so it cannot see an entry committed by the request it waited for. The ledger insert is
therefore ``ON CONFLICT DO NOTHING``: a conflict means a concurrent request with the same key
won, and this transaction rolls back and answers with that request's entry. A check that
fails under the lock for the same reason (the winner spent the points or used the code) looks
the key up again with a new statement before refusing
(:meth:`PostingTransaction.committed_replay`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy import BigInteger, Integer, Table, and_, bindparam, select, update

from app import dbutil, telemetry
from app.errors import (
    CardVoided,
    Conflict,
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


class AtTheTill(Protocol):
    """Who acted at the till, as a ledger entry records it (app.staff.actor.TillActor): the
    staff member, the device and its location, each None when not known."""

    @property
    def staff_member_id(self) -> int | None: ...

    @property
    def device_id(self) -> int | None: ...

    @property
    def location_id(self) -> int | None: ...


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


# The statements of every posting, compiled once per database (postings are the hot path).
_TIER_RULES = dbutil.DriverStatement(lambda _dialect: select(
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


_LOCK = {with_key: dbutil.DriverStatement(
    lambda _dialect, with_key=with_key: _lock_statement(with_key)) for with_key in (False, True)}
_ENTRY_BY_ID = dbutil.DriverStatement(lambda _dialect: select(
    LedgerEntry.id, LedgerEntry.kind, LedgerEntry.points, LedgerEntry.balance_after,
    LedgerEntry.reference, LedgerEntry.reason, LedgerEntry.amount, LedgerEntry.currency,
    LedgerEntry.created_at, LedgerEntry.request_fingerprint,
).where(LedgerEntry.id == bindparam("id")))
_ENTRY_ID_FOR_KEY = dbutil.DriverStatement(lambda _dialect: select(LedgerEntry.id).where(
    LedgerEntry.card_id == bindparam("card_id"), LedgerEntry.idempotency_key == bindparam("key")))


def guarded_update(also_set: Callable[[Table], dict[str, Any]] | None = None,
                   ) -> dbutil.DriverStatement:
    """The guarded update of a posting, setting the columns ``also_set(cards)`` gives too.

    Build it once, at import: a domain that changes more of the card with its postings (a
    redemption rotates the card's code) passes it to :meth:`PostingTransaction.post`, with
    its own parameters, and the posting stays one statement. Parameters: ``card_id``,
    ``points`` (signed), ``lifetime_delta``, ``new_tier_id`` and :func:`changes.bump_params`.
    """

    def build(dialect: str) -> Any:
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
                **changes.bump_template(dialect),
                **(also_set(cards) if also_set else {}),
            )
            .returning(cards.c.balance)
        )

    return dbutil.DriverStatement(build)


def _entry_insert(dialect: str) -> Any:
    """The ledger insert; a concurrent request with the same key makes it insert nothing."""
    entries = LedgerEntry.__table__
    return (
        dbutil.INSERT[dialect](entries)
        .on_conflict_do_nothing(index_elements=["card_id", "idempotency_key"])
        .returning(entries.c.id)
    )


_ENTRY_COLUMNS = ["card_id", "kind", "points", "balance_after", "actor", "reference", "reason",
                  "idempotency_key", "request_fingerprint", "amount", "currency", "reverses_id",
                  "created_at", "staff_member_id", "device_id", "location_id", "pending_points",
                  "rule_id", "purchase_id", "shortfall"]
_UPDATE = guarded_update()
_INSERT_ENTRY = dbutil.DriverStatement(_entry_insert, _ENTRY_COLUMNS)


def posting(serial_number: str, idempotency_key: str | None = None,
            request_fp: str | None = None) -> PostingTransaction:
    """A posting to a card: ``with posting(...) as p:`` locks the card's row (SQLite: the
    database write lock) and commits when the block ends; any exception rolls it back.

    With ``idempotency_key``, the same locking read looks up an earlier entry made with it: a
    plain retry finds ``p.replay`` set (the earlier posting, rolled back, nothing written),
    or ``IdempotencyKeyReused`` is raised when ``request_fp`` (:func:`fingerprint`) differs.
    ``NotFound`` when there is no such card.
    """
    return PostingTransaction(serial_number, idempotency_key, request_fp)


class PostingTransaction:
    """The transaction of one posting, holding the card's lock (see :func:`posting`).

    ``card`` is the card as read under the lock; ``tx`` the transaction
    (:class:`app.dbutil.DriverTransaction`), for a caller's own statements in the same
    transaction; ``replay`` the earlier posting an idempotency key found, if any.
    """

    card: LockedCard
    tx: dbutil.DriverTransaction

    def __init__(self, serial_number: str, idempotency_key: str | None,
                 request_fp: str | None) -> None:
        self.serial_number = serial_number
        self.idempotency_key = idempotency_key or None
        self.request_fp = request_fp
        self.replay: Posting | None = None
        self._posted: EntryKind | None = None  # the kind of entry post() wrote, if any

    def __enter__(self) -> PostingTransaction:
        key = self.idempotency_key
        tx = self.tx = dbutil.begin_driver_transaction()
        try:
            row = tx.first(_LOCK[key is not None], {"serial": self.serial_number, "key": key})
            if row is None:
                raise NotFound(f"No card with serial number {self.serial_number!r}.")
            self.card = LockedCard(*row[:12])
            if key is not None and row[12] is not None:
                self.replay = self._replay(row[12])
        except BaseException:
            tx.rollback()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc_type is not None:
            self.tx.rollback()
        elif not self.tx.done:  # a replay has rolled back already
            try:
                self.tx.commit()
            except BaseException:
                self.tx.rollback()  # a commit that failed leaves nothing open either
                raise
            if self._posted is not None:
                telemetry.POSTINGS[self._posted].inc()

    def tier_rules(self) -> list[TierRule]:
        """The tiers of the card's program."""
        return [TierRule(*row)
                for row in self.tx.all(_TIER_RULES, {"program_id": self.card.program_id})]

    def post(
        self,
        kind: EntryKind,
        points: int,
        *,
        actor: str,
        tiers: list[TierRule] | None = None,
        reference: str | None = None,
        reason: str | None = None,
        amount: int | None = None,
        currency: str | None = None,
        card_update: dbutil.DriverStatement = _UPDATE,
        card_update_params: dict[str, Any] | None = None,
        reverses_id: int | None = None,
        counts_toward_tier: bool | None = None,
        till: AtTheTill | None = None,
        location_id: int | None = None,
        rule_id: int | None = None,
        purchase_id: int | None = None,
        idempotency_key: str | None = None,
    ) -> Posting:
        """Apply ``points`` to the card, append the entry and announce the change (committed
        when the block ends).

        ``card_update``: the card's guarded update, ``guarded_update()`` by default
        (``card_update_params``: the parameters of what a variant also sets). When a
        concurrent request with the same idempotency key went through first, the posting
        rolls back and this returns that request's posting (``replayed``): the transaction
        has ended.

        ``reverses_id``: the entry this one takes back. ``counts_toward_tier`` (by default:
        for an earn) moves the lifetime points with the balance and chooses the tier again;
        taking back an earn passes it, so the earn's tier effect goes too.

        ``till``: who acted at the till; the entry records its staff member, device and
        location (``location_id`` when given, else the till's).

        ``rule_id``: the earning rule a ``bonus`` entry awards; ``purchase_id``: the earn it
        was awarded on. ``idempotency_key`` overrides the transaction's key for this entry
        (a rule's award: ``rule:<rule id>:<occasion>``); the caller checks it is free first.
        """
        card = self.card
        if card.status is CardStatus.VOIDED:
            raise CardVoided(f"Card {card.serial_number} is voided.")
        if points == 0 or abs(points) > MAX_POINTS:
            raise Unprocessable(f"Points must be non-zero and at most {MAX_POINTS} in size.")

        now = utcnow()
        lifetime = card.lifetime_points
        tier_id = card.tier_id
        tier_name = card.tier_name
        if counts_toward_tier is None:
            counts_toward_tier = kind is EntryKind.EARN
        if counts_toward_tier:
            # The row is locked, so the stored lifetime is current: the new tier is chosen here.
            if tiers is None:
                tiers = self.tier_rules()
            lifetime += points
            new_tier = tier_for(tiers, lifetime)
            tier_id = new_tier.id if new_tier else None
            tier_name = new_tier.name if new_tier else None

        tx, key = self.tx, self.idempotency_key
        own_key = idempotency_key is not None
        if own_key:
            key = idempotency_key
        params = {
            "card_id": card.id, "points": points, "lifetime_delta": lifetime - card.lifetime_points,
            "new_tier_id": tier_id, **changes.bump_params(now),
        }
        if card_update_params:
            params.update(card_update_params)
        updated = tx.first(card_update, params)
        if updated is None:
            if not own_key and key is not None and (earlier := self._entry_id_for_key()):
                return self._replay(earlier)
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
            "idempotency_key": key,
            "request_fingerprint": self.request_fp if key and not own_key else None,
            "amount": amount,
            "currency": currency,
            "reverses_id": reverses_id,
            "created_at": now,
            "staff_member_id": till.staff_member_id if till else None,
            "device_id": till.device_id if till else None,
            "location_id": location_id if location_id is not None else (
                till.location_id if till else None),
            "pending_points": 0,
            "rule_id": rule_id,
            "purchase_id": purchase_id,
            "shortfall": None,
        })
        if inserted is None and own_key:
            raise Conflict(f"An entry with the key {key!r} exists already.")
        if inserted is None:  # a concurrent request with the same key committed first
            return self._replay(self._entry_id_for_key())
        changes.announce_card(tx, card.id, now)
        self._posted = kind
        return Posting(
            serial_number=card.serial_number,
            balance=balance,
            lifetime_points=lifetime,
            tier=tier_name,
            entry=Entry(inserted[0], kind, points, balance, reference, reason, amount, currency,
                        now),
        )

    def committed_replay(self) -> Posting | None:
        """The posting made with this idempotency key, looked up again with a new statement,
        or None (the transaction then stays open).

        For a check that fails under the lock because a concurrent request with the same key
        already went through: the locking read's lookup can miss it (see the module
        docstring). A replay rolls back, as ``p.replay`` did.
        """
        if self.idempotency_key is None:
            return None
        earlier = self._entry_id_for_key()
        return None if earlier is None else self._replay(earlier)

    def _entry_id_for_key(self) -> int | None:
        row = self.tx.first(_ENTRY_ID_FOR_KEY, {"card_id": self.card.id,
                                                "key": self.idempotency_key})
        return None if row is None else int(row[0])

    def _replay(self, entry_id: int | None) -> Posting:
        """The earlier posting ``entry_id``; rolls back (releases the lock, nothing written)."""
        row = self.tx.first(_ENTRY_BY_ID, {"id": entry_id})
        self.tx.rollback()
        assert row is not None
        entry, fingerprint_of_first = Entry(*row[:9]), row[9]
        if fingerprint_of_first != self.request_fp:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used for a different request on this card."
            )
        return Posting(
            serial_number=self.card.serial_number,
            balance=entry.balance_after,
            lifetime_points=self.card.lifetime_points,
            tier=self.card.tier_name,
            entry=entry,
            replayed=True,
        )


def earn(
    serial_number: str,
    *,
    actor: str,
    points: int | None = None,
    amount: int | None = None,
    currency: str | None = None,
    reference: str | None = None,
    idempotency_key: str | None = None,
    till: AtTheTill | None = None,
    location_id: int | None = None,
    apply_rules: bool = True,
) -> Posting:
    """Credit points, given directly or computed from a purchase amount, and the awards of
    the program's earning rules (:mod:`app.loyalty.rules`; the answer is then a
    ``rules.EarnPosting`` with the breakdown, a retry's too), then commit.
    ``till``: who earned it for the member at a till (recorded on the entry); ``location_id``:
    the program's store it was earned at (else the till's). ``apply_rules`` False: the points
    alone (the program's referral bonus credit)."""
    from app.loyalty import rules  # rules builds on this module

    request_fp = fingerprint(op="earn", points=points, amount=amount, currency=currency,
                             reference=reference,
                             **({} if location_id is None else {"location_id": location_id}))
    with posting(serial_number, idempotency_key, request_fp) as p:
        if p.replay is not None:
            return rules.replayed_earn(p.replay) if apply_rules else p.replay
        card = p.card
        tiers = p.tier_rules()
        if amount is not None:
            if currency != card.currency:
                raise Unprocessable(
                    f"This program earns in {card.currency}; the purchase is in {currency}.",
                    errors=[{"location": "json", "field": "currency",
                             "message": f"Must be {card.currency}."}],
                )
            tier = next((t for t in tiers if t.id == card.tier_id), None)
            points = points_for_amount(card.earn_points, card.earn_amount,
                                       tier.multiplier_percent if tier else 100, amount)
            if points <= 0:
                raise Unprocessable(
                    f"A purchase of {amount} minor units earns no points at this program's "
                    "rate.",
                    errors=[{"location": "json", "field": "amount",
                             "message": "Too small to earn a point."}],
                )
        if points is None or points <= 0:
            raise Unprocessable("Earn needs a positive number of points or a purchase amount.")
        if location_id is not None:
            rules.check_location(p, location_id)
        plan = rules.plan_earn(
            p, points, amount=amount, currency=currency,
            location_id=location_id if location_id is not None else (
                till.location_id if till else None)) if apply_rules else None
        earned = p.post(EntryKind.EARN, points, actor=actor, tiers=tiers, reference=reference,
                        amount=amount, currency=currency, till=till, location_id=location_id)
        if not apply_rules:
            return earned
        return rules.award_on_earn(p, earned, plan, base_points=points, tiers=tiers,
                                   actor=actor, till=till, location_id=location_id)


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
    with posting(serial_number, idempotency_key, request_fp) as p:
        if p.replay is not None:
            return p.replay
        return p.post(EntryKind.ADJUST, points, actor=actor, reason=reason)


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
