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
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)

from app import access, audit, dbutil, telemetry, timeutil
from app.errors import (
    CardVoided,
    Conflict,
    IdempotencyKeyReused,
    InsufficientPoints,
    NotFound,
    Unprocessable,
)
from app.extensions import db
from app.loyalty import changes, lots
from app.loyalty.lots import OpenLot
from app.loyalty.models import (
    Card,
    CardStatus,
    Challenge,
    EarningRule,
    EntryKind,
    LedgerEntry,
    PointLot,
    Program,
    RuleKind,
    Tier,
)
from app.timeutil import utcnow
from app.webhooks import emit as webhooks

MAX_POINTS = 1_000_000_000  # per posting; far beyond any real purchase, far below int64
MAX_AMOUNT = 10**15  # minor units
# The actor of the entries a posting writes on the clock's behalf (releases and expiries).
CLOCK_ACTOR = "clock"
_TRANSACTION_KEY: str = "\x00the posting's own key"  # post(idempotency_key=...) default


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
    pending_points: int = 0


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
    pending_days: int = 0
    points_expire_after_days: int | None = None
    refund_shortfall: str = "clamp"
    has_purchase_rules: bool = True
    # For the visit listeners (app.loyalty.visits): the program's feedback setting, and
    # whether it has challenges that are not retired.
    feedback_every_days: int | None = None
    has_challenges: bool = False
    # Whether the program has an enabled webhook endpoint: without one, a posting (and what
    # else runs in its block) emits no webhook event and spends no statement on it.
    has_webhooks: bool = False


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
                 Program.earn_amount, Card.barcode_version, Tier.name, Program.pending_days,
                 Program.points_expire_after_days, Program.refund_shortfall,
                 # Whether the program has live rules of purchases: without, an earn asks
                 # nothing more of the rules (one round trip fewer on the hot path).
                 select(EarningRule.id).where(
                     EarningRule.program_id == Card.program_id,
                     EarningRule.deleted_at.is_(None),
                     or_(EarningRule.kind == RuleKind.MULTIPLIER,
                         EarningRule.kind == RuleKind.BONUS,
                         EarningRule.kind == RuleKind.REFERRAL),
                 ).exists().label("has_purchase_rules"),
                 Program.feedback_every_days,
                 select(Challenge.id).where(
                     Challenge.program_id == Card.program_id, Challenge.retired_at.is_(None),
                 ).exists().label("has_challenges"),
                 webhooks.any_endpoint_condition(Card.program_id).label("has_webhooks"))
_LOCKED_CARD_FIELDS = len(_LOCK_COLUMNS)
_PROGRAM_ID = next(i for i, column in enumerate(_LOCK_COLUMNS) if column is Card.program_id)


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
    LedgerEntry.created_at, LedgerEntry.pending_points, LedgerEntry.request_fingerprint,
).where(LedgerEntry.id == bindparam("id")))
# What a purchase earned: its earn's points (available or pending) and the rule awards on it.
_EARNED_BY = dbutil.DriverStatement(lambda _dialect: select(
    func.coalesce(func.sum(LedgerEntry.points + LedgerEntry.pending_points), 0),
).where(or_(LedgerEntry.id == bindparam("entry_id"),
            and_(LedgerEntry.purchase_id == bindparam("entry_id"),
                 LedgerEntry.kind == EntryKind.BONUS))))
_REVERSAL_OF = dbutil.DriverStatement(lambda _dialect: select(LedgerEntry.id).where(
    LedgerEntry.card_id == bindparam("card_id"), LedgerEntry.reverses_id == bindparam("id"))
    .limit(1))
_AUDIT_COLUMNS = ["at", "actor", "actor_name", "program_id", "action", "target", "details"]
_INSERT_AUDIT = dbutil.DriverStatement(
    lambda _dialect: audit.AuditEvent.__table__.insert(), _AUDIT_COLUMNS)
