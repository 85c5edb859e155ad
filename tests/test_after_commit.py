"""One after-commit hook (app.dbutil.after_commit) for the Session's transaction and a posting's
driver transaction, on both databases: a callback runs once its transaction has committed,
never when it rolls back, and a rolled-back savepoint drops nothing of the outer transaction."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app import background, dbutil
from app.errors import InsufficientPoints
from app.extensions import db
from app.loyalty import ledger
from app.loyalty.models import Card, EntryKind, LedgerEntry


def _told(ran: list[str], what: str) -> Any:
    return lambda: ran.append(what)


def _rename(serial: str, name: str) -> None:
    """A Session write (a card's row), so that a commit has something to commit."""
    card = db.session.scalar(select(Card).where(Card.serial_number == serial))
    assert card is not None
    card.authentication_token = name


def test_a_callback_runs_after_the_session_commits(app: Any, card: dict[str, Any]) -> None:
    ran: list[str] = []
    with app.app_context():
        _rename(card["serial_number"], "token-after-commit-1")
        dbutil.after_commit(_told(ran, "committed"))
        db.session.flush()
        assert ran == []  # not before the commit
        db.session.commit()
        assert ran == ["committed"]
        db.session.commit()  # once only
        assert ran == ["committed"]


def test_a_callback_is_dropped_when_the_session_rolls_back(app: Any) -> None:
    ran: list[str] = []
    with app.app_context():
        dbutil.after_commit(_told(ran, "rolled back"))  # nothing else done: still dropped
        db.session.rollback()
        db.session.commit()  # a later commit must not run it
        dbutil.after_commit(_told(ran, "committed"))
        db.session.commit()
    assert ran == ["committed"]


def test_a_rolled_back_savepoint_keeps_the_outer_transactions_callbacks(
        app: Any, card: dict[str, Any]) -> None:
    ran: list[str] = []
    with app.app_context():
        _rename(card["serial_number"], "token-outer")
        dbutil.after_commit(_told(ran, "outer"))
        savepoint = db.session.begin_nested()
        _rename(card["serial_number"], "token-savepoint")
        savepoint.rollback()
        released = db.session.begin_nested()
        dbutil.after_commit(_told(ran, "in a released savepoint"))
        released.commit()
        assert ran == []  # a released savepoint is not the commit
        db.session.commit()
    assert ran == ["outer", "in a released savepoint"]
    with app.app_context():
        token = db.session.scalar(select(Card.authentication_token).where(
            Card.serial_number == card["serial_number"]))
    assert token == "token-outer"


def test_a_key_waits_once_per_transaction(app: Any) -> None:
    ran: list[str] = []
    with app.app_context():
        for what in ("first", "second"):
            dbutil.after_commit(_told(ran, what), key="drain")
        dbutil.after_commit(_told(ran, "no key"))
        dbutil.after_commit(_told(ran, "no key"))
        db.session.commit()
        dbutil.after_commit(_told(ran, "next transaction"), key="drain")
        db.session.commit()
    assert ran == ["first", "no key", "no key", "next transaction"]


def _posting_with_callback(app: Any, serial: str, ran: list[str], *, fail: bool) -> None:
    with app.app_context(), ledger.posting(serial) as p:
        p.post(EntryKind.ADJUST, 5, actor="test", reason="after-commit test")
        dbutil.after_commit(_told(ran, "posting"))
        assert ran == []
        if fail:
            raise RuntimeError("a bug after the posting's statements")


def test_a_callback_in_a_posting_waits_for_the_posting(app: Any, card: dict[str, Any]) -> None:
    ran: list[str] = []
    with pytest.raises(RuntimeError):
        _posting_with_callback(app, card["serial_number"], ran, fail=True)
    assert ran == []  # rolled back: dropped
    _posting_with_callback(app, card["serial_number"], ran, fail=False)
    assert ran == ["posting"]
    with app.app_context():
        assert len(db.session.scalars(select(LedgerEntry.id)).all()) == 1


def test_the_posting_not_the_session_is_the_current_transaction(
        app: Any, card: dict[str, Any]) -> None:
    """While a posting is open a callback waits for it; then the Session's is current again."""
    ran: list[str] = []
    with app.app_context():
        tx = dbutil.begin_driver_transaction()
        dbutil.after_commit(_told(ran, "driver"))
        tx.rollback()
        db.session.commit()
        assert ran == []  # it belonged to the rolled-back posting, not to the Session
        dbutil.after_commit(_told(ran, "session"))
        db.session.commit()
        assert ran == ["session"]
        tx = dbutil.begin_driver_transaction()
        dbutil.after_commit(_told(ran, "driver"))
        tx.commit()
    assert ran == ["session", "driver"]


def test_a_refused_posting_drops_its_callbacks(app: Any, card: dict[str, Any]) -> None:
    ran: list[str] = []
    with app.app_context():
        with pytest.raises(InsufficientPoints), ledger.posting(card["serial_number"]) as p:
            dbutil.after_commit(_told(ran, "refused"))
            p.post(EntryKind.ADJUST, -1_000, actor="test", reason="more than the balance")
        assert p.tx.done
        db.session.commit()
    assert ran == []


def test_a_posting_left_open_by_an_error_drops_its_callbacks(
        app: Any, card: dict[str, Any]) -> None:
    ran: list[str] = []
    with pytest.raises(RuntimeError), app.app_context():
        tx = dbutil.begin_driver_transaction()
        dbutil.after_commit(_told(ran, "never"))
        raise RuntimeError("escaped before commit")
    assert tx.done and ran == []


def test_a_job_asked_for_in_a_posting_starts_after_its_commit(
        app: Any, card: dict[str, Any]) -> None:
    started: list[str] = []
    with app.app_context():
        with ledger.posting(card["serial_number"]) as p:
            background.enqueue_after_commit(started.append, "job")
            p.post(EntryKind.ADJUST, 5, actor="test", reason="a job after commit")
            background.dispatcher().wait()
            assert started == []
        background.dispatcher().wait()
    assert started == ["job"]


def test_a_statement_after_the_transaction_ended_is_refused(
        app: Any, card: dict[str, Any]) -> None:
    with app.app_context():
        with ledger.posting(card["serial_number"]) as p:
            pass
        with pytest.raises(RuntimeError, match="ended"):
            p.tier_rules()
