"""``pointpass tick``: the loyalty engine's time-based work at one instant ``as_of``.

:func:`run` releases pending lots whose ``available_at`` has come (a ``release`` entry per
lot), expires what is left of lots past their ``expires_at`` (an ``expire`` entry per lot,
idempotency key ``expire:<lot id>``, and the lot consumption), marks the lots whose expiry
falls within their program's ``expiry_reminder_days`` as reminded (so the passes say
"N points expire on ..."), and awards birthdays (:func:`app.loyalty.rules.award_birthdays`).

The work is set-based, in batches of lots taken in lot id order (keyset), one transaction
per batch: the batch's cards are locked first (``SELECT ... FOR UPDATE`` in card id order on
PostgreSQL; SQLite runs one writer at a time), then the lots are read again under the lock,
so a posting that settled a card meanwhile (docs/loyalty-engine.md) or a second tick leaves
nothing for this one to do. The unique ``(card_id, idempotency_key)`` of the entries with
``ON CONFLICT DO NOTHING`` backs that up. Every changed card is bumped and announced to the
wallets in the same transaction, as a posting does (:mod:`app.loyalty.changes`).

Running it twice, or two at once, releases and expires each lot once. A run that stops half
way has committed its finished batches; the next run does the rest.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from app import dbutil, timeutil
from app.config import ConfigError
from app.extensions import db
from app.loyalty import changes, rules
from app.loyalty.ledger import CLOCK_ACTOR
from app.loyalty.models import (
    Card,
    CardStatus,
    EntryKind,
    LedgerEntry,
    LotConsumption,
    PointLot,
    Program,
    Tier,
)
from app.webhooks import emit as webhooks

log = logging.getLogger("pointpass.tick")

BATCH_SIZE = 10_000  # lots per transaction
ACTOR = CLOCK_ACTOR  # as the releases and expiries a posting writes when it settles a card
# A batch that lost a deadlock (a program-wide card update took its cards in another order)
# or a serialization failure is tried again this often.
RETRIES = 5
_RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure

LOTS = PointLot.__table__
CARDS = Card.__table__
ENTRIES = LedgerEntry.__table__
CONSUMPTIONS = LotConsumption.__table__


@dataclass
class TickReport:
    """What one run did."""

    as_of: datetime
    released: int = 0  # lots released (one release entry each, but for emptied lots)
    points_released: int = 0
    expired: int = 0  # lots expired (one expire entry each)
    points_expired: int = 0
    reminded: int = 0  # cards told that points expire soon
    lots_reminded: int = 0
    birthdays: int = 0  # birthday awards (app.loyalty.rules)
    batches: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        report = asdict(self)
        report["as_of"] = self.as_of.isoformat()
        report["seconds"] = round(self.seconds, 3)
        return report

    def __str__(self) -> str:
        return (f"as of {self.as_of.isoformat()}: released {self.released} lots "
                f"({self.points_released} points), expired {self.expired} lots "
                f"({self.points_expired} points), reminded {self.reminded} cards "
                f"({self.lots_reminded} lots), {self.birthdays} birthday awards, "
                f"in {self.seconds:.1f} s")

    def to_json(self) -> str:
        return json.dumps(self.as_dict())

    def add(self, done: Done) -> None:
        self.released += done.released
        self.points_released += done.points_released
        self.expired += done.expired
        self.points_expired += done.points_expired
        self.reminded += done.reminded
        self.lots_reminded += done.lots_reminded


def run(as_of: datetime | None = None, batch_size: int = BATCH_SIZE) -> TickReport:
    """Do the time-based work due at ``as_of`` (default: the app's clock,
    :func:`app.timeutil.now`), committing batch by batch. Needs an application context."""
    if as_of is None:
        as_of = timeutil.now()
    if as_of.tzinfo is None:
        raise ValueError("as_of must be an aware datetime")
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    started = time.monotonic()
    report = TickReport(as_of=as_of)
    db.session.rollback()  # start from a clean session: every batch is its own transaction
    _Pass(Due(as_of, _reminder_horizons(as_of)), report, batch_size).run()
    report.birthdays = award_birthdays(as_of)
    report.seconds = time.monotonic() - started
    log.info("tick %s", report)
    return report


def award_birthdays(as_of: datetime) -> int:
    """The birthday awards due at ``as_of`` (:func:`app.loyalty.rules.award_birthdays`: the
    rules' business, not the tick's). The number awarded."""
    return rules.award_birthdays(as_of)


def scheduled() -> None:
    """The periodic tick (a background job, see :func:`start_scheduler`)."""
    run()


# --- Which lots are due -----------------------------------------------------------------

def _reminder_horizons(as_of: datetime) -> list[tuple[int, datetime]]:
    """(program id, the latest expiry it reminds of at ``as_of``) of the programs that
    remind at all."""
    rows = db.session.execute(select(Program.id, Program.expiry_reminder_days)
                              .where(Program.expiry_reminder_days > 0)
                              .order_by(Program.id)).all()
    db.session.rollback()
    return [(int(program_id), as_of + timedelta(days=int(days))) for program_id, days in rows]


class Due:
    """The conditions on a lot (a row of ``point_lots``) for each kind of work at ``as_of``."""

    def __init__(self, as_of: datetime, horizons: list[tuple[int, datetime]]) -> None:
        self.as_of = as_of
        lots = LOTS.c
        # Pending, and its time has come.
        self.release = and_(lots.pending, lots.available_at <= as_of)
        # Points left past the expiry (a pending lot past it is released first, then expired).
        # remaining > 0 AND expires_at IS NOT NULL: the partial index ix_point_lots_expiring.
        self.expire = and_(lots.remaining > 0, lots.expires_at.is_not(None),
                           lots.expires_at <= as_of, or_(~lots.pending, self.release))
        self.remind = self._remind(horizons)
        self.any = or_(self.release, self.expire, self.remind)

    def _remind(self, horizons: list[tuple[int, datetime]]) -> ColumnElement[bool]:
        """Points left that expire within the reminder days of the card's program, and the
        member was not told yet."""
        if not horizons:
            return false()
        lots, cards = LOTS.c, CARDS.alias("reminding_card")
        stamp = LOTS.c.expires_at.type
        by_program = union_all(*(
            select(literal(program_id, Integer).label("program_id"),
                   literal(horizon, stamp).label("horizon"))
            for program_id, horizon in horizons)).subquery("horizons")
        within = (select(literal(1)).select_from(
            cards.join(by_program, by_program.c.program_id == cards.c.program_id))
            .where(cards.c.id == lots.card_id, lots.expires_at <= by_program.c.horizon))
        return and_(lots.remaining > 0, ~lots.pending, lots.reminded_at.is_(None),
                    lots.expires_at.is_not(None), lots.expires_at > self.as_of,
                    lots.expires_at <= max(horizon for _p, horizon in horizons),
                    within.exists())


# --- Batches ----------------------------------------------------------------------------

@dataclass
class Batch:
    """The lots of one transaction: those with ``after < id <= upto`` of the locked cards
    (``card_ids``, active cards only), read again under the locks."""

    due: Due
    after: int
    upto: int
    card_ids: list[int]
    dialect: str

    def lots(self, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        """The batch's lots that meet ``condition``."""
        return and_(LOTS.c.id > self.after, LOTS.c.id <= self.upto, condition,
                    _among(LOTS.c.card_id, self.dialect))

    @property
    def params(self) -> dict[str, Any]:
        return _ids_param(self.card_ids, self.dialect)


