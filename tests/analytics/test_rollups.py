"""The rollups behind the stats: days are rolled up by the periodic sweep once over (plus the
grace period), never by a posting; a rolled-up day and the days after it, added later, give
the same figures as rolling everything up again; days are the program's local days."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import delete, func, select

from app.analytics import rollup
from app.analytics.models import (
    ActivityDay,
    CardActivity,
    DayCount,
    OpenCard,
    OpenDay,
    Progress,
)
from app.extensions import db
from app.loyalty.models import Card, Program
from app.wallet import sweep
from tests.clock import FakeClock
from tests.factories import ApiClient, card_code, create_card, create_program, settle

TZ = ZoneInfo("Asia/Bangkok")
CLOCK_START = datetime(2026, 5, 4, 10, 0, tzinfo=TZ)  # a Monday morning in Bangkok
DAY1 = date(2026, 5, 4)


@pytest.fixture
def program(api: ApiClient) -> dict[str, Any]:
    return create_program(api, earn_amount=100, time_zone="Asia/Bangkok",
                          value_of_1000_points=4_000)


def _at(clock: FakeClock, moment: datetime) -> None:
    clock.advance(moment.timestamp() - clock.now())


def _earn(api: ApiClient, serial: str, amount: int) -> None:
    response = api.post(f"/api/v1/cards/{serial}/earn", json={
        "amount": amount, "currency": "IDR"})
    assert response.status_code == 201, response.json


def _stats(api: ApiClient, program: dict[str, Any], query: str = "") -> dict[str, Any]:
    response = api.get(f"/api/v1/programs/{program['id']}/stats{query}")
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def _rows(app: Flask, program_id: int) -> tuple[int, int, int, date | None]:
    with app.app_context():
        counts = tuple(db.session.scalar(select(func.count()).select_from(model).where(
            model.program_id == program_id)) for model in (DayCount, ActivityDay,
                                                            CardActivity))
        done = db.session.scalar(select(Progress.rolled_through).where(
            Progress.program_id == program_id))
        db.session.rollback()
    return (*counts, done)  # type: ignore[return-value]


def _rebuilt(app: Flask, program_id: int) -> None:
    with app.app_context():
        program = db.session.get(Program, program_id)
        assert program is not None
        rollup.rebuild(program)


def test_days_roll_up_in_the_sweep_and_later_days_add_to_them(
        app: Flask, api: ApiClient, program: dict[str, Any], clock: FakeClock) -> None:
    a, b = (create_card(api, program, name=name)["serial_number"] for name in ("A", "B"))
    _earn(api, a, 12_000)
    _earn(api, b, 30_000)
    # Posting writes no rollup rows, and the day is not over yet.
    with app.app_context():
        sweep.sweep()
    assert _rows(app, program["id"])[:3] == (0, 0, 0)

    # Ten minutes after midnight the day is still in its grace period; at half past it is
    # rolled up by the sweep.
    _at(clock, datetime(2026, 5, 5, 0, 10, tzinfo=TZ))
    with app.app_context():
        sweep.sweep()
    assert _rows(app, program["id"])[3] is None
    _at(clock, datetime(2026, 5, 5, 0, 30, tzinfo=TZ))
    with app.app_context():
        sweep.sweep()
    rolled = _rows(app, program["id"])
    assert rolled[3] == DAY1 and all(rolled[:3])

    # New entries arrive only on later days: A buys again on day 3 and redeems on day 4
    # (the stats of day 4 read days 2 and 3 rolled up then, and day 4 live).
    _at(clock, datetime(2026, 5, 6, 15, 0, tzinfo=TZ))
    _earn(api, a, 20_000)
    _at(clock, datetime(2026, 5, 7, 9, 0, tzinfo=TZ))
    response = api.post("/api/v1/redemptions", json={"code": card_code(app, a), "points": 50})
    assert response.status_code == 201, response.json
    clock.advance(60)  # ranges end before now (exclusive): a minute later
    settle(app)  # the redemption's jobs done: none writes while the stats catch up
    body = _stats(api, program, "?from=2026-05-04")
    assert _rows(app, program["id"])[3] == date(2026, 5, 6)  # caught up when asked
    figures = {name: f["value"] for name, f in body["figures"].items()}
    assert figures["points_issued"] == 120 + 300 + 200
    assert figures["points_redeemed"] == 50
    assert figures["liability_points"] == 570
    assert figures["liability_money"] == 570 * 4_000 // 1000
    assert figures["purchases"] == 3 and figures["purchase_amount"] == 62_000
    assert figures["average_purchase"] == 62_000 // 3
    assert figures["median_purchase"] == 20_000
    assert figures["active_members"] == figures["active_members_30d"] == 2
    assert figures["members_redeemed"] == 1
    assert figures["redemption_rate_members"] == 0.5
    assert figures["repeat_purchase_rate"] == 0.5  # A bought on two days, B on one
    assert figures["visits_per_member"] == 2.0  # 3 purchases and a redemption, 2 members
    assert body["series"]["periods"] == ["2026-05-04", "2026-05-05", "2026-05-06",
                                         "2026-05-07"]
    assert body["series"]["purchases"] == [2, 0, 1, 0]
    assert body["series"]["active_members"] == [2, 0, 1, 1]
    assert body["series"]["points_redeemed"] == [0, 0, 0, 50]

    # Rolled up again from scratch: the same answer.
    _rebuilt(app, program["id"])
    assert _stats(api, program, "?from=2026-05-04") == body


def test_churn_counts_who_came_before_and_not_since(
        app: Flask, api: ApiClient, program: dict[str, Any], clock: FakeClock) -> None:
    a, b, c = (create_card(api, program, name=name)["serial_number"] for name in "ABC")
    for serial in (a, b, c):
        _earn(api, serial, 10_000)  # week 1: all three
    _at(clock, CLOCK_START + timedelta(days=7))
    _earn(api, a, 10_000)  # week 2: only A, and B a day later
    _at(clock, CLOCK_START + timedelta(days=8))
    _earn(api, b, 10_000)
    _at(clock, CLOCK_START + timedelta(days=14, hours=1))
    body = _stats(api, program, "?from=2026-05-11&to=2026-05-18")
    figures = {name: f for name, f in body["figures"].items()}
    assert figures["active_members"] == {"value": 2, "previous": 3}
    assert figures["churned_members"]["value"] == 1  # C
    assert figures["churn_rate"]["value"] == pytest.approx(1 / 3)
    assert figures["repeat_purchase_rate"]["value"] == 1.0
    # CLV: net sales 20,000 × 3 earlier members / (2 active × 1 churned)
    assert figures["customer_lifetime_value"]["value"] == 20_000 * 3 // 2
    assert figures["members"] == {"value": 3, "previous": 3}
    assert figures["new_members"] == {"value": 0, "previous": 3}
    _rebuilt(app, program["id"])
    assert _stats(api, program, "?from=2026-05-11&to=2026-05-18") == body


def test_days_are_the_programs_local_days(
        app: Flask, api: ApiClient, program: dict[str, Any], clock: FakeClock) -> None:
    serial = create_card(api, program)["serial_number"]
    # 23:30 and 00:30 in Bangkok: one UTC day (16:30 and 17:30 UTC), two local days.
    _at(clock, datetime(2026, 5, 4, 23, 30, tzinfo=TZ))
    _earn(api, serial, 1_000)
    _at(clock, datetime(2026, 5, 5, 0, 30, tzinfo=TZ))
    _earn(api, serial, 2_000)
    _at(clock, datetime(2026, 5, 6, 12, 0, tzinfo=TZ))
    body = _stats(api, program, "?from=2026-05-04&to=2026-05-06")
    assert body["from"] == "2026-05-04T00:00:00+07:00"
    assert body["to"] == "2026-05-06T00:00:00+07:00"
    assert body["previous"] == {"from": "2026-05-02T00:00:00+07:00",
                                "to": "2026-05-04T00:00:00+07:00"}
    assert body["series"]["purchase_amount"] == [1_000, 2_000]

    # In another zone the days are rolled up again, in that zone's days.
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}",
                       json={"time_zone": "UTC"}).status_code == 200
    settle(app)  # the passes' update the change started
    body = _stats(api, program, "?from=2026-05-04&to=2026-05-06")
    assert body["series"]["purchase_amount"] == [3_000, 0]
    with app.app_context():
        assert db.session.get(Progress, program["id"]).time_zone == "UTC"
        db.session.rollback()


def test_rebuild_stats_takes_in_entries_written_into_rolled_up_days(
        app: Flask, api: ApiClient, clock: FakeClock) -> None:
    from app.cli.cli import cli

    program = create_program(api, earn_amount=100, time_zone="Asia/Bangkok",
                             points_expire_after_days=1)
    serial = create_card(api, program)["serial_number"]
    _earn(api, serial, 5_000)  # 50 points, expiring a day later
    _at(clock, datetime(2026, 5, 8, 1, 0, tzinfo=TZ))
    with app.app_context():
        sweep.sweep()
    assert _rows(app, program["id"])[3] == date(2026, 5, 7)
    # An operator's tick "as of" a past day writes its expiry into a day rolled up already:
    # the rollups do not see it until they are rebuilt.
    runner = app.test_cli_runner()
    as_of = datetime(2026, 5, 5, 12, 0, tzinfo=TZ).isoformat()
    assert runner.invoke(cli, ["tick", "--as-of", as_of]).exit_code == 0
    query = "?from=2026-05-04&to=2026-05-08"
    assert _stats(api, program, query)["figures"]["points_expired"]["value"] == 0
    result = runner.invoke(cli, ["rebuild-stats", "--program", program["slug"]])
    assert result.exit_code == 0, result.output
    body = _stats(api, program, query)
    assert body["figures"]["points_expired"]["value"] == 50
    assert body["series"]["points_expired"] == [0, 50, 0, 0]
    assert body["figures"]["liability_points"]["value"] == 0
    assert runner.invoke(cli, ["rebuild-stats", "--program", "no-such"]).exit_code == 2


def _without_open_day(app: Flask, program_id: int) -> None:
    with app.app_context():
        for model in (OpenCard, OpenDay):
            db.session.execute(delete(model).where(model.program_id == program_id))
        db.session.commit()


def test_the_open_day_the_sweep_rolls_up_answers_as_the_tables_do(
        app: Flask, api: ApiClient, program: dict[str, Any], clock: FakeClock) -> None:
    pid = program["id"]
    a, b, c, d = (create_card(api, program, name=name)["serial_number"]
                  for name in ("A", "B", "C", "D"))
    _earn(api, a, 12_000)
    _earn(api, b, 30_000)
    # The sweep rolls up the open day (today, Monday) up to OPEN_LAG before the clock: A's
    # and B's purchases; then A buys again, C buys and B redeems, after it.
    clock.advance(rollup.OPEN_LAG.total_seconds() + 60)
    with app.app_context():
        sweep.sweep()
        open_day = db.session.get(OpenDay, pid)
        assert open_day.day == DAY1
        assert {(row.card_id, row.activity) for row in db.session.scalars(
            select(OpenCard).where(OpenCard.program_id == pid))} == {
            (card_id, act) for card_id in _card_ids(a, b) for act in ("visit", "purchase")}
        through = open_day.through
        db.session.rollback()
    clock.advance(60)  # a pass that finds nothing new writes nothing
    with app.app_context():
        sweep.sweep()
        assert db.session.get(OpenDay, pid).through == through
        db.session.rollback()
    _earn(api, a, 20_000)
    _earn(api, c, 5_000)
    response = api.post("/api/v1/redemptions", json={"code": card_code(app, b), "points": 50})
    assert response.status_code == 201, response.json
    clock.advance(60)
    today = _stats(api, program)
    figures = {name: f["value"] for name, f in today["figures"].items()}
    assert figures["active_members"] == 3 and figures["visits"] == 5
    assert figures["purchasers"] == 3 and figures["purchases"] == 4
    assert figures["members_redeemed"] == 1
    assert figures["repeat_purchase_rate"] == 0  # A bought twice, on one day
    assert figures["expiring_90d_points"] == 0  # the program's points do not expire
    _without_open_day(app, pid)
    assert _stats(api, program) == today  # the same, every entry of today from the tables

    # Five minutes after midnight Monday is in its grace period: the sweep rolls it up as
    # the open day to its end, and Tuesday is read from the tables. A buys on Tuesday too
    # (a day after the open day counted its purchase), D for the first time.
    with app.app_context():
        sweep.sweep()
    _at(clock, datetime(2026, 5, 5, 0, 3, tzinfo=TZ))
    with app.app_context():
        sweep.sweep()
        assert db.session.get(OpenDay, pid).through == rollup.day_start(
            TZ, date(2026, 5, 5))
        assert db.session.get(Progress, pid).rolled_through is None
        db.session.rollback()
    _earn(api, a, 9_000)
    _earn(api, d, 9_000)
    clock.advance(60)
    query = "?from=2026-05-04"
    both = _stats(api, program, query)
    figures = {name: f["value"] for name, f in both["figures"].items()}
    assert figures["active_members"] == 4 and figures["purchases"] == 6
    assert figures["repeat_purchase_rate"] == 1 / 4
    assert both["series"]["active_members"] == [3, 2]
    _without_open_day(app, pid)
    assert _stats(api, program, query) == both
    # Monday rolled up (its open rows gone): still the same.
    _at(clock, datetime(2026, 5, 5, 0, 30, tzinfo=TZ))
    both = _stats(api, program, query)
    with app.app_context():
        sweep.sweep()
        assert db.session.get(Progress, pid).rolled_through == DAY1
        assert db.session.get(OpenDay, pid).day == date(2026, 5, 5)
        assert not db.session.scalar(select(func.count()).select_from(OpenCard).where(
            OpenCard.program_id == pid, OpenCard.day == DAY1))
        db.session.rollback()
    assert _stats(api, program, query) == both
    _rebuilt(app, pid)
    assert _stats(api, program, query) == both


def _card_ids(*serials: str) -> set[int]:
    return set(db.session.scalars(select(Card.id).where(Card.serial_number.in_(serials))))
