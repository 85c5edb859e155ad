"""Point lots: which lots a debit takes from (pure), and the lots postings leave behind, through
the API, on SQLite and PostgreSQL, with the app's clock moved by the test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.loyalty.lots import OpenLot, choose, settle_due
from app.loyalty.models import Card, EntryKind, LedgerEntry, LotConsumption, PointLot, Program
from tests.clock import FakeClock
from tests.factories import ApiClient, card_code, create_card

DAY = 86_400.0
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CLOCK_START = T0  # where this module's fake clock starts (tests/loyalty/conftest.py)


def _lot(id: int, remaining: int, *, pending: bool = False, day: int = 0,
         expires_day: int | None = None) -> OpenLot:
    return OpenLot(id, remaining, pending, T0 + timedelta(days=day),
                   None if expires_day is None else T0 + timedelta(days=expires_day))


def test_spends_take_the_soonest_expiring_lot_first_then_the_oldest() -> None:
    lots = [_lot(1, 50, day=0), _lot(2, 40, day=1, expires_day=300),
            _lot(3, 30, day=2, expires_day=200), _lot(4, 20, day=3)]
    takes = choose(lots, 100)
    assert [(t.lot.id, t.points) for t in takes] == [(3, 30), (2, 40), (1, 30)]


def test_spends_never_take_pending_points_unless_a_purchase_s_own_lot_is_named() -> None:
    lots = [_lot(1, 10), _lot(2, 90, pending=True, day=1)]
    assert [(t.lot.id, t.points) for t in choose(lots, 50)] == [(1, 10)]
    assert [(t.lot.id, t.points) for t in choose(lots, 50, first=[2])] == [(2, 50)]
    assert [(t.lot.id, t.points) for t in choose(lots, 95, first=[2])] == [(2, 90), (1, 5)]
    assert [(t.lot.id, t.points) for t in choose(lots, 95, first=[2],
                                                 spend_from_balance=False)] == [(2, 90)]


def test_settling_releases_due_pending_lots_and_expires_lots_past_their_expiry() -> None:
    now = T0 + timedelta(days=10)
    lots = [_lot(1, 10, expires_day=10), _lot(2, 20, expires_day=11),
            _lot(3, 30, pending=True, day=10), _lot(4, 40, pending=True, day=11),
            _lot(5, 5, pending=True, day=1, expires_day=9)]
    release, expire = settle_due(lots, now)
    assert [lot.id for lot in release] == [3, 5]
    assert [lot.id for lot in expire] == [1, 5]


def _settings(app: Any, program: dict[str, Any], **values: Any) -> None:
    with app.app_context():
        row = db.session.get(Program, program["id"])
        for name, value in values.items():
            setattr(row, name, value)
        db.session.commit()


def _lots(app: Any, serial: str) -> list[tuple[int, int, bool]]:
    """(points, remaining, pending) of the card's lots, oldest first."""
    with app.app_context():
        card_id = db.session.scalar(select(Card.id).where(Card.serial_number == serial))
        return [(lot.points, lot.remaining, lot.pending) for lot in db.session.scalars(
            select(PointLot).where(PointLot.card_id == card_id).order_by(PointLot.id))]


def _earn(api: ApiClient, serial: str, points: int) -> Any:
    response = api.post(f"/api/v1/cards/{serial}/earn", json={"points": points})
    assert response.status_code == 201, response.json
    return response.json


def test_earn_100_earn_50_redeem_120_empties_the_first_lot_and_leaves_30_of_the_second(
        app: Any, api: ApiClient, program: dict[str, Any], clock: FakeClock) -> None:
    _settings(app, program, points_expire_after_days=365)
    serial = create_card(api, program)["serial_number"]
    _earn(api, serial, 100)
    clock.advance(10 * DAY)
    _earn(api, serial, 50)
    response = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -120,
                                                                 "reason": "redeem by hand"})
    assert response.status_code == 201, response.json
    assert _lots(app, serial) == [(100, 0, False), (50, 30, False)]
    with app.app_context():
        lots = db.session.scalars(select(PointLot).order_by(PointLot.id)).all()
        assert [lot.expires_at for lot in lots] == [T0 + timedelta(days=365),
                                                    T0 + timedelta(days=375)]
        debit = db.session.scalars(select(LedgerEntry).where(
            LedgerEntry.kind == EntryKind.ADJUST, LedgerEntry.points < 0)).one()
        taken = db.session.execute(select(LotConsumption.lot_id, LotConsumption.points).where(
            LotConsumption.entry_id == debit.id).order_by(LotConsumption.lot_id)).all()
        assert [tuple(row) for row in taken] == [(lots[0].id, 100), (lots[1].id, 20)]