def _among(column: Any, dialect: str, ids: list[int] | None = None,
           name: str = "card_ids") -> ColumnElement[bool]:
    """``column`` is one of the ids of parameter ``name`` (see :func:`_ids_param`), or of
    ``ids`` when given: an array on PostgreSQL, a JSON list on SQLite, so any number of ids
    is one parameter."""
    if dialect == "postgresql":
        # IN (SELECT unnest(...)) is a hash join; "= ANY(array)" would search the array
        # once per row.
        array = bindparam(name, type_=ARRAY(BigInteger),
                          **({"value": ids} if ids is not None else {}))
        return column.in_(select(func.unnest(array)))
    value = {"value": json.dumps(ids)} if ids is not None else {}
    return column.in_(select(cast(literal_column("value"), BigInteger))
                      .select_from(func.json_each(bindparam(name, type_=String, **value))))


def _ids_param(ids: list[int], dialect: str, name: str = "card_ids") -> dict[str, Any]:
    return {name: ids if dialect == "postgresql" else json.dumps(ids)}


class _Pass:
    """Every due lot, batch by batch: each batch releases, expires and reminds at once, and
    changes each of its cards once."""

    def __init__(self, due: Due, report: TickReport, batch_size: int) -> None:
        self.due, self.report, self.batch_size = due, report, batch_size
        self.dialect = db.session.get_bind().dialect.name

    def run(self) -> None:
        after = 0
        while (upto := self._next_upto(after)) is not None:
            self._batch(after, upto)
            after = upto

    def _next_upto(self, after: int) -> int | None:
        """The id of the last lot of the next batch (None: no lot is due after ``after``)."""
        first = (select(LOTS.c.id).where(LOTS.c.id > after, self.due.any)
                 .order_by(LOTS.c.id).limit(self.batch_size).subquery())
        upto = db.session.execute(select(func.max(first.c.id))).scalar()
        db.session.rollback()
        return None if upto is None else int(upto)

    def _batch(self, after: int, upto: int) -> None:
        for attempt in range(1, RETRIES + 1):
            try:
                batch = Batch(self.due, after, upto, self._lock_cards(after, upto), self.dialect)
                done = _work(batch) if batch.card_ids else None
                db.session.commit()
            except DBAPIError as error:
                db.session.rollback()
                code = getattr(error.orig, "sqlstate", None)
                if code not in _RETRYABLE or attempt == RETRIES:
                    raise
                log.warning("tick batch after lot %s: %s; trying again", after, code)
                time.sleep(0.05 * attempt)
                continue
            except BaseException:
                db.session.rollback()
                raise
            self.report.batches += 1
            if done is not None:
                self.report.add(done)
            return

    def _lock_cards(self, after: int, upto: int) -> list[int]:
        """Lock the active cards with lots due in the batch, in id order; their ids.

        Their ids are read first (a scan of the batch's lots), then locked by id: a lookup
        per card, where a join would read the whole cards table for every batch."""
        candidates = sorted({int(card) for (card,) in db.session.execute(
            select(LOTS.c.card_id).where(LOTS.c.id > after, LOTS.c.id <= upto, self.due.any))})
        if not candidates:
            return []
        rows = db.session.execute(
            select(CARDS.c.id)
            .where(_among(CARDS.c.id, self.dialect, candidates),
                   CARDS.c.status == CardStatus.ACTIVE)
            .order_by(CARDS.c.id)
            .with_for_update(of=CARDS)
        ).all()
        return [int(row[0]) for row in rows]