_ENTRY_ID_FOR_KEY = dbutil.DriverStatement(lambda _dialect: select(LedgerEntry.id).where(
    LedgerEntry.card_id == bindparam("card_id"), LedgerEntry.idempotency_key == bindparam("key")))


def guarded_update(also_set: Callable[[Table], dict[str, Any]] | None = None,
                   ) -> dbutil.DriverStatement:
    """The guarded update of a posting, setting the columns ``also_set(cards)`` gives too.

    Build it once, at import: a domain that changes more of the card with its postings (a
    redemption rotates the card's code) passes it to :meth:`PostingTransaction.post`, with
    its own parameters, and the posting stays one statement. Parameters: ``card_id``,
    ``points`` (signed), ``lifetime_delta``, ``new_tier_id``, ``visit_at`` (the entry's
    time when it is a visit, an earn or a redemption: the card's ``last_visit_at`` moves up
    to it; else None) and :func:`changes.bump_params`.
    """

    def build(dialect: str) -> Any:
        cards = Card.__table__
        points = bindparam("points", type_=BigInteger)
        visit_at = bindparam("visit_at", type_=cards.c.last_visit_at.type)
        last_visit_at = case(
            (and_(visit_at.is_not(None), or_(cards.c.last_visit_at.is_(None),
                                             cards.c.last_visit_at < visit_at)), visit_at),
            else_=cards.c.last_visit_at)
        return (
            update(cards)
            .where(cards.c.id == bindparam("card_id"), cards.c.balance + points >= 0)
            .values(
                balance=cards.c.balance + points,
                lifetime_points=cards.c.lifetime_points
                + bindparam("lifetime_delta", type_=BigInteger),
                tier_id=bindparam("new_tier_id", type_=Integer),
                last_visit_at=last_visit_at,
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
_LOT_PARAMS = ("lot_points", "lot_pending", "lot_available_at", "lot_expires_at")


def _entry_and_lot_insert(dialect: str) -> Any:
    """On PostgreSQL, a credit's entry and its lot in one statement (a round trip fewer on
    every earn): the lot is inserted from what the entry insert returned, so when a
    concurrent request with the same key won (the entry insert did nothing) there is no lot
    either, and the statement returns no row. Parameters: the entry's columns and
    :data:`_LOT_PARAMS`. SQLite (no data-modifying WITH) runs the two inserts one by one."""
    if dialect != "postgresql":
        return None
    entries, lot_table = LedgerEntry.__table__, PointLot.__table__
    entry = (
        dbutil.INSERT[dialect](entries)
        .values({name: bindparam(name, type_=entries.c[name].type) for name in _ENTRY_COLUMNS})
        .on_conflict_do_nothing(index_elements=["card_id", "idempotency_key"])
        .returning(entries.c.id)
        .cte("entry")
    )
    points = bindparam("lot_points", type_=BigInteger)
    lot = select(
        entry.c.id, bindparam("card_id", type_=Integer), points, points,
        bindparam("lot_pending", type_=lot_table.c.pending.type),
        bindparam("lot_available_at", type_=lot_table.c.available_at.type),
        bindparam("lot_expires_at", type_=lot_table.c.expires_at.type),
        bindparam("created_at", type_=lot_table.c.created_at.type),
    )
    return lot_table.insert().from_select(
        ["entry_id", "card_id", "points", "remaining", "pending", "available_at", "expires_at",
         "created_at"], lot,
    ).returning(lot_table.c.entry_id)


_INSERT_ENTRY_AND_LOT = dbutil.DriverStatement(_entry_and_lot_insert)


@dataclass(frozen=True)
class _Write:
    """What one entry of a posting writes, besides its points."""

    kind: EntryKind
    key: str | None
    own_key: bool  # the entry's own key (an expiry, a rule's award), not the posting's
    now: datetime
    card_update: dbutil.DriverStatement
    card_update_params: dict[str, Any] | None
    entry: dict[str, Any]


_CLOCK_KINDS = (EntryKind.RELEASE, EntryKind.EXPIRE)
_VISITS = (EntryKind.EARN, EntryKind.REDEEM)  # the member was at the till
_CLOCK_ENTRY = {"actor": CLOCK_ACTOR, "reference": None, "reason": None, "amount": None,
                "currency": None, "reverses_id": None, "rule_id": None, "purchase_id": None,
                "staff_member_id": None, "device_id": None, "location_id": None}


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
        self._tiers: list[TierRule] | None = None

    def __enter__(self) -> PostingTransaction:
        key = self.idempotency_key
        tx = self.tx = dbutil.begin_driver_transaction()
        try:
            row = tx.first(_LOCK[key is not None], {"serial": self.serial_number, "key": key})
            # A card of a program outside the caller's reach is no card at all (app.access).
            if row is None or not access.current().allows(row[_PROGRAM_ID]):
                raise NotFound(f"No card with serial number {self.serial_number!r}.")
            self.card = LockedCard(*row[:_LOCKED_CARD_FIELDS])
            if key is not None and row[_LOCKED_CARD_FIELDS] is not None:
                self.replay = self._replay(row[_LOCKED_CARD_FIELDS])
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
        """The tiers of the card's program (read once per posting)."""
        if self._tiers is None:
            self._tiers = [TierRule(*row) for row in
                           self.tx.all(_TIER_RULES, {"program_id": self.card.program_id})]
        return self._tiers

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
        idempotency_key: str | None = _TRANSACTION_KEY,
        take_first_from: int | None = None,
        shortfall: str | None = None,
    ) -> Posting:
        """Apply ``points`` to the card, append the entry, keep the card's lots and announce
        the change (committed when the block ends). Several postings may share one block.

        A credit (``points`` > 0) makes a lot: pending for ``pending_days`` when it comes
        from a purchase (an ``earn``, or a ``bonus`` with ``purchase_id``), expiring after the
        program's ``points_expire_after_days``; the reversal (``reverses_id``) of a spend
        gives back the lots the spend took, with their expiry. A debit first settles the card
        (the releases and expiries now due, each its own entry), then takes its points from
        the lots of ``take_first_from`` (an earn: its lot and those of the rule awards on it)
        and then from available lots in spend order (:mod:`app.loyalty.lots`).
        ``InsufficientPoints`` when they hold too little, unless ``shortfall`` is given: with
        ``"clamp"`` the debit takes what there is, with ``"forgive"`` only from
        ``take_first_from``'s lots, and the entry records the rest as its shortfall.

        ``card_update``: the card's guarded update, ``guarded_update()`` by default
        (``card_update_params``: the parameters of what a variant also sets). When a
        concurrent request with the same idempotency key went through first, the posting
        rolls back and this returns that request's posting (``replayed``): the transaction
        has ended.

        ``counts_toward_tier`` (by default: an earn, or a rule's bonus on a purchase) moves
        the lifetime points with the points that are or become available, and chooses the
        tier again; taking back an earn passes it, so the earn's tier effect goes too.
        ``idempotency_key``: this entry's own key instead of the posting's (a rule's award).

        ``till``: who acted at the till; the entry records its staff member, device and
        location (``location_id`` when given, else the till's).
        """
        card = self.card
        if card.status is CardStatus.VOIDED:
            raise CardVoided(f"Card {card.serial_number} is voided.")
        if (points == 0 and kind is not EntryKind.REFUND) or abs(points) > MAX_POINTS:
            raise Unprocessable(f"Points must be non-zero and at most {MAX_POINTS} in size.")
        if tiers is not None:
            self._tiers = tiers
        if counts_toward_tier is None:
            counts_toward_tier = kind is EntryKind.EARN or (
                kind is EntryKind.BONUS and purchase_id is not None)
        now = timeutil.now()
        entry: dict[str, Any] = {
            "actor": actor, "reference": reference, "reason": reason, "amount": amount,
            "currency": currency, "reverses_id": reverses_id, "rule_id": rule_id,
            "purchase_id": purchase_id,
            "staff_member_id": till.staff_member_id if till else None,
            "device_id": till.device_id if till else None,
            "location_id": location_id if location_id is not None else (
                till.location_id if till else None),
        }
        own_key = idempotency_key is not _TRANSACTION_KEY
        key = idempotency_key if own_key else self.idempotency_key
        write = _Write(kind, key, own_key, now, card_update, card_update_params, entry)
        if points > 0:
            return self._credit(write, points, counts_toward_tier)
        return self._debit(write, -points, counts_toward_tier, take_first_from, shortfall)

    def _credit(self, write: _Write, points: int, counts: bool) -> Posting:
        card, tx, now = self.card, self.tx, write.now
        expire_days = card.points_expire_after_days
        pending = card.pending_days > 0 and (write.kind is EntryKind.EARN or (
            write.kind is EntryKind.BONUS and write.entry["purchase_id"] is not None))
        available_at = now + timedelta(days=card.pending_days) if pending else now
        # A reversal of a spend gives back what the spend took, each with its lot's expiry.
        new_lots: list[tuple[int, datetime | None]] = []
        reverses_id = write.entry["reverses_id"]
        if write.kind is EntryKind.REVERSE and reverses_id is not None:
            left = points
            for taken, expires_at in tx.all(lots.CONSUMED_BY, {"entry_id": reverses_id}):
                if left > 0:
                    new_lots.append((min(taken, left), expires_at))
                    left -= min(taken, left)
            if left > 0:  # spent before lots existed
                new_lots.append((left, lots.expiry_for(now, expire_days)))
        else:
            new_lots.append((points, lots.expiry_for(available_at, expire_days)))
        one_lot = None
        if len(new_lots) == 1 and tx.dialect.name == "postgresql":
            one_lot = {"lot_points": points, "lot_pending": pending,
                       "lot_available_at": available_at, "lot_expires_at": new_lots[0][1]}
            new_lots = []
        posting = self._write(write, 0 if pending else points, points if pending else 0,
                              points if counts and not pending else 0, lot=one_lot)
        if posting.replayed:
            return posting
        for lot_points, expires_at in new_lots:
            tx.execute(lots.INSERT_LOT, {
                "card_id": card.id, "entry_id": posting.entry.id, "points": lot_points,
                "remaining": lot_points, "pending": pending, "available_at": available_at,
                "expires_at": expires_at, "reminded_at": None, "created_at": now,
            })
        return self._announced(posting)

    def _debit(self, write: _Write, points: int, counts: bool, take_first_from: int | None,
               shortfall: str | None) -> Posting:
        card, tx = self.card, self.tx
        open_lots = self._settle(
            [OpenLot(*row) for row in tx.all(lots.OPEN_LOTS, {"card_id": card.id})], write.now)
        first = [] if take_first_from is None else [
            row[0] for row in tx.all(lots.PURCHASE_LOTS, {"entry_id": take_first_from})]
        takes = lots.choose(open_lots, points, first=first,
                            spend_from_balance=shortfall != "forgive")
        taken = sum(take.points for take in takes)
        if taken < points and shortfall is None:
            if write.key is not None and not write.own_key and (
                    earlier := self._entry_id_for_key()):
                return self._replay(earlier)
            raise InsufficientPoints(
                f"Card {card.serial_number} has {self.card.balance} points; {points} are "
                "needed.", balance=self.card.balance)
        from_available = sum(take.points for take in takes if not take.lot.pending)
        posting = self._write(write, -from_available, from_available - taken,
                              -from_available if counts else 0,
                              shortfall=None if shortfall is None else points - taken)
        if posting.replayed:
            return posting
        for take in takes:
            self._take(take, posting.entry.id)
        return self._announced(posting)

    def _settle(self, open_lots: list[OpenLot], now: datetime) -> list[OpenLot]:
        """Write the releases and expiries due at ``now`` (each its own entry); the lots left
        to spend from."""
        release, expire = lots.settle_due(open_lots, now)
        for lot in release:
            write = _Write(EntryKind.RELEASE, f"release:{lot.id}", True, now, _UPDATE, None,
                           _CLOCK_ENTRY)
            self._write(write, lot.remaining, -lot.remaining, lot.remaining)
            self.tx.execute(lots.RELEASE, {"lot_id": lot.id})
            lot.pending = False
        for lot in expire:
            write = _Write(EntryKind.EXPIRE, f"expire:{lot.id}", True, now, _UPDATE, None,
                           _CLOCK_ENTRY)
            posting = self._write(write, -lot.remaining, 0, 0)
            self._take(lots.Take(lot, lot.remaining), posting.entry.id)
        return [lot for lot in open_lots if lot.remaining > 0]

    def _take(self, take: lots.Take, entry_id: int) -> None:
        params = {"lot_id": take.lot.id, "taken": take.points, "entry_id": entry_id,
                  "points": take.points}
        if self.tx.dialect.name == "postgresql":
            taken = self.tx.execute(lots.TAKE_AND_RECORD, params)
        elif (taken := self.tx.execute(lots.TAKE, params)) == 1:
            self.tx.execute(lots.INSERT_CONSUMPTION, params)
        if taken != 1:
            raise RuntimeError(f"lot {take.lot.id} holds less than {take.points} points")
        take.lot.remaining -= take.points

    def _write(self, write: _Write, points: int, pending_points: int, lifetime_delta: int,
               shortfall: int | None = None, lot: dict[str, Any] | None = None) -> Posting:
        """The card's guarded update and the entry (with ``lot``, the :data:`_LOT_PARAMS` of
        the entry's lot on PostgreSQL: that too, in the same statement); the card as it is
        after them becomes ``self.card``. A replay (``replayed``) when a concurrent request
        with the posting's key went through first."""
        card, tx = self.card, self.tx
        lifetime = max(card.lifetime_points + lifetime_delta, 0)
        tier_id, tier_name = card.tier_id, card.tier_name
        if lifetime != card.lifetime_points:
            # The row is locked, so the stored lifetime is current: the new tier is chosen here.
            new_tier = tier_for(self.tier_rules(), lifetime)
            tier_id = new_tier.id if new_tier else None
            tier_name = new_tier.name if new_tier else None
        params = {
            "card_id": card.id, "points": points, "lifetime_delta": lifetime - card.lifetime_points,
            # The pass's Last-Modified and the outbox run on the real clock; only the loyalty
            # rules (entry times, lots, expiry) follow the app's clock, which tests move.
            "new_tier_id": tier_id, **changes.bump_params(utcnow()),
            # The segments' last visit (app.campaigns.segments): kept with the visit itself.
            "visit_at": write.now if write.kind in _VISITS else None,
        }
        card_update = _UPDATE
        if write.kind not in _CLOCK_KINDS:
            card_update = write.card_update
            params.update(write.card_update_params or {})
        updated = tx.first(card_update, params)
        if updated is None:  # the lots and the balance disagree: refuse rather than overdraw
            raise InsufficientPoints(
                f"Card {card.serial_number} has {card.balance} points; {-points} are needed.",
                balance=card.balance)
        (balance,) = updated
        own_key = write.own_key
        inserted = tx.first(_INSERT_ENTRY if lot is None else _INSERT_ENTRY_AND_LOT, {
            **write.entry, "card_id": card.id, "kind": write.kind, "points": points,
            "pending_points": pending_points, "balance_after": balance,
            "idempotency_key": write.key,
            "request_fingerprint": self.request_fp if write.key and not own_key else None,
            "created_at": write.now, "shortfall": shortfall, **(lot or {}),
        })
        if inserted is None:
            if own_key:
                raise Conflict(f"A {write.kind} entry with key {write.key!r} exists already.")
            # A concurrent request with the same key committed first.
            return self._replay(self._entry_id_for_key())
        self.card = replace(card, balance=balance, lifetime_points=lifetime, tier_id=tier_id,
                            tier_name=tier_name)
        entry = write.entry
        if card.has_webhooks:
            self._emit_balance_changed(write, inserted[0], points, pending_points, balance)
        return Posting(
            serial_number=card.serial_number, balance=balance, lifetime_points=lifetime,
            tier=tier_name,
            entry=Entry(inserted[0], write.kind, points, balance, entry["reference"],
                        entry["reason"], entry["amount"], entry["currency"],
                        write.now, pending_points),
        )

    def _emit_balance_changed(self, write: _Write, entry_id: int, points: int,
                              pending_points: int, balance: int) -> None:
        """``card.balance_changed`` for the entry just written, with its cause (the kind of
        entry and who or what made it), in the posting's transaction."""
        card, entry = self.card, write.entry
        webhooks.emit(card.program_id, webhooks.CARD_BALANCE_CHANGED, {
            "card": {"serial_number": card.serial_number, "balance": balance,
                     "lifetime_points": card.lifetime_points, "tier": card.tier_name},
            "entry": {"id": entry_id, "kind": str(write.kind), "points": points,
                      "pending_points": pending_points, "balance_after": balance,
                      "created_at": write.now.isoformat(), "amount": entry["amount"],
                      "currency": entry["currency"]},
            "cause": {"kind": str(write.kind), "actor": entry["actor"],
                      "reference": entry["reference"], "reason": entry["reason"],
                      "reverses_entry_id": entry["reverses_id"], "rule_id": entry["rule_id"],
                      "purchase_entry_id": entry["purchase_id"],
                      "staff_member_id": entry["staff_member_id"],
                      "device_id": entry["device_id"], "location_id": entry["location_id"]},
        }, card_serial=card.serial_number, tx=self.tx)

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Emit a webhook event of the card's program in this transaction (nothing, without
        a statement, when the program has no enabled endpoint)."""
        if self.card.has_webhooks:
            webhooks.emit(self.card.program_id, event_type, data,
                          card_serial=self.card.serial_number, tx=self.tx)

    def _announced(self, posting: Posting) -> Posting:
        changes.announce_card(self.tx, self.card.id, utcnow())
        self._posted = posting.entry.kind
        return posting

    def earned_by(self, purchase_id: int) -> int:
        """The points the purchase ``purchase_id`` (an earn entry) earned: its own, pending or
        not, and those of the rules' awards on it."""
        row = self.tx.first(_EARNED_BY, {"entry_id": purchase_id})
        return int(row[0]) if row else 0

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

    def _entry_id_for_key(self, key: str | None = None) -> int | None:
        row = self.tx.first(_ENTRY_ID_FOR_KEY, {"card_id": self.card.id,
                                                "key": key or self.idempotency_key})
        return None if row is None else int(row[0])

    def record(self, action: str, *, details: dict[str, Any] | None = None) -> None:
        """Record ``action`` on the card in the audit trail (:mod:`app.audit`), in this
        transaction: it commits with the posting or not at all."""
        who = audit.current_actor()
        self.tx.execute(_INSERT_AUDIT, {
            "at": utcnow(), "actor": who.ref, "actor_name": who.name[:254],
            "program_id": self.card.program_id, "action": action,
            "target": f"card:{self.card.serial_number}", "details": details or None})

    def has_entry_with_key(self, key: str) -> bool:
        """Whether the card has an entry made with the idempotency key ``key`` (an award's
        own key, say)."""
        return self._entry_id_for_key(key) is not None

    def reversed(self, entry_id: int) -> bool:
        """Whether the card's entry ``entry_id`` has been reversed (read under the card's
        lock: two reversals of one entry cannot both pass)."""
        return self.tx.first(_REVERSAL_OF, {"card_id": self.card.id, "id": entry_id}) is not None

    def _replay(self, entry_id: int | None) -> Posting:
        """The earlier posting ``entry_id``; rolls back (releases the lock, nothing written)."""
        row = self.tx.first(_ENTRY_BY_ID, {"id": entry_id})
        self.tx.rollback()
        assert row is not None
        entry, fingerprint_of_first = Entry(*row[:10]), row[10]
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


