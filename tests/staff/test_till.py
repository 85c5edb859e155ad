"""The till's services: amounts typed as shops write them, adding points once per tap, and
undoing one's own last action within five minutes (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from app.auth import keys as api_keys
from app.errors import IdempotencyKeyReused, InvalidCode, Unprocessable
from app.extensions import db
from app.loyalty.models import Card, EntryKind, LedgerEntry
from app.redemption import service as redemption
from app.redemption import till
from app.redemption.models import Redemption
from app.staff.actor import TillActor
from tests.clock import FakeClock
from tests.factories import card_code, create_api_key, create_program, ledger_state


@pytest.mark.parametrize(("typed", "locale", "currency", "minor"), [
    ("45.000", "id", "IDR", 4_500_000),  # 45 000 rupiah, Indonesian grouping
    ("45000", "id", "IDR", 4_500_000),
    ("45.000,50", "id", "IDR", 4_500_050),
    ("12.50", "en", "USD", 1250),
    ("1,234.50", "ms", "MYR", 123_450),
    ("1,234.5", "th", "THB", 123_450),
    ("1,234", "th", "THB", 123_400),
    (" 7 ", "en", "USD", 700),
])
def test_amounts_are_read_as_the_shop_writes_them(typed: str, locale: str, currency: str,
                                                  minor: int) -> None:
    assert till.parse_amount(typed, locale=locale, currency=currency) == minor


@pytest.mark.parametrize(("typed", "locale"), [
    ("", "en"), ("abc", "en"), ("-5", "en"), ("+5", "en"), ("0", "en"), ("0.00", "en"),
    ("1e5", "en"), ("NaN", "en"), ("Infinity", "en"), ("1_000", "en"),
    ("12.505", "en"),       # more decimals than the currency has
    ("45,000", "id"),       # 45 with three decimals in Indonesian: a typo, not 45 000
    ("4.5.000", "id"),      # grouping in the wrong place
    ("12,50", "en"),
    ("99999999999999", "en"),  # over MAX_AMOUNT minor units
    ("12", "xx"),
])
def test_other_amounts_are_refused(typed: str, locale: str) -> None:
    currency = "IDR" if locale == "id" else "USD"
    with pytest.raises(Unprocessable) as refused:
        till.parse_amount(typed, locale=locale, currency=currency)
    assert refused.value.status == 422
    assert refused.value.extra["errors"][0]["field"] == "amount"


@pytest.fixture
def funded(api: Any, card: dict[str, Any]) -> dict[str, Any]:
    """The card with 250 points (Bronze)."""
    assert api.post(f"/api/v1/cards/{card['serial_number']}/earn",
                    json={"points": 250}).status_code == 201
    return card


def _actor(app: Any, key: str, name: str) -> TillActor:
    with app.app_context():
        principal = api_keys.authenticate(key)
        assert principal is not None
        return TillActor(kind="api_key", id=principal.id, name=name)


@pytest.fixture
def alice(app: Any, keys: dict[str, str]) -> TillActor:
    return _actor(app, keys["staff"], "Alice")


@pytest.fixture
def bob(app: Any) -> TillActor:
    return _actor(app, create_api_key(app, "staff", "Bob's key"), "Bob")


def _scan(app: Any, serial: str, staff: TillActor) -> str:
    with app.app_context():
        return redemption.scan(card_code(app, serial), staff=staff).scan_id


def _card(app: Any, serial: str) -> tuple[int, int, str | None]:
    """(balance, lifetime points, tier)."""
    with app.app_context():
        card = db.session.scalar(select(Card).where(Card.serial_number == serial))
        state = (card.balance, card.lifetime_points, card.tier.name if card.tier else None)
        db.session.rollback()
        return state


def test_a_typed_amount_earns_once_per_tap(app: Any, card: dict[str, Any],
                                           alice: TillActor) -> None:
    serial = card["serial_number"]
    scan_id = _scan(app, serial, alice)
    with app.app_context():
        first = till.earn_at_till(scan_id, staff=alice, locale="id", amount="45.000",
                                  idempotency_key="tap-1")
        # The answer was lost; the page retries the same tap with the same key.
        again = till.earn_at_till(scan_id, staff=alice, locale="id", amount="45.000",
                                  idempotency_key="tap-1")
        with pytest.raises(IdempotencyKeyReused):
            till.earn_at_till(scan_id, staff=alice, locale="id", amount="46.000",
                              idempotency_key="tap-1")
        entry = db.session.get(LedgerEntry, first.entry_id)
        assert (entry.kind, entry.amount, entry.currency, entry.actor) == (
            EntryKind.EARN, 4_500_000, "IDR", alice.actor)
        db.session.rollback()
    # 1 point per 10 000 rupiah (1 000 000 minor units): 45 000 rupiah is 4 points.
    assert (first.points, first.balance, first.replayed) == (4, 4, False)
    assert (again.entry_id, again.balance, again.replayed) == (first.entry_id, 4, True)
    assert first.undo_seconds == till.UNDO_SECONDS
    assert ledger_state(app, serial) == (4, 4, 1)


def test_earning_needs_this_actors_scan_and_a_real_amount(app: Any, card: dict[str, Any],
                                                          alice: TillActor,
                                                          bob: TillActor) -> None:
    serial = card["serial_number"]
    scan_id = _scan(app, serial, alice)
    with app.app_context():
        with pytest.raises(InvalidCode):
            till.earn_at_till(scan_id, staff=bob, locale="id", points=5)
        with pytest.raises(InvalidCode):
            till.earn_at_till("forged", staff=alice, locale="id", points=5)
        with pytest.raises(Unprocessable):
            till.earn_at_till(scan_id, staff=alice, locale="id", amount="-45.000")
        with pytest.raises(Unprocessable):  # 5 000 rupiah earns no point at this rate
            till.earn_at_till(scan_id, staff=alice, locale="id", amount="5.000")
    assert ledger_state(app, serial) == (0, 0, 0)


def test_undo_an_earn_takes_back_its_points_and_tier(app: Any, card: dict[str, Any],
                                                     alice: TillActor) -> None:
    serial = card["serial_number"]
    scan_id = _scan(app, serial, alice)
    with app.app_context():
        earned = till.earn_at_till(scan_id, staff=alice, locale="en", points=600)
    assert _card(app, serial) == (600, 600, "Silver")
    with app.app_context():
        undone = till.undo_last(alice, entry_id=earned.entry_id)
        entry = db.session.get(LedgerEntry, undone.entry_id)
        assert (entry.kind, entry.points, entry.reverses_id, entry.actor) == (
            EntryKind.REVERSE, -600, earned.entry_id, alice.actor)
        assert entry.reason == "Undone at the till by Alice"
        db.session.rollback()
    assert (undone.kind, undone.balance, undone.tier, undone.undo_seconds) == (
        "undo", 0, "Bronze", None)
    assert _card(app, serial) == (0, 0, "Bronze")
    assert ledger_state(app, serial) == (0, 0, 2)

    # Twice: the last action is the undo itself.
    with app.app_context(), pytest.raises(till.AlreadyUndone) as twice:
        till.undo_last(alice)
    assert twice.value.status == 409
    with app.app_context(), pytest.raises(till.AlreadyUndone):
        till.undo_last(alice, entry_id=earned.entry_id)
    assert ledger_state(app, serial) == (0, 0, 2)


def test_undo_a_redemption_marks_it_reversed(app: Any, funded: dict[str, Any],
                                             alice: TillActor) -> None:
    serial = funded["serial_number"]
    scan_id = _scan(app, serial, alice)
    with app.app_context():
        reward_id = db.session.scalar(select(Card).where(Card.serial_number == serial)
                                      ).program.rewards[0].id
        redeemed = redemption.redeem(staff=alice, scan_id=scan_id, reward_id=reward_id)
        undone = till.undo_last(alice, entry_id=redeemed.ledger_entry_id)
        row = db.session.get(Redemption, redeemed.id)
        assert row.reversed_at is not None and row.reversal_entry_id == undone.entry_id
        entry = db.session.get(LedgerEntry, undone.entry_id)
        assert (entry.points, entry.reverses_id, entry.actor) == (
            100, redeemed.ledger_entry_id, alice.actor)
        db.session.rollback()
        with pytest.raises(till.AlreadyUndone):
            till.undo_last(alice)
    assert undone.balance == 250
    assert ledger_state(app, serial) == (250, 250, 3)


def test_undo_is_refused_for_another_actor_and_after_five_minutes(
        app: Any, funded: dict[str, Any], alice: TillActor, bob: TillActor,
        clock: FakeClock) -> None:
    serial = funded["serial_number"]
    scan_id = _scan(app, serial, alice)
    with app.app_context():
        earned = till.earn_at_till(scan_id, staff=alice, locale="en", points=10)
        with pytest.raises(till.NotYourAction) as not_bobs:
            till.undo_last(bob, entry_id=earned.entry_id)
        assert not_bobs.value.status == 409
        with pytest.raises(till.NothingToUndo):  # Bob did nothing at the till
            till.undo_last(bob)
        clock.advance(time.time() - clock() + till.UNDO_SECONDS + 1)  # the app's clock
        with pytest.raises(till.UndoTooLate) as too_late:
            till.undo_last(alice)
        assert too_late.value.status == 409
        with pytest.raises(till.UndoTooLate):
            till.undo_last(alice, entry_id=earned.entry_id)
        # Just in time.
        clock.advance(-31)
        assert till.undo_last(alice).balance == 250
    assert ledger_state(app, serial) == (250, 250, 3)


def test_undo_after_the_points_were_spent_is_refused(app: Any, card: dict[str, Any],
                                                     alice: TillActor,
                                                     api: Any) -> None:
    serial = card["serial_number"]
    scan_id = _scan(app, serial, alice)
    with app.app_context():
        till.earn_at_till(scan_id, staff=alice, locale="en", points=100)
    assert api.post(f"/api/v1/cards/{serial}/adjust",
                    json={"points": -60, "reason": "spent"}).status_code == 201
    with app.app_context(), pytest.raises(Exception) as spent:
        till.undo_last(alice)
    assert getattr(spent.value, "code", None) == "insufficient-points"
    assert ledger_state(app, serial) == (40, 40, 2)


def test_only_the_last_action_and_not_one_an_admin_reversed(app: Any, funded: dict[str, Any],
                                                             alice: TillActor,
                                                             api: Any) -> None:
    serial = funded["serial_number"]
    scan_id = _scan(app, serial, alice)
    with app.app_context():
        first = till.earn_at_till(scan_id, staff=alice, locale="en", points=10)
        reward_id = db.session.scalar(select(Card).where(Card.serial_number == serial)
                                      ).program.rewards[0].id
        redeemed = redemption.redeem(staff=alice, scan_id=scan_id, reward_id=reward_id)
        with pytest.raises(till.NotYourAction):  # not the last one any more
            till.undo_last(alice, entry_id=first.entry_id)
    # An admin reversed the redemption through the API meanwhile.
    assert api.post(f"/api/v1/redemptions/{redeemed.id}/reverse", json={}).status_code == 201
    with app.app_context(), pytest.raises(till.AlreadyUndone):
        till.undo_last(alice, entry_id=redeemed.ledger_entry_id)
    assert ledger_state(app, serial) == (260, 260, 4)


def test_the_till_names_its_program_and_location(app: Any, api: Any, program: dict[str, Any],
                                                 alice: TillActor) -> None:
    location = api.post(f"/api/v1/programs/{program['id']}/locations", json={
        "name": "Kopi Test Kemang", "latitude": -6.26, "longitude": 106.81}).json
    at_kemang = TillActor(kind="staff", id=7, name="Alice", location_id=location["id"])
    with app.app_context():
        assert till.till_place(at_kemang) == till.TillPlace(
            "Kopi Test", "#1F2937", "#FFFFFF", "#D1D5DB", location_name="Kopi Test Kemang")
        # A key has no location: the only program there is.
        assert till.till_place(alice) == till.TillPlace(
            "Kopi Test", "#1F2937", "#FFFFFF", "#D1D5DB")
    create_program(api, name="Teh Test", slug="teh-test")
    with app.app_context():
        assert till.till_place(alice) is None  # which one, the scan will tell
        assert till.till_place(at_kemang).location_name == "Kopi Test Kemang"


def test_undo_a_pending_earn_takes_back_its_pending_points(app: Any, card: dict[str, Any],
                                                           program: dict[str, Any],
                                                           alice: TillActor) -> None:
    """An earn whose points are pending (the program's pending_days) gave 0 spendable points:
    undoing it takes back the pending ones, from its own lot."""
    from app.loyalty.models import PointLot, Program

    with app.app_context():
        db.session.get(Program, program["id"]).pending_days = 3
        db.session.commit()
    serial = card["serial_number"]
    scan_id = _scan(app, serial, alice)
    with app.app_context():
        earned = till.earn_at_till(scan_id, staff=alice, locale="en", points=40)
        undone = till.undo_last(alice, entry_id=earned.entry_id)
        entry = db.session.get(LedgerEntry, undone.entry_id)
        assert (entry.kind, entry.points, entry.pending_points) == (EntryKind.REVERSE, 0, -40)
        lot = db.session.scalars(select(PointLot)).one()
        assert (lot.points, lot.remaining, lot.pending) == (40, 0, True)
        db.session.rollback()
    assert _card(app, serial) == (0, 0, "Bronze")
