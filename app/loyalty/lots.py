"""Point lots: which lots a debit takes its points from, and the statements a posting runs on
them (see docs/loyalty-engine.md).

Choosing is pure (:func:`settle_due`, :func:`choose`), so the spend order is tested without a
database; :class:`app.loyalty.ledger.PostingTransaction` runs the statements, under the
card's lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Integer, bindparam, or_, select, update

from app import dbutil
from app.loyalty.models import LedgerEntry, LotConsumption, PointLot

_NEVER = datetime.max.replace(tzinfo=None)


@dataclass
class OpenLot:
    """A lot with points left, as a posting reads it under the card's lock."""

    id: int
    remaining: int
    pending: bool
    available_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class Take:
    """Points a debit takes from one lot."""

    lot: OpenLot
    points: int


def spend_key(lot: OpenLot) -> tuple[bool, datetime, datetime, int]:
    """Soonest expiry first (lots that never expire last), then oldest, then lot id."""
    expires = lot.expires_at.replace(tzinfo=None) if lot.expires_at else _NEVER
    return (lot.expires_at is None, expires, lot.available_at, lot.id)


def settle_due(lots: Iterable[OpenLot], now: datetime) -> tuple[list[OpenLot], list[OpenLot]]:
    """The pending lots due for release at ``now``, and the available lots (after those
    releases) past their expiry, each in lot order."""
    release = [lot for lot in lots if lot.pending and lot.available_at <= now]
    expire = [lot for lot in lots if lot.remaining > 0 and lot.expires_at is not None
              and lot.expires_at <= now and (not lot.pending or lot in release)]
    return sorted(release, key=lambda lot: lot.id), sorted(expire, key=lambda lot: lot.id)


def choose(lots: Sequence[OpenLot], points: int, *, first: Sequence[int] = (),
           spend_from_balance: bool = True) -> list[Take]:
    """What to take for a debit of ``points``: first from the lots whose ids are in ``first``
    (pending or not, in that order), then, when ``spend_from_balance``, from available lots
    in spend order. The takes add up to less than ``points`` when the lots hold less."""
    takes: list[Take] = []
    left = points
    by_id = {lot.id: lot for lot in lots}
    preferred = [by_id[i] for i in first if i in by_id]
    rest = sorted((lot for lot in lots if not lot.pending and lot.id not in set(first)),
                  key=spend_key) if spend_from_balance else []
    for lot in [*preferred, *rest]:
        if left <= 0:
            break
        taken = min(lot.remaining, left)
        if taken > 0:
            takes.append(Take(lot, taken))
            left -= taken
    return takes


def expiry_for(available_at: datetime, expire_after_days: int | None) -> datetime | None:
    """When a lot available at ``available_at`` expires under the program's setting."""
    return None if expire_after_days is None else available_at + timedelta(
        days=expire_after_days)


# The statements of postings on lots (compiled once per database; see app.dbutil).
OPEN_LOTS = dbutil.DriverStatement(lambda _dialect: select(
    PointLot.id, PointLot.remaining, PointLot.pending, PointLot.available_at,
    PointLot.expires_at,
).where(PointLot.card_id == bindparam("card_id"), PointLot.remaining > 0)
 .order_by(PointLot.id))

INSERT_LOT = dbutil.DriverStatement(
    lambda dialect: dbutil.INSERT[dialect](PointLot.__table__).returning(PointLot.id),
    ["card_id", "entry_id", "points", "remaining", "pending", "available_at", "expires_at",
     "reminded_at", "created_at"])


def _take(_dialect: str) -> object:
    lots = PointLot.__table__
    taken = bindparam("taken", type_=BigInteger)
    return (update(lots).where(lots.c.id == bindparam("lot_id"), lots.c.remaining >= taken)
            .values(remaining=lots.c.remaining - taken))


TAKE = dbutil.DriverStatement(_take)


def _take_and_record(dialect: str) -> object:
    """On PostgreSQL, :data:`TAKE` and :data:`INSERT_CONSUMPTION` in one statement (a round
    trip fewer per lot a spend takes from): the consumption is inserted from the lot the guarded
    update returned, so it writes one row, or none when the lot holds too little."""
    if dialect != "postgresql":
        return None
    lots = PointLot.__table__
    taken = bindparam("taken", type_=BigInteger)
    took = (update(lots).where(lots.c.id == bindparam("lot_id"), lots.c.remaining >= taken)
            .values(remaining=lots.c.remaining - taken).returning(lots.c.id).cte("took"))
    return LotConsumption.__table__.insert().from_select(
        ["entry_id", "lot_id", "points"],
        select(bindparam("entry_id", type_=Integer), took.c.id, taken))


TAKE_AND_RECORD = dbutil.DriverStatement(_take_and_record)
RELEASE = dbutil.DriverStatement(lambda _dialect: update(PointLot.__table__).where(
    PointLot.__table__.c.id == bindparam("lot_id"), PointLot.__table__.c.pending)
    .values(pending=False))
INSERT_CONSUMPTION = dbutil.DriverStatement(
    lambda dialect: dbutil.INSERT[dialect](LotConsumption.__table__),
    ["entry_id", "lot_id", "points"])
# What a debit took, with each lot's expiry: a reversal of the debit gives them back.
CONSUMED_BY = dbutil.DriverStatement(lambda _dialect: select(
    LotConsumption.points, PointLot.expires_at,
).join(PointLot, PointLot.id == LotConsumption.lot_id)
 .where(LotConsumption.entry_id == bindparam("entry_id")).order_by(PointLot.id))
# The lots of a purchase: its earn's and those of the rule awards on it.
PURCHASE_LOTS = dbutil.DriverStatement(lambda _dialect: select(PointLot.id).join(
    LedgerEntry, LedgerEntry.id == PointLot.entry_id,
).where(or_(LedgerEntry.id == bindparam("entry_id"),
            LedgerEntry.purchase_id == bindparam("entry_id")))
 .order_by(PointLot.id))
