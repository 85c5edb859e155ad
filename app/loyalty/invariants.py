"""The points store's invariants, checked in the database (``pointpass check-ledger``).

For every card: ``balance`` = the sum of its entries' ``points`` = the remaining points of
its lots that are not pending; the sum of its entries' ``pending_points`` = the remaining
points of its pending lots. For every lot: ``remaining`` = ``points`` - what consumptions
took from it, and 0 <= ``remaining`` <= ``points``. Every consumption belongs to a debit
entry of the lot's own card, and a debit's consumptions add up to what it took
(``-(points + pending_points)``). A card's ``last_visit_at`` is the latest ``created_at``
of its visits (earn and redeem entries), None without one. See docs/loyalty-engine.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db
from app.loyalty.models import Card, EntryKind, LedgerEntry, LotConsumption, PointLot

CARDS = Card.__table__
ENTRIES = LedgerEntry.__table__
LOTS = PointLot.__table__
CONSUMPTIONS = LotConsumption.__table__
VISITS = (EntryKind.EARN, EntryKind.REDEEM)


def violations(card_ids: Iterable[int] | None = None) -> list[str]:
    """What breaks the invariants, one line each (empty: all hold), for every card or the
    cards ``card_ids``. Reads in the current session (needs an application context); a
    transaction it began for that is ended (on SQLite it would hold the write lock)."""
    ids = None if card_ids is None else sorted({int(i) for i in card_ids})
    if ids == []:
        return []
    began = not db.session().in_transaction()
    try:
        return [*_card_sums(ids), *_lot_remainders(ids), *_consumptions(ids),
                *_last_visits(ids)]
    finally:
        if began:
            db.session.rollback()


def _only(column: Any, ids: list[int] | None) -> ColumnElement[bool] | None:
    return None if ids is None else column.in_(ids)


def _where(query: Any, condition: ColumnElement[bool] | None) -> Any:
    return query if condition is None else query.where(condition)


def _card_sums(ids: list[int] | None) -> list[str]:
    entries = _where(
        select(ENTRIES.c.card_id, func.sum(ENTRIES.c.points).label("points"),
               func.sum(ENTRIES.c.pending_points).label("pending")),
        _only(ENTRIES.c.card_id, ids),
    ).group_by(ENTRIES.c.card_id).subquery()
    lots = _where(
        select(LOTS.c.card_id,
               func.sum(case((LOTS.c.pending, 0), else_=LOTS.c.remaining)).label("available"),
               func.sum(case((LOTS.c.pending, LOTS.c.remaining), else_=0)).label("pending")),
        _only(LOTS.c.card_id, ids),
    ).group_by(LOTS.c.card_id).subquery()
    entry_points = func.coalesce(entries.c.points, 0)
    entry_pending = func.coalesce(entries.c.pending, 0)
    available = func.coalesce(lots.c.available, 0)
    pending = func.coalesce(lots.c.pending, 0)
    query = _where(
        select(CARDS.c.id, CARDS.c.serial_number, CARDS.c.balance, entry_points, entry_pending,
               available, pending)
        .select_from(CARDS.outerjoin(entries, entries.c.card_id == CARDS.c.id)
                     .outerjoin(lots, lots.c.card_id == CARDS.c.id))
        .where(or_(CARDS.c.balance != entry_points, CARDS.c.balance != available,
                   entry_pending != pending, CARDS.c.balance < 0)),
        _only(CARDS.c.id, ids),
    ).order_by(CARDS.c.id)
    return [
        f"card {card_id} ({serial}): balance {balance}, entries' points {points}, "
        f"available lots {lots_available}; entries' pending points {points_pending}, "
        f"pending lots {lots_pending}"
        for card_id, serial, balance, points, points_pending, lots_available, lots_pending
        in db.session.execute(query)
    ]


def _lot_remainders(ids: list[int] | None) -> list[str]:
    consumed_by_lot = (select(CONSUMPTIONS.c.lot_id, func.sum(CONSUMPTIONS.c.points)
                              .label("consumed"))
                       .group_by(CONSUMPTIONS.c.lot_id).subquery())
    consumed = func.coalesce(consumed_by_lot.c.consumed, 0)
    query = _where(
        select(LOTS.c.id, LOTS.c.card_id, LOTS.c.points, LOTS.c.remaining, consumed)
        .select_from(LOTS.outerjoin(consumed_by_lot, consumed_by_lot.c.lot_id == LOTS.c.id))
        .where(or_(LOTS.c.remaining != LOTS.c.points - consumed, LOTS.c.remaining < 0,
                   LOTS.c.remaining > LOTS.c.points)),
        _only(LOTS.c.card_id, ids),
    ).order_by(LOTS.c.id)
    return [
        f"lot {lot_id} of card {card_id}: {points} points, {remaining} remaining, "
        f"{taken} consumed"
        for lot_id, card_id, points, remaining, taken in db.session.execute(query)
    ]


def _consumptions(ids: list[int] | None) -> list[str]:
    found = []
    # A consumption of a lot of another card, or by an entry that is not a debit.
    stray = _where(
        select(CONSUMPTIONS.c.entry_id, CONSUMPTIONS.c.lot_id, ENTRIES.c.card_id,
               LOTS.c.card_id, ENTRIES.c.kind)
        .select_from(CONSUMPTIONS.join(ENTRIES, ENTRIES.c.id == CONSUMPTIONS.c.entry_id)
                     .join(LOTS, LOTS.c.id == CONSUMPTIONS.c.lot_id))
        .where(or_(ENTRIES.c.card_id != LOTS.c.card_id,
                   and_(ENTRIES.c.points >= 0, ENTRIES.c.pending_points >= 0))),
        _only(ENTRIES.c.card_id, ids),
    ).order_by(CONSUMPTIONS.c.entry_id, CONSUMPTIONS.c.lot_id)
    for entry_id, lot_id, entry_card, lot_card, kind in db.session.execute(stray):
        found.append(f"entry {entry_id} ({kind}, card {entry_card}) consumed lot {lot_id} "
                     f"of card {lot_card}" + ("" if entry_card != lot_card else
                                             ", but it is not a debit"))
    # A debit whose consumptions do not add up to what it took.
    taken_by_entry = (select(CONSUMPTIONS.c.entry_id,
                             func.sum(CONSUMPTIONS.c.points).label("taken"))
                      .group_by(CONSUMPTIONS.c.entry_id).subquery())
    took = -(ENTRIES.c.points + ENTRIES.c.pending_points)
    mismatched = _where(
        select(ENTRIES.c.id, ENTRIES.c.card_id, ENTRIES.c.kind, took, taken_by_entry.c.taken)
        .select_from(ENTRIES.join(taken_by_entry, taken_by_entry.c.entry_id == ENTRIES.c.id))
        .where(taken_by_entry.c.taken != took),
        _only(ENTRIES.c.card_id, ids),
    ).order_by(ENTRIES.c.id)
    for entry_id, card_id, kind, took_points, taken in db.session.execute(mismatched):
        found.append(f"entry {entry_id} ({kind}, card {card_id}) took {took_points} points "
                     f"but its lot consumptions add up to {taken}")
    return found


def _last_visits(ids: list[int] | None) -> list[str]:
    visits = (select(ENTRIES.c.card_id, func.max(ENTRIES.c.created_at).label("latest"))
              .where(ENTRIES.c.kind.in_(VISITS)).group_by(ENTRIES.c.card_id).subquery())
    query = _where(
        select(CARDS.c.id, CARDS.c.serial_number, CARDS.c.last_visit_at, visits.c.latest)
        .select_from(CARDS.outerjoin(visits, visits.c.card_id == CARDS.c.id))
        .where(or_(and_(CARDS.c.last_visit_at.is_(None), visits.c.latest.is_not(None)),
                   and_(CARDS.c.last_visit_at.is_not(None), visits.c.latest.is_(None)),
                   CARDS.c.last_visit_at != visits.c.latest)),
        _only(CARDS.c.id, ids),
    ).order_by(CARDS.c.id)
    return [
        f"card {card_id} ({serial}): last visit {last_visit}, latest visit entry {latest}"
        for card_id, serial, last_visit, latest in db.session.execute(query)
    ]