# --- The work of a batch ----------------------------------------------------------------

def _key(prefix: str) -> Any:
    return literal(prefix) + cast(LOTS.c.id, String)


def _entries_insert(dialect: str, rows: Any) -> Any:
    """INSERT of the entries ``rows`` selects (card_id, kind, points, pending_points,
    balance_after, actor, idempotency_key, created_at); a lot whose entry exists already
    gets none. Returns each entry's card and points."""
    return (
        dbutil.INSERT[dialect](ENTRIES)
        .from_select(["card_id", "kind", "points", "pending_points", "balance_after", "actor",
                      "idempotency_key", "created_at"], rows)
        .on_conflict_do_nothing(index_elements=["card_id", "idempotency_key"])
        .returning(ENTRIES.c.card_id, ENTRIES.c.points, ENTRIES.c.id, ENTRIES.c.balance_after)
    )


def _kind(kind: EntryKind) -> Any:
    return literal(kind.value, type_=ENTRIES.c.kind.type)


def _points(condition: ColumnElement[bool]) -> Any:
    return case((condition, LOTS.c.remaining), else_=0)


def _work(batch: Batch) -> Done:
    """The batch's work, in its transaction (the cards are locked).

    Per card, in entry order: a ``release`` entry per lot released (lot id order), then an
    ``expire`` entry per lot expired, each with the balance after it; the expired lots'
    consumptions; one update of the card (balance, lifetime points and tier, the change
    bump); the lots themselves; the outbox rows.
    """
    session, params, due = db.session, batch.params, batch.due
    as_of = due.as_of
    created = literal(as_of, type_=ENTRIES.c.created_at.type)
    actor = literal(ACTOR)
    joined = LOTS.join(CARDS, CARDS.c.id == LOTS.c.card_id)
    # Release: points +N, pending -N; the balance after counts the card's earlier lots.
    released_before = func.sum(LOTS.c.remaining).over(partition_by=LOTS.c.card_id,
                                                      order_by=LOTS.c.id)
    released = session.execute(_entries_insert(batch.dialect, (
        select(LOTS.c.card_id, _kind(EntryKind.RELEASE), LOTS.c.remaining, -LOTS.c.remaining,
               CARDS.c.balance + released_before, actor, _key("release:"), created)
        .select_from(joined)
        .where(batch.lots(and_(due.release, LOTS.c.remaining > 0)))
        .order_by(LOTS.c.id))), params).all()
    # Expire: after all of the card's releases in the batch.
    window = (
        select(LOTS.c.id, LOTS.c.card_id, LOTS.c.remaining, due.expire.label("expiring"),
               (CARDS.c.balance
                + func.sum(_points(due.release)).over(partition_by=LOTS.c.card_id)
                - func.sum(_points(due.expire)).over(partition_by=LOTS.c.card_id,
                                                     order_by=LOTS.c.id)).label("after"))
        .select_from(joined)
        .where(batch.lots(or_(due.release, due.expire)))
        .subquery("expiring_lots"))
    expired = session.execute(_entries_insert(batch.dialect, (
        select(window.c.card_id, _kind(EntryKind.EXPIRE), -window.c.remaining,
               literal(0, BigInteger), window.c.after, actor,
               literal("expire:") + cast(window.c.id, String), created)
        .where(window.c.expiring)
        .order_by(window.c.id))), params).all()
    if expired:
        entry = ENTRIES.alias("entry")
        session.execute(
            dbutil.INSERT[batch.dialect](CONSUMPTIONS)
            .from_select(["entry_id", "lot_id", "points"], (
                select(entry.c.id, LOTS.c.id, LOTS.c.remaining)
                .select_from(LOTS.join(entry, and_(entry.c.card_id == LOTS.c.card_id,
                                                   entry.c.idempotency_key
                                                   == _key("expire:"))))
                .where(batch.lots(due.expire))))
            .on_conflict_do_nothing(index_elements=["entry_id", "lot_id"]),
            params)
    # Each card once: its balance and lifetime points, its tier, the change bump.
    totals = (
        select(LOTS.c.card_id, func.sum(_points(due.release)).label("released"),
               func.sum(_points(due.expire)).label("expired"))
        .where(batch.lots(due.any))
        .group_by(LOTS.c.card_id)
        .subquery("totals"))
    lifetime = CARDS.c.lifetime_points + totals.c.released
    reached = (select(Tier.id).where(Tier.program_id == CARDS.c.program_id,
                                     Tier.threshold <= lifetime)
               .order_by(Tier.threshold.desc()).limit(1).scalar_subquery())
    session.execute(
        update(CARDS).where(CARDS.c.id == totals.c.card_id)
        .values(balance=CARDS.c.balance + totals.c.released - totals.c.expired,
                lifetime_points=lifetime,
                tier_id=case((totals.c.released > 0, reached), else_=CARDS.c.tier_id),
                # The pass's Last-Modified runs on the real clock (as a posting's); only the
                # entries follow ``as_of``, which may be another time (tests, --as-of).
                **changes.bump(timeutil.utcnow())),
        params)
    # The lots, last: the statements above read them as they were.
    reminding = due.remind
    lots = session.execute(
        update(LOTS).where(batch.lots(due.any))
        .values(pending=case((due.release, false()), else_=LOTS.c.pending),
                remaining=case((due.expire, 0), else_=LOTS.c.remaining),
                reminded_at=case((reminding, literal(as_of, LOTS.c.reminded_at.type)),
                                 else_=LOTS.c.reminded_at))
        .returning(LOTS.c.card_id, LOTS.c.reminded_at, LOTS.c.remaining, LOTS.c.expires_at),
        params).all()
    reminded = [int(card) for card, at, _left, _expires in lots if at == as_of]
    changed = {int(card) for card, *_rest in lots}
    if changed:
        changes.announce(select(CARDS.c.id).where(
            _among(CARDS.c.id, batch.dialect, sorted(changed), "changed")))
        _emit_webhooks(changed, [(EntryKind.RELEASE, row) for row in released]
                       + [(EntryKind.EXPIRE, row) for row in expired],
                       [row for row in lots if row[1] == as_of], as_of)
    return Done(released=len(released),
                points_released=sum(int(row[1]) for row in released),
                expired=len(expired),
                points_expired=-sum(int(row[1]) for row in expired),
                reminded=len(set(reminded)), lots_reminded=len(reminded))


