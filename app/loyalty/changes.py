"""What happens to a card whenever something its passes show changes.

Every change (a ledger entry, a tier change, a reward or design change, a message, voiding)
goes through :func:`bump` or :func:`touch_cards` in the same transaction as the change itself,
and :func:`announce` writes the outbox rows that tell the wallets: one per card and registered
channel with someone to tell (:mod:`app.outbox.channels`; this module names no wallet). So a
pass's version, Last-Modified and "updated since" stamp never lag behind what it shows, and no
change goes unannounced when Redis or a worker is down.

The stamp answers Apple's "which passes changed since tag T". Sequences and clocks commit out
of order on PostgreSQL, so a change could become visible with a stamp below a tag already
handed out, and that device would never fetch it. Instead a change records its transaction id
(``pg_current_xact_id()``) and the tag handed out is the snapshot's ``xmin``: every
transaction below it has finished, so nothing can later appear under an older tag. SQLite
runs one writer at a time, so a counter does the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Text,
    bindparam,
    case,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from app import dbutil
from app.extensions import db
from app.loyalty.models import Card
from app.outbox import channels, drain
from app.outbox.channels import Channel
from app.timeutil import utcnow


def _is_postgres() -> bool:
    return _dialect() == "postgresql"


def _dialect() -> str:
    return str(db.session.get_bind().dialect.name)


def stamp_expression(dialect: str | None = None) -> Any:
    """The ``change_stamp`` for a change made by the current transaction."""
    if (dialect or _dialect()) == "postgresql":
        return cast(cast(func.pg_current_xact_id(), Text), BigInteger)
    stamps = select(func.coalesce(func.max(Card.change_stamp), 0) + 1).scalar_subquery()
    return stamps


# PostgreSQL's horizon: the oldest transaction still running when the snapshot was taken.
PG_HORIZON = select(cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text),
                         BigInteger))


def horizon() -> int:
    """The tag for "updated since": every change with a smaller stamp is visible now."""
    if _is_postgres():
        return int(db.session.execute(PG_HORIZON).scalar_one())
    return int(db.session.execute(
        select(func.coalesce(func.max(Card.change_stamp), 0) + 1)
    ).scalar_one())


def _bump_values(now: Any, seconds: Any, dialect: str | None = None) -> dict[str, Any]:
    cards = Card.__table__.c
    # Last-Modified has one-second resolution; two versions in one second still must differ.
    next_modified = case((cards.last_modified + 1 > seconds, cards.last_modified + 1),
                         else_=seconds)
    return {
        "version": cards.version + 1,
        "updated_at": now,
        "last_modified": next_modified,
        "change_stamp": stamp_expression(dialect),
    }


def bump(now: datetime) -> dict[str, Any]:
    """Column values for an ``UPDATE cards`` that records a change made at ``now``."""
    return _bump_values(now, int(now.timestamp()))


def bump_template(dialect: str) -> dict[str, Any]:
    """:func:`bump` for a statement built once: its values are the parameters ``changed_at``
    and ``changed_at_seconds``, which :func:`bump_params` gives."""
    return _bump_values(bindparam("changed_at", type_=Card.updated_at.type),
                        bindparam("changed_at_seconds", type_=BigInteger), dialect)


def bump_params(now: datetime) -> dict[str, Any]:
    return {"changed_at": now, "changed_at_seconds": int(now.timestamp())}


@lru_cache(maxsize=64)
def _announce_ids(wallets: tuple[Channel, ...], new_cards: bool) -> Any:
    """The outbox insert for a list of card ids (parameter ``ids``), built once per shape."""
    return channels.announce_statement(wallets, Card.id,
                                       Card.id.in_(bindparam("ids", expanding=True)), new_cards)


@lru_cache(maxsize=16)
def _announce_one(wallets: tuple[Channel, ...]) -> dbutil.DriverStatement:
    """The outbox insert for one card (parameter ``card_id``): every posting runs it."""
    return dbutil.DriverStatement(lambda _dialect: channels.announce_statement(
        wallets, Card.id, Card.id == bindparam("card_id")))


def announce(card_ids: Iterable[int] | Any, update_id: int | None = None, *,
             new_cards: bool = False, fields: frozenset[str] | None = None) -> int:
    """Write outbox rows for ``card_ids`` (ids, or a select of ids) on every channel that has
    someone to tell: Apple when a device registered the card, Google once its object exists
    (or, with ``new_cards``, to create it). Not committed; a drain is asked for after commit
    if any row was written. Returns the number of rows. ``fields``: what changed program-wide
    (the channels that do not show it card by card get no rows), ``None`` for the cards.
    """
    wallets = channels.active(fields)
    if not wallets:
        return 0
    params: dict[str, Any] = {"now": utcnow(), "update_id": update_id}
    if isinstance(card_ids, list | tuple | set):
        if not card_ids:
            return 0
        params["ids"] = list(card_ids)
        statement = _announce_ids(wallets, new_cards)
    else:
        statement = channels.announce_statement(wallets, Card.id,
                                                Card.id.in_(card_ids.scalar_subquery()),
                                                new_cards)
    result = db.session.connection().execute(statement, params)
    written = int(result.rowcount or 0)
    if written:
        drain.drain_after_commit()
    return written


def announce_card(tx: dbutil.DriverTransaction, card_id: int, now: datetime) -> int:
    """:func:`announce` for one card changed at ``now``, in a posting's transaction ``tx``
    (the current one: the drain it asks for waits for it to commit)."""
    wallets = channels.active()
    if not wallets:
        return 0
    written = tx.execute(_announce_one(wallets),
                         {"card_id": card_id, "now": now, "update_id": None})
    if written:
        drain.drain_after_commit()
    return written


def touch_cards(where: ColumnElement[bool], update_id: int | None = None, *,
                fields: frozenset[str] | None = None, **values: Any) -> int:
    """Record a change on every card matching ``where`` and announce it (not committed).
    ``fields``: see :func:`announce`. For a program's every card, see
    :func:`app.loyalty.fanout.start`: this is one statement over all of them."""
    result = db.session.execute(
        update(Card).where(where).values(**values, **bump(utcnow()))
        .execution_options(synchronize_session=False)
    )
    announce(select(Card.id).where(where), update_id, fields=fields)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