def adjust(
    serial_number: str,
    *,
    points: int,
    reason: str,
    actor: str,
    idempotency_key: str | None = None,
) -> Posting:
    """Add or remove points by hand (signed), with a reason, then commit; recorded in the
    audit trail as ``card.adjust``. ``NotFound`` for a card outside the caller's programs
    (:mod:`app.access`), as for one that does not exist; ``InsufficientPoints`` when a
    removal would take the balance below zero."""
    request_fp = fingerprint(op="adjust", points=points, reason=reason)
    with posting(serial_number, idempotency_key, request_fp) as p:
        if p.replay is not None:
            return p.replay
        done = p.post(EntryKind.ADJUST, points, actor=actor, reason=reason)
        if not done.replayed:
            p.record("card.adjust", details={"points": points, "reason": reason,
                                             "entry_id": done.entry.id,
                                             "balance": done.balance})
        return done


def recent_entries(card: Card, limit: int = 10) -> list[LedgerEntry]:
    """The card's latest ledger entries, newest first."""
    return recent_entries_of([card.id], limit).get(card.id, [])


def recent_entries_of(card_ids: Collection[int], limit: int) -> dict[int, list[LedgerEntry]]:
    """:func:`recent_entries` of each of ``card_ids`` (those with entries), in one query."""
    return _recent(card_ids, limit, LedgerEntry)