def _emit_webhooks(card_ids: set[int], entries: list[tuple[EntryKind, Any]],
                   reminded_lots: list[Any], as_of: datetime) -> None:
    """The batch's webhook events, in its transaction: ``card.balance_changed`` for each
    release and expiry entry (its cause: the clock), and ``points.expiring`` for each card
    reminded of points that expire soon. Only the cards of programs with an enabled webhook
    endpoint are looked at (one query; none when no program has one)."""
    cards = {row.id: row for row in db.session.execute(
        select(CARDS.c.id, CARDS.c.program_id, CARDS.c.serial_number, CARDS.c.balance)
        .where(CARDS.c.id.in_(sorted(card_ids)),
               webhooks.any_endpoint_condition(CARDS.c.program_id)))}
    if not cards:
        return
    listening: dict[tuple[int, str], bool] = {}
    for kind, (card_id, points, entry_id, balance_after) in entries:
        card = cards.get(int(card_id))
        if card is not None:
            webhooks.emit(card.program_id, webhooks.CARD_BALANCE_CHANGED, {
                "card": {"serial_number": card.serial_number, "balance": card.balance},
                "entry": {"id": entry_id, "kind": str(kind), "points": int(points),
                          "pending_points": -int(points) if kind is EntryKind.RELEASE else 0,
                          "balance_after": int(balance_after), "created_at": as_of.isoformat(),
                          "amount": None, "currency": None},
                "cause": {"kind": str(kind), "actor": CLOCK_ACTOR, "reference": None,
                          "reason": None},
            }, card_serial=card.serial_number, listening=listening)
    expiring: dict[int, list[tuple[int, datetime]]] = {}
    for card_id, _at, left, expires_at in reminded_lots:
        if int(card_id) in cards and left > 0 and expires_at is not None:
            expiring.setdefault(int(card_id), []).append((int(left), expires_at))
    for card_id, lots in expiring.items():
        card = cards[card_id]
        lots.sort(key=lambda lot: lot[1])
        webhooks.emit(card.program_id, webhooks.POINTS_EXPIRING, {
            "card": {"serial_number": card.serial_number, "balance": card.balance},
            "points": sum(points for points, _ in lots),
            "first_expires_at": lots[0][1].isoformat(),
            "lots": [{"points": points, "expires_at": at.isoformat()} for points, at in lots],
        }, card_serial=card.serial_number, listening=listening)


@dataclass(frozen=True)
class Done:
    """What one batch did."""

    released: int
    points_released: int
    expired: int
    points_expired: int
    reminded: int
    lots_reminded: int


# --- The schedule -----------------------------------------------------------------------

TICK_KEY = "tick"
DEFAULT_INTERVAL = 300.0


def interval(config: Any) -> float:
    """``POINTPASS_TICK_INTERVAL`` in seconds (default 300; 0 turns the schedule off)."""
    value = config.get("TICK_INTERVAL", DEFAULT_INTERVAL)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigError(f"POINTPASS_TICK_INTERVAL must be a number of seconds (0 or more), "
                         f"not {value!r}")
    return seconds


def start_scheduler(app: Any) -> Any:
    """Submit a tick as a coalesced background job every ``POINTPASS_TICK_INTERVAL``
    seconds (``pointpass worker``, or the web process when jobs run in-process). Returns the
    started thread, or None when the interval is 0."""
    from app import background

    seconds = interval(app.config)
    if seconds == 0:
        return None
    scheduler = background.Sweeper(app, scheduled, TICK_KEY, seconds)
    scheduler.start()
    return scheduler

