"""``pointpass tick``: pending points released, expired points taken, reminders, once.

Lots are made through the API (earn, redeem) on the app's clock (``CLOCK``, a fake clock the
tests move by days); the tick runs through the CLI or :func:`app.loyalty.tick.run`, and the
ledger's invariants (:func:`app.loyalty.invariants.violations`) are checked after. SQLite and
PostgreSQL; two ticks at once on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from app import background
from app.cli.cli import cli
from app.extensions import db
from app.loyalty import invariants, tick
from app.loyalty.models import Card, EntryKind, LedgerEntry, PointLot
from tests.clock import FakeClock
from tests.factories import (
    ApiClient,
    card_code,
    create_card,
    create_program,
    register_device,
    settle,
)

DAY0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CLOCK_START = DAY0  # where this module's fake clock starts (tests/loyalty/conftest.py)
ROOT = Path(__file__).resolve().parents[2]


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


def move_to(clock: FakeClock, when: datetime) -> None:
    clock.advance(when.timestamp() - clock.now())


def earn(api: ApiClient, serial: str, **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/v1/cards/{serial}/earn", json=body)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def redeem(app: Any, keys: dict[str, str], serial: str, points: int) -> dict[str, Any]:
    staff = ApiClient(app.test_client(), keys["staff"])
    response = staff.post("/api/v1/redemptions",
                          json={"code": card_code(app, serial), "points": points},
                          headers={"Idempotency-Key": f"redeem-{serial}-{points}"})
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def lots(app: Any, serial: str) -> list[tuple[int, int, bool]]:
    """The card's lots, oldest first: (points, remaining, pending)."""
    with app.app_context():
        rows = db.session.execute(
            select(PointLot.points, PointLot.remaining, PointLot.pending)
            .join(Card, Card.id == PointLot.card_id)
            .where(Card.serial_number == serial).order_by(PointLot.id)).all()
        db.session.rollback()
        return [(int(p), int(r), bool(pending)) for p, r, pending in rows]


def entries(app: Any, serial: str, kind: EntryKind | None = None) -> list[tuple[str, int, int]]:
    """The card's entries, oldest first: (kind, points, balance_after)."""
    with app.app_context():
        query = (select(LedgerEntry.kind, LedgerEntry.points, LedgerEntry.balance_after)
                 .join(Card, Card.id == LedgerEntry.card_id)
                 .where(Card.serial_number == serial).order_by(LedgerEntry.id))
        if kind is not None:
            query = query.where(LedgerEntry.kind == kind)
        rows = db.session.execute(query).all()
        db.session.rollback()
        return [(str(k.value), int(p), int(b)) for k, p, b in rows]


def card_state(app: Any, serial: str) -> tuple[int, int, int, str | None]:
    """(balance, lifetime points, version, tier) as stored."""
    with app.app_context():
        card = db.session.scalar(select(Card).where(Card.serial_number == serial))
        assert card is not None
        state = (card.balance, card.lifetime_points, card.version,
                 card.tier.name if card.tier else None)
        db.session.rollback()
        return state


def run_tick(app: Any, as_of: datetime, **options: Any) -> tick.TickReport:
    with app.app_context():
        return tick.run(as_of, **options)


