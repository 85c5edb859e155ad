"""Pushes are paced to what the web tier can sign (``POINTPASS_APNS_PUSH_RATE``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from app.extensions import db
from app.wallet.apple import pacing, push
from tests.apns_server import APNsTestServer
from tests.factories import REDIS_URL, admin_api, make_app, settle
from tests.wallet.apple.test_update_resume import _cards_with_phones


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fifth_of_a_second_goes_at_once_then_the_rate_holds() -> None:
    clock = FakeClock()
    pacer = pacing.Pacer(100, clock=clock)
    assert pacer.reserve(20) == 0  # the burst: 0.2 s worth (the 0.2 s just gone)
    assert pacer.reserve(10) == pytest.approx(0.0)
    assert pacer.reserve(10) == pytest.approx(0.1)  # queued behind the first 10 of the rate
    clock.now += 0.1
    assert pacer.reserve(10) == pytest.approx(0.1)
    clock.now += 60  # idle: the burst is back, no more (0.2 s owed, then this one)
    assert [pacer.reserve(20) for _ in range(3)] == pytest.approx([0.0, 0.0, 0.2])


@pytest.mark.redis
def test_workers_share_one_rate_through_redis() -> None:
    connection = redis.Redis.from_url(REDIS_URL)
    connection.delete(pacing.REDIS_KEY)
    try:
        one, two = pacing.Pacer(200, connection), pacing.Pacer(200, connection)
        waits = [pacer.reserve(100) for _ in range(4) for pacer in (one, two)]
        # 800 pushes at 200/s, 0.2 s worth at once: the last 100 wait about 3.3 s,
        # whichever worker reserves them.
        assert waits[0] == 0.0 and waits[1] == pytest.approx(0.3, abs=0.1)
        assert waits[-1] == pytest.approx(3.3, abs=0.2)
        assert waits == sorted(waits)
    finally:
        connection.delete(pacing.REDIS_KEY)


def test_the_rate_is_a_number_auto_or_zero() -> None:
    app = Flask(__name__)
    for value, rate in (("auto", None), ("AUTO", None), ("250", 250.0), ("0", 0.0), (12.5, 12.5)):
        app.config["APNS_PUSH_RATE"] = value
        assert pacing.configured_rate(app) == rate
    for bad in ("-1", "fast", "inf"):
        app.config["APNS_PUSH_RATE"] = bad
        with pytest.raises(ValueError):
            pacing.configured_rate(app)


def test_the_measured_rate_is_web_cpus_over_the_cost_of_a_fetch() -> None:
    def build_one() -> None:  # about 2 ms of CPU
        total = 0
        for i in range(40_000):
            total += i * i

    rate = pacing.measured_rate(pacing.Sample.build(build_one), cpus=2)
    one = pacing.measured_rate(pacing.Sample.build(build_one), cpus=1)
    assert 2 * one * 0.5 < rate < 2 * one * 2  # twice the CPUs, twice the rate (noisy box)
    assert 10 < one < 100_000
    # Served from the store: the cost once, plus the HTTP server's share.
    served = pacing.measured_rate(pacing.Sample.serve(build_one), cpus=1)
    assert one < served < 1 / pacing.SERVER_COST


@pytest.fixture
def paced_app(database: Any, tmp_path: Path, apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    yield from make_app(database, tmp_path, **apns_app_settings, APNS_PUSH_RATE="10")


def test_a_paced_update_pushes_no_faster_than_the_rate(paced_app: Flask,
                                                       apns: APNsTestServer) -> None:
    api = admin_api(paced_app)
    program, phones = _cards_with_phones(paced_app, api, 25)
    settle(paced_app)
    apns.reset()
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"background_color": "#123524"})
    assert response.status_code == 200, response.json
    settle(paced_app)
    times = sorted(r.time for r in apns.requests)
    assert len(times) == 25 and {r.token for r in apns.requests} == {p.token for p in phones}
    # 10 a second, 0.2 s worth at once: the last 23 take at least 2.3 s (less a slice's
    # rounding).
    assert times[-1] - times[0] >= 2.1
    assert api.get(response.json["pass_update"]).json["devices_pushed"] == 25


def test_auto_measures_the_rate_from_what_a_fetch_costs(push_app: Flask, apns: APNsTestServer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    api = admin_api(push_app)
    program, phones = _cards_with_phones(push_app, api, 2)
    settle(push_app)
    wallet = push_app.extensions["pointpass.apple"]
    before = wallet.signatures
    with caplog.at_level(logging.INFO, logger="pointpass.apple.pacing"):
        api.post(f"/api/v1/programs/{program['id']}/updates", json={})
        settle(push_app)
    [line] = [r.getMessage() for r in caplog.records if "measured" in r.getMessage()]
    with push_app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
    # Pre-built passes (the default) are served by the fast path on PostgreSQL: auto times
    # a device's two requests answered from the store. SQLite's go through the views, which
    # auto times as a pass built.
    assert ("a pre-built pass served" if postgres else "a pass built") in line, line
    # The sample's pass is the delivery's own: no pass is signed twice, and the devices'
    # fetches find theirs stored.
    assert wallet.signatures == before + 2
    for phone in phones:
        [serial] = phone.changed()
        assert phone.fetch(serial)["serialNumber"] == serial
    assert wallet.signatures == before + 2
    with push_app.app_context():
        pacer = push_app.extensions[pacing.EXTENSION]["pacer"]
        assert pacer is not None and pacer.rate > 0
        # A quarter of the lease's worth: it pre-builds (the default) before it pushes; at
        # most at the assumed pace until a delivery has run for a second.
        assert pacer.kept is None
        assert pacing.max_batch(60) == int(min(pacer.rate, pacing.UNOBSERVED_RATE) * 15)


@pytest.fixture
def views_app(database: Any, tmp_path: Path,
              apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    yield from make_app(database, tmp_path, **apns_app_settings, PASSKIT_FAST_PATH=False)


def test_auto_times_a_pass_built_when_the_views_serve_the_fetches(
        views_app: Flask, apns: APNsTestServer, caplog: pytest.LogCaptureFixture) -> None:
    """Without the fast path (``POINTPASS_PASSKIT_FAST_PATH=0``) the views answer Wallet,
    so a pre-built pass served by the fast path is not what a fetch costs."""
    api = admin_api(views_app)
    program, _ = _cards_with_phones(views_app, api, 1)
    settle(views_app)
    with caplog.at_level(logging.INFO, logger="pointpass.apple.pacing"):
        api.post(f"/api/v1/programs/{program['id']}/updates", json={})
        settle(views_app)
    [line] = [r.getMessage() for r in caplog.records if "measured" in r.getMessage()]
    assert "a pass built" in line, line


def test_a_batch_is_what_the_deliveries_keep_up_with_within_a_lease() -> None:
    """A rate the worker cannot keep up with must not size the batches: a batch still held
    when its lease ends is taken again by another worker's drain (its devices pushed twice)."""
    app = Flask(__name__)
    app.config.update(APNS_PUSH_RATE="2000", PASS_PREBUILD=True)
    pacer = pacing.Pacer(2000)
    app.extensions[pacing.EXTENSION] = {"pacer": pacer}
    with app.app_context():
        assert pacing.max_batch(60) == 1500  # 100 a second assumed: 15 s of a 60-s lease
        pacer.observe(10, 0.5)  # too short to tell
        assert pacer.kept is None
        pacer.observe(1600, 2.0)  # 800 a second kept
        assert pacing.max_batch(60) == 12_000
        pacer.observe(2400, 2.0)
        assert pacer.kept == 1000 and pacing.max_batch(60) == 15_000
        pacer.observe(50_000, 5.0)  # faster than the rate: the rate holds
        assert pacing.max_batch(60) == 30_000
        app.config["PASS_PREBUILD"] = False  # no pre-building: half the lease's worth
        assert pacing.max_batch(60) == 60_000
        app.config["APNS_PUSH_RATE"] = "0"
        app.extensions[pacing.EXTENSION] = {"pacer": None}  # not paced: no limit
        assert pacing.max_batch(60) is None


@pytest.fixture
def prebuild_app(database: Any, tmp_path: Path,
                 apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    yield from make_app(database, tmp_path, **apns_app_settings, PASS_PREBUILD=True)


def test_prebuild_signs_the_passes_before_the_push_and_fetches_find_them(
        prebuild_app: Flask, apns: APNsTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "PART", 3)  # two parts: built, pushed, built, pushed
    app = prebuild_app
    api = admin_api(app)
    program, phones = _cards_with_phones(app, api, 4)
    settle(app)
    wallet = app.extensions["pointpass.apple"]
    before = wallet.signatures
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"background_color": "#123524"})
    assert response.status_code == 200, response.json
    settle(app)
    assert wallet.signatures == before + 4  # built by the delivery, before its pushes
    for phone in phones:
        [serial] = phone.changed()
        assert phone.fetch(serial)["backgroundColor"] == "rgb(18, 53, 36)"
    assert wallet.signatures == before + 4  # the fetches signed nothing more
