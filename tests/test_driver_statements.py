"""Statements compiled once and run on the driver (app.dbutil.DriverStatement in a
DriverTransaction), on both databases: they send and return the values SQLAlchemy would, commit
or roll back as one transaction, and a transaction left open by an error is rolled back with the
app context."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import bindparam, func, insert, literal, select

from app import dbutil
from app.extensions import db
from app.loyalty.models import Card, CardStatus, EntryKind, LedgerEntry

ENTRY_COLUMNS = ["card_id", "kind", "points", "balance_after", "actor", "reference", "reason",
                 "idempotency_key", "request_fingerprint", "amount", "currency", "created_at",
                 "pending_points"]
INSERT_ENTRY = dbutil.DriverStatement(
    lambda _dialect: insert(LedgerEntry.__table__).returning(LedgerEntry.__table__.c.id),
    ENTRY_COLUMNS)
CARD = dbutil.DriverStatement(lambda _dialect: select(
    Card.id, Card.status, Card.updated_at, literal("fixed")
).where(Card.serial_number == bindparam("serial")))


def _entry(card_id: int, created_at: datetime) -> dict[str, Any]:
    return {"card_id": card_id, "kind": EntryKind.ADJUST, "points": 5, "balance_after": 5,
            "actor": "test", "reference": None, "reason": "r", "idempotency_key": None,
            "request_fingerprint": None, "amount": None, "currency": None,
            "created_at": created_at, "pending_points": 0}


def test_values_go_in_and_come_out_as_sqlalchemy_would(app: Any, card: dict[str, Any]) -> None:
    when = datetime(2026, 11, 24, 8, 30, 15, 123456, tzinfo=UTC)
    with app.app_context():
        tx = dbutil.begin_driver_transaction()
        card_id, status, updated_at, fixed = tx.first(CARD, {"serial": card["serial_number"]})
        assert status is CardStatus.ACTIVE  # the Enum's result processor ran
        assert isinstance(updated_at, datetime) and updated_at.tzinfo is not None
        assert fixed == "fixed"  # a value fixed in the statement is sent as it is
        (entry_id,) = tx.first(INSERT_ENTRY, _entry(card_id, when))
        tx.commit()

        entry = db.session.get(LedgerEntry, entry_id)
        assert entry is not None
        assert entry.kind is EntryKind.ADJUST
        assert entry.created_at == when
        # ...and SQLAlchemy's own SQL compares with what was stored (same text on SQLite).
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.created_at == when, LedgerEntry.kind == EntryKind.ADJUST)) == 1


def _entries(app: Any) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


def test_a_transaction_commits_or_rolls_back_as_one(app: Any, card: dict[str, Any]) -> None:
    before = _entries(app)
    committed: list[str] = []
    with app.app_context():
        tx = dbutil.begin_driver_transaction()
        (card_id, *_) = tx.first(CARD, {"serial": card["serial_number"]})
        tx.first(INSERT_ENTRY, _entry(card_id, datetime.now(UTC)))
        dbutil.after_commit(lambda: committed.append("told"))
        tx.rollback()
    assert _entries(app) == before and committed == []  # rolled back: nobody is told
    with app.app_context():
        tx = dbutil.begin_driver_transaction()
        tx.first(INSERT_ENTRY, _entry(card_id, datetime.now(UTC)))
        dbutil.after_commit(lambda: committed.append("told"))
        tx.commit()
    assert _entries(app) == before + 1 and committed == ["told"]


def test_a_transaction_an_error_left_open_ends_with_the_app_context(
        app: Any, card: dict[str, Any]) -> None:
    before = _entries(app)
    with pytest.raises(RuntimeError), app.app_context():
        tx = dbutil.begin_driver_transaction()
        (card_id, *_) = tx.first(CARD, {"serial": card["serial_number"]})
        tx.first(INSERT_ENTRY, _entry(card_id, datetime.now(UTC)))
        raise RuntimeError("a bug between lock and commit")
    assert tx.done
    assert _entries(app) == before
    # ...and the card is not left locked: a posting goes through at once.
    with app.app_context():
        tx = dbutil.begin_driver_transaction()
        assert tx.first(CARD, {"serial": card["serial_number"]}) is not None
        tx.commit()


def test_no_row_is_none_and_rows_come_as_a_list(app: Any, card: dict[str, Any]) -> None:
    with app.app_context():
        tx = dbutil.begin_driver_transaction()
        assert tx.first(CARD, {"serial": "no-such-card"}) is None
        rows = tx.all(CARD, {"serial": card["serial_number"]})
        assert [row[1] for row in rows] == [CardStatus.ACTIVE]
        tx.rollback()


def test_a_missing_parameter_is_an_error_not_a_null(app: Any) -> None:
    with app.app_context():
        tx = dbutil.begin_driver_transaction()
        with pytest.raises(KeyError, match="serial"):
            tx.first(CARD, {})
        tx.rollback()


def test_what_needs_sqlalchemy_at_execution_is_refused_when_built(app: Any) -> None:
    with app.app_context():
        dialect = db.engine.dialect
        # created_at has a Python default, which only SQLAlchemy's execution would run.
        with pytest.raises(ValueError, match="created_at"):
            dbutil.CompiledStatement(insert(LedgerEntry.__table__), dialect,
                               [c for c in ENTRY_COLUMNS if c != "created_at"])
        with pytest.raises(ValueError, match="expanding"):
            dbutil.CompiledStatement(select(Card.id).where(
                Card.id.in_(bindparam("ids", expanding=True))), dialect)


def test_driver_errors_come_out_as_sqlalchemys(app: Any) -> None:
    with app.app_context():
        tx = dbutil.begin_driver_transaction()
        with pytest.raises(sqlalchemy.exc.IntegrityError):  # no card 999999: foreign key
            tx.first(INSERT_ENTRY, _entry(999_999, datetime.now(UTC)))
        tx.rollback()  # and the application can go on
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 0