# What a pass shows of an entry (app.wallet: its activity lines).
ACTIVITY_COLUMNS = (LedgerEntry.kind, LedgerEntry.points, LedgerEntry.pending_points,
                    LedgerEntry.reason, LedgerEntry.reference, LedgerEntry.created_at)


def recent_activity_of(card_ids: Collection[int], limit: int) -> dict[int, list[Any]]:
    """:func:`recent_entries_of` as rows of :data:`ACTIVITY_COLUMNS` only: a batch of
    passes reads thousands of entries, and loading them as ORM objects costs more than
    signing the passes."""
    return _recent(card_ids, limit, LedgerEntry.card_id, *ACTIVITY_COLUMNS)


def _recent(card_ids: Collection[int], limit: int, *columns: Any) -> dict[int, list[Any]]:
    ids = list(card_ids)
    if len(ids) == 1:  # the index's newest rows, where a window would number them all
        statement = (select(*columns).where(LedgerEntry.card_id == ids[0])
                     .order_by(LedgerEntry.id.desc()).limit(limit))
    else:
        ranked = (
            select(LedgerEntry.id, func.row_number().over(
                partition_by=LedgerEntry.card_id, order_by=LedgerEntry.id.desc()).label("rank"))
            .where(LedgerEntry.card_id.in_(ids))
            .subquery()
        )
        statement = (select(*columns).join(ranked, ranked.c.id == LedgerEntry.id)
                     .where(ranked.c.rank <= limit)
                     .order_by(LedgerEntry.card_id, LedgerEntry.id.desc()))
    result = db.session.execute(statement)
    found: dict[int, list[Any]] = {}
    for entry in (result.scalars() if len(columns) == 1 else result):
        found.setdefault(entry.card_id, []).append(entry)
    return found


def get_card(serial_number: str) -> Card:
    """The card with this serial number; ``NotFound`` (404) when there is none or its program
    is outside the caller's reach (:mod:`app.access`), alike."""
    card = db.session.scalar(select(Card).where(Card.serial_number == serial_number,
                                                access.current().where(Card.program_id)))
    if card is None:
        raise NotFound(f"No card with serial number {serial_number!r}.")
    return card