def cli_tick(app: Any, as_of: datetime) -> dict[str, Any]:
    result = app.test_cli_runner().invoke(cli, ["tick", "--as-of", as_of.isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def assert_invariants_hold(app: Any) -> None:
    with app.app_context():
        assert invariants.violations() == []


def test_the_worked_example(app: Any, api: ApiClient, keys: dict[str, str],
                            clock: FakeClock) -> None:
    """Earn 100 (day 0), earn 50 (day 10), redeem 120: the day-0 lot is empty, 30 are left of
    the day-10 lot; with 365-day expiry a tick on day 366 expires nothing, on day 376 30."""
    program = create_program(api, points_expire_after_days=365)
    serial = create_card(api, program)["serial_number"]
    earn(api, serial, points=100)
    move_to(clock, day(10))
    earn(api, serial, points=50)
    assert redeem(app, keys, serial, 120)["balance"] == 30
    assert lots(app, serial) == [(100, 0, False), (50, 30, False)]

    report = cli_tick(app, day(366))
    assert (report["expired"], report["points_expired"]) == (0, 0)
    assert card_state(app, serial)[0] == 30

    report = cli_tick(app, day(376))
    assert (report["expired"], report["points_expired"]) == (1, 30)
    assert lots(app, serial) == [(100, 0, False), (50, 0, False)]
    assert card_state(app, serial)[0] == 0
    assert entries(app, serial, EntryKind.EXPIRE) == [("expire", -30, 0)]
    assert_invariants_hold(app)

    # Again, and later: nothing more.
    assert cli_tick(app, day(376))["expired"] == 0
    assert cli_tick(app, day(800))["expired"] == 0
    assert len(entries(app, serial, EntryKind.EXPIRE)) == 1
    assert_invariants_hold(app)


@pytest.mark.parametrize("batch_size", [1, 2, 10_000])
def test_lots_of_one_card_expire_in_order_with_their_balances(
        app: Any, api: ApiClient, clock: FakeClock, batch_size: int) -> None:
    program = create_program(api, points_expire_after_days=30)
    serial = create_card(api, program)["serial_number"]
    other = create_card(api, program, name="Budi")["serial_number"]
    for n, points in enumerate((10, 20, 30)):
        move_to(clock, day(n))
        earn(api, serial, points=points)
        earn(api, other, points=points + 1)
    move_to(clock, day(40))
    earn(api, serial, points=5)  # not expiring before day 70

    report = run_tick(app, day(40), batch_size=batch_size)
    assert (report.expired, report.points_expired) == (6, 60 + 63)
    assert entries(app, serial, EntryKind.EXPIRE) == [
        ("expire", -10, 55), ("expire", -20, 35), ("expire", -30, 5)]
    assert entries(app, other, EntryKind.EXPIRE) == [
        ("expire", -11, 52), ("expire", -21, 31), ("expire", -31, 0)]
    assert card_state(app, serial)[0] == 5 and card_state(app, other)[0] == 0
    with app.app_context():
        keys_made = db.session.scalars(
            select(LedgerEntry.idempotency_key).where(LedgerEntry.kind == EntryKind.EXPIRE)
            .order_by(LedgerEntry.id)).all()
        lot_ids = db.session.scalars(
            select(PointLot.id).where(PointLot.remaining == 0).order_by(PointLot.id)).all()
        db.session.rollback()
    assert sorted(keys_made) == sorted(f"expire:{lot_id}" for lot_id in lot_ids)
    assert_invariants_hold(app)


def test_pending_points_are_released_and_count_for_the_tier(
        app: Any, api: ApiClient, clock: FakeClock) -> None:
    program = create_program(api, pending_days=7)
    serial = create_card(api, program)["serial_number"]
    earn(api, serial, amount=600_000_000, currency="IDR")  # 600 points, pending
    assert lots(app, serial) == [(600, 600, True)]
    assert card_state(app, serial)[:2] == (0, 0)
    assert_invariants_hold(app)

    assert run_tick(app, day(6)).released == 0
    assert lots(app, serial) == [(600, 600, True)]

    report = run_tick(app, day(7))
    assert (report.released, report.points_released) == (1, 600)
    assert lots(app, serial) == [(600, 600, False)]
    balance, lifetime, _version, tier = card_state(app, serial)
    assert (balance, lifetime, tier) == (600, 600, "Silver")
    assert entries(app, serial, EntryKind.RELEASE) == [("release", 600, 600)]
    assert_invariants_hold(app)

    assert run_tick(app, day(8)).released == 0
    assert card_state(app, serial)[:2] == (600, 600)


def test_members_are_reminded_once_before_points_expire(
        app: Any, api: ApiClient, clock: FakeClock) -> None:
    program = create_program(api, points_expire_after_days=30, expiry_reminder_days=14)
    serial = create_card(api, program)["serial_number"]
    earn(api, serial, points=120)
    version = card_state(app, serial)[2]

    assert run_tick(app, day(15)).reminded == 0  # expires on day 30: 15 days ahead
    assert card_state(app, serial)[2] == version

    report = run_tick(app, day(16))
    assert (report.reminded, report.lots_reminded) == (1, 1)
    assert card_state(app, serial)[2] == version + 1
    with app.app_context():
        reminded_at = db.session.scalar(select(PointLot.reminded_at))
        db.session.rollback()
    assert reminded_at == day(16)

    assert run_tick(app, day(17)).reminded == 0
    assert card_state(app, serial)[2] == version + 1
    assert card_state(app, serial)[0] == 120  # a reminder takes nothing
    assert_invariants_hold(app)


def test_each_program_reminds_within_its_own_days(app: Any, api: ApiClient) -> None:
    early = create_program(api, points_expire_after_days=30, expiry_reminder_days=14)
    late = create_program(api, slug="kopi-late", points_expire_after_days=30,
                          expiry_reminder_days=3)
    told = create_card(api, early)["serial_number"]
    not_yet = create_card(api, late)["serial_number"]
    earn(api, told, points=10)
    earn(api, not_yet, points=20)
    report = run_tick(app, day(23))  # both expire on day 30: 7 days ahead
    assert (report.reminded, report.lots_reminded) == (1, 1)
    assert run_tick(app, day(27)).reminded == 1  # now the late one too
    assert run_tick(app, day(28)).reminded == 0


def test_a_program_without_reminders_reminds_nobody(app: Any, api: ApiClient) -> None:
    program = create_program(api, points_expire_after_days=30, expiry_reminder_days=0)
    serial = create_card(api, program)["serial_number"]
    earn(api, serial, points=120)
    assert run_tick(app, day(29)).reminded == 0
    assert run_tick(app, day(30)).expired == 1


def test_the_wallets_are_told(app: Any, api: ApiClient, clock: FakeClock,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An expiry is announced as a posting is: an outbox row for the iPhone that holds the
    card, and a drain asked for once the batch has committed."""
    program = create_program(api, points_expire_after_days=30)
    serial = create_card(api, program)["serial_number"]
    earn(api, serial, points=120)
    register_device(app, serial)
    settle(app)
    with app.app_context():
        dispatcher = background.dispatcher()
    submitted: list[str] = []
    submit = dispatcher.submit

    def recording(func: Any, args: tuple[Any, ...], coalesce: str | None = None) -> None:
        submitted.append(coalesce or background.job_path(func))
        submit(func, args, coalesce)

    monkeypatch.setattr(dispatcher, "submit", recording)
    version = card_state(app, serial)[2]
    assert run_tick(app, day(31)).expired == 1
    assert submitted == ["outbox-drain"]
    assert card_state(app, serial)[2] == version + 1


def test_voided_cards_are_left_as_they_are(app: Any, api: ApiClient) -> None:
    program = create_program(api, points_expire_after_days=30)
    serial = create_card(api, program)["serial_number"]
    earn(api, serial, points=120)
    assert api.post(f"/api/v1/cards/{serial}/void", json={"reason": "lost"}).status_code == 200
    assert run_tick(app, day(40)).expired == 0
    assert lots(app, serial) == [(120, 120, False)]


def test_check_ledger_says_whether_the_invariants_hold(app: Any, api: ApiClient) -> None:
    program = create_program(api, points_expire_after_days=30)
    serial = create_card(api, program)["serial_number"]
    earn(api, serial, points=120)
    result = app.test_cli_runner().invoke(cli, ["check-ledger"])
    assert result.exit_code == 0, result.output
    assert "invariants hold" in result.output

    with app.app_context():  # break it behind the ledger's back
        db.session.execute(text("UPDATE point_lots SET remaining = 100"))
        db.session.commit()
    result = app.test_cli_runner().invoke(cli, ["check-ledger"])
    assert result.exit_code == 1
    assert f"({serial}): balance 120, entries' points 120, available lots 100" in result.output
    assert "lot " in result.output and "100 remaining, 0 consumed" in result.output
    with app.app_context():
        card_id = db.session.scalar(select(Card.id).where(Card.serial_number == serial))
        assert len(invariants.violations([card_id])) == 2
        assert invariants.violations([card_id + 1000]) == []


def test_the_tick_interval_setting(app: Any) -> None:
    from app.config import ConfigError

    assert tick.interval({}) == 300
    assert tick.interval({"TICK_INTERVAL": 0}) == 0
    assert tick.interval({"TICK_INTERVAL": "60"}) == 60
    for bad in ("soon", -1, float("nan"), None):
        with pytest.raises(ConfigError, match="POINTPASS_TICK_INTERVAL"):
            tick.interval({"TICK_INTERVAL": bad})
    app.config["TICK_INTERVAL"] = 0
    assert tick.start_scheduler(app) is None


def test_two_ticks_at_once_expire_and_release_once(pg_app: Any, clock: FakeClock) -> None:
    app = pg_app
    admin = _admin(app)
    program = create_program(admin, points_expire_after_days=30, pending_days=3)
    serials = [create_card(admin, program, name=f"M{n}")["serial_number"] for n in range(20)]
    for serial in serials:
        earn(admin, serial, points=40)
        earn(admin, serial, amount=90_000_000, currency="IDR")  # 90 pending points
    move_to(clock, day(1))
    for serial in serials:
        earn(admin, serial, points=7)

    with app.app_context():
        pending_lots = db.session.scalar(select(func.count()).select_from(PointLot)
                                         .where(PointLot.pending))
        db.session.rollback()
    assert pending_lots >= 20
    reports: list[tick.TickReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def one_tick(batch_size: int) -> None:
        try:
            with app.app_context():
                start.wait()
                reports.append(tick.run(day(40), batch_size=batch_size))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=one_tick, args=(size,)) for size in (3, 5, 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sum(r.released for r in reports) == pending_lots
    assert sum(r.expired for r in reports) == 60
    assert sum(r.points_expired for r in reports) == 20 * (40 + 90 + 7)
    for serial in serials:
        assert card_state(app, serial)[:2] == (0, 137)
        assert len(entries(app, serial, EntryKind.EXPIRE)) == 3
        assert len(entries(app, serial, EntryKind.RELEASE)) == pending_lots // 20
    assert_invariants_hold(app)


def _admin(app: Any) -> ApiClient:
    from tests.factories import admin_api

    return admin_api(app)


def test_the_benchmark_runs_at_a_small_size(postgres_database: Any) -> None:
    """``benchmarks/bench_tick.py --lots 20000``: its counts and invariants hold (the full
    size, 1,000,000 lots, is run by hand; see benchmarks/RESULTS.md)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_tick.py"),
                           "--lots", "20000"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["lots"] == 20000 and result["violations"] == 0
    assert result["counts_as_expected"] is True
    assert result["report"]["expired"] == 4000 and result["report"]["released"] == 4000


def test_a_tick_and_spends_at_once_expire_once(pg_app: Any, clock: FakeClock) -> None:
    """Spends settle their card first (docs/loyalty-engine.md); a tick running meanwhile
    finds those lots expired already and leaves them, and expires the others once."""
    app = pg_app
    admin = _admin(app)
    program = create_program(admin, points_expire_after_days=30)
    serials = [create_card(admin, program, name=f"M{n}")["serial_number"] for n in range(8)]
    for serial in serials:
        earn(admin, serial, points=100)  # expires on day 30
    move_to(clock, day(35))
    for serial in serials:
        earn(admin, serial, points=50)  # expires on day 65
    move_to(clock, day(40))

    errors: list[BaseException] = []
    reports: list[tick.TickReport] = []
    start = threading.Barrier(1 + len(serials))

    def spend(serial: str) -> None:
        try:
            client = ApiClient(app.test_client(), admin.key)
            start.wait()
            for n in range(5):
                response = client.post(f"/api/v1/cards/{serial}/adjust",
                                       json={"points": -1, "reason": "test"},
                                       headers={"Idempotency-Key": f"spend-{serial}-{n}"})
                assert response.status_code == 201, response.json
        except BaseException as error:
            errors.append(error)

    def one_tick() -> None:
        try:
            with app.app_context():
                start.wait()
                reports.append(tick.run(day(40), batch_size=2))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=one_tick)] + [
        threading.Thread(target=spend, args=(serial,)) for serial in serials]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    for serial in serials:
        assert entries(app, serial, EntryKind.EXPIRE)[0][:2] == ("expire", -100)
        assert len(entries(app, serial, EntryKind.EXPIRE)) == 1
        assert card_state(app, serial)[0] == 45
    assert reports[0].expired <= len(serials)
    assert_invariants_hold(app)


@pytest.mark.redis
def test_the_worker_ticks_every_tick_interval(database: Any, tmp_path: Path) -> None:
    """``pointpass worker`` runs the tick on its schedule (``POINTPASS_TICK_INTERVAL``): points
    earned 400 days ago (on the web app's clock) expire without anyone running the command."""
    from app.timeutil import utcnow
    from tests.factories import admin_api, make_worker_app
    from tests.processes import start_worker, wait_until

    for app in make_worker_app(database, tmp_path, TICK_INTERVAL=0.5):
        app.config["CLOCK"] = FakeClock(start=(utcnow() - timedelta(days=400)).timestamp())
        api = admin_api(app)
        program = create_program(api, points_expire_after_days=30)
        serial = create_card(api, program)["serial_number"]
        earn(api, serial, points=120)
        worker = start_worker(app.config["TEST_WORKER_ENV"])
        try:
            wait_until(lambda app=app, serial=serial: card_state(app, serial)[0] == 0,
                       "the scheduled tick", timeout=120)
        finally:
            worker.terminate()
            worker.wait(10)
        assert entries(app, serial, EntryKind.EXPIRE) == [("expire", -120, 0)]


def test_the_tick_awards_birthdays_once(app: Any, api: ApiClient) -> None:
    """``pointpass tick`` awards the birthday rules due that day (app.loyalty.rules), once."""
    program = create_program(api, slug="hbd", time_zone="Asia/Bangkok")
    response = api.post(f"/api/v1/programs/{program['id']}/rules",
                        json={"kind": "birthday", "name": "Happy birthday", "points": 30})
    assert response.status_code == 201, response.json
    serial = create_card(api, program, birthday="1994-12-03")["serial_number"]
    # 3 December in Bangkok begins at 17:00 UTC on the 2nd.
    assert cli_tick(app, datetime(2026, 12, 2, 16, 59, tzinfo=UTC))["birthdays"] == 0
    assert cli_tick(app, datetime(2026, 12, 2, 17, 0, tzinfo=UTC))["birthdays"] == 1
    assert cli_tick(app, datetime(2026, 12, 3, 9, 0, tzinfo=UTC))["birthdays"] == 0
    assert card_state(app, serial)[0] == 30
    assert_invariants_hold(app)