def test_a_spend_after_expiry_first_expires_the_lot_then_refuses_what_is_gone(
        app: Any, api: ApiClient, program: dict[str, Any], clock: FakeClock) -> None:
    _settings(app, program, points_expire_after_days=30)
    serial = create_card(api, program)["serial_number"]
    _earn(api, serial, 100)
    clock.advance(20 * DAY)
    _earn(api, serial, 40)
    clock.advance(11 * DAY)  # the first lot expired a day ago; no tick has run
    refused = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -50, "reason": "x"})
    assert refused.status_code == 409, refused.json
    assert refused.json["balance"] == 40
    # The refusal rolled back the expiry with it; the next spend that fits writes it.
    assert _lots(app, serial) == [(100, 100, False), (40, 40, False)]
    spent = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -40, "reason": "x"})
    assert spent.status_code == 201
    assert spent.json["balance"] == 0
    assert _lots(app, serial) == [(100, 0, False), (40, 0, False)]
    with app.app_context():
        kinds = [(e.kind, e.points, e.idempotency_key) for e in db.session.scalars(
            select(LedgerEntry).order_by(LedgerEntry.id))]
        lot_id = db.session.scalars(select(PointLot.id).order_by(PointLot.id)).first()
    assert kinds[-2:] == [(EntryKind.EXPIRE, -100, f"expire:{lot_id}"),
                          (EntryKind.ADJUST, -40, None)]


def test_pending_points_are_not_spendable_until_released_and_count_for_tiers_then(
        app: Any, api: ApiClient, program: dict[str, Any], clock: FakeClock) -> None:
    _settings(app, program, pending_days=7)
    serial = create_card(api, program)["serial_number"]
    earned = _earn(api, serial, 600)  # Silver is 500 lifetime points
    assert earned["balance"] == 0
    assert earned["entry"]["points"] == 0
    assert _lots(app, serial) == [(600, 600, True)]
    assert api.get(f"/api/v1/cards/{serial}").json["tier"] == "Bronze"
    refused = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -1, "reason": "x"})
    assert refused.status_code == 409
    clock.advance(7 * DAY)
    spent = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -100, "reason": "x"})
    assert spent.status_code == 201, spent.json
    assert spent.json["balance"] == 500
    assert spent.json["tier"] == "Silver"
    assert _lots(app, serial) == [(600, 500, False)]
    with app.app_context():
        entries = [(e.kind, e.points, e.pending_points) for e in db.session.scalars(
            select(LedgerEntry).order_by(LedgerEntry.id))]
    assert entries == [(EntryKind.EARN, 0, 600), (EntryKind.RELEASE, 600, -600),
                       (EntryKind.ADJUST, -100, 0)]


def test_reversing_a_redemption_gives_back_the_lots_it_took_with_their_expiry(
        app: Any, api: ApiClient, program: dict[str, Any], clock: FakeClock) -> None:
    _settings(app, program, points_expire_after_days=100)
    serial = create_card(api, program)["serial_number"]
    _earn(api, serial, 60)
    clock.advance(5 * DAY)
    _earn(api, serial, 60)
    redeemed = api.post("/api/v1/redemptions", json={  # a Coffee: 100 points
        "code": card_code(app, serial), "reward_id": program["rewards"][0]["id"]})
    assert redeemed.status_code == 201, redeemed.json
    clock.advance(DAY)
    back = api.post(f"/api/v1/redemptions/{redeemed.json['id']}/reverse", json={})
    assert back.status_code == 201, back.json
    assert _lots(app, serial) == [(60, 0, False), (60, 20, False), (60, 60, False),
                                  (40, 40, False)]
    with app.app_context():
        expiries = db.session.scalars(select(PointLot.expires_at).order_by(PointLot.id)).all()
    assert expiries[2:] == [T0 + timedelta(days=100), T0 + timedelta(days=105)]
