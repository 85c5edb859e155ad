"""Rate limits: shared through Redis across processes, open when the store is down."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter
from redis import Redis

from app.ratelimit import EXTENSION, ProcessCounters
from tests.clock import FakeClock
from tests.factories import REDIS_URL, ApiClient, create_api_key, make_app


def _apps(database: Any, tmp_path: Path, count: int, **settings: Any) -> list[Any]:
    apps = []
    for i in range(count):
        maker = make_app(database, tmp_path, INSTANCE_PATH=tmp_path / f"instance-{i}",
                         **settings)
        apps.append((next(maker), maker))
    return apps


@pytest.mark.redis
def test_limits_are_shared_through_redis_by_every_process(database: Any,
                                                          tmp_path: Path) -> None:
    """Two app instances (two gunicorn workers) count one staff key's scans together."""
    prefix = f"pointpass-test-{uuid.uuid4().hex[:8]}"
    apps = _apps(database, tmp_path, 2, STAFF_RATE_LIMIT="3/minute", REDIS_URL=REDIS_URL,
                 RATELIMIT_KEY_PREFIX=prefix)
    try:
        staff = create_api_key(apps[0][0], "staff", "till")
        clients = [ApiClient(app.test_client(), staff) for app, _ in apps]
        statuses = [clients[i % 2].post("/api/v1/scans", json={"code": "x"}).status_code
                    for i in range(4)]
        assert statuses == [422, 422, 422, 429]
        # The window's counter lives in Redis (on the Redis server's clock): when it is gone,
        # as when the minute is over, both processes count afresh.
        with Redis.from_url(REDIS_URL) as redis:
            expired = list(redis.scan_iter(f"*{prefix}*"))
            assert expired and redis.delete(*expired) == len(expired)
        assert clients[1].post("/api/v1/scans", json={"code": "x"}).status_code == 422
    finally:
        for _, maker in reversed(apps):
            for _ in maker:
                pass


# A store of its own, or the app's Redis client (whose pool the limiter shares).
@pytest.mark.parametrize("setting", ["RATELIMIT_STORAGE_URI", "REDIS_URL"])
def test_an_unreachable_store_lets_requests_through_with_a_warning(
        database: Any, tmp_path: Path, free_port: Any, caplog: pytest.LogCaptureFixture,
        setting: str) -> None:
    for app in make_app(database, tmp_path, STAFF_RATE_LIMIT="1/minute",
                        **{setting: f"redis://127.0.0.1:{free_port()}/0"}):
        staff = create_api_key(app, "staff", "till")
        client = ApiClient(app.test_client(), staff)
        with caplog.at_level(logging.WARNING, logger="pointpass.ratelimit"):
            statuses = [client.post("/api/v1/scans", json={"code": "x"}).status_code
                        for _ in range(3)]
        assert statuses == [422, 422, 422]  # answered (the code is bad), not 500 or 429
        assert "Rate limit not checked" in caplog.text


def test_a_malformed_limit_fails_at_start_up(database: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        next(make_app(database, tmp_path, STAFF_RATE_LIMIT="lots"))


def test_process_counters_count_a_window_then_start_again() -> None:
    clock = FakeClock(start=1_700_000_000.0)
    limiter = FixedWindowRateLimiter(ProcessCounters(clock=clock))
    limit = parse("2/second")
    assert [limiter.hit(limit, "till-1") for _ in range(3)] == [True, True, False]
    assert limiter.hit(limit, "till-2")  # another key counts on its own
    stats = limiter.get_window_stats(limit, "till-1")
    assert stats.remaining == 0 and stats.reset_time == clock() + 1
    clock.advance(0.9)
    assert not limiter.hit(limit, "till-1")  # the same window
    clock.advance(0.1)
    assert limiter.hit(limit, "till-1")  # a new window


def test_process_counters_start_no_threads_and_sweep_stale_keys() -> None:
    """limits' memory:// storage starts a timer thread every 10 ms under load; this one
    drops the counters of keys no longer used inline, so memory stays bounded."""
    clock = FakeClock(start=1_700_000_000.0)
    storage = ProcessCounters(sweep_seconds=0.2, clock=clock)
    limiter = FixedWindowRateLimiter(storage)
    threads = threading.active_count()
    for i in range(500):
        limiter.hit(parse("5/second"), f"caller-{i}")
    assert threading.active_count() == threads
    assert len(storage) == 500
    clock.advance(0.5)
    limiter.hit(parse("5/second"), "caller-new")  # swept, but the windows are still open
    assert len(storage) == 501
    clock.advance(0.6)
    limiter.hit(parse("5/second"), "caller-newer")  # the sweep runs inline here
    assert len(storage) == 2  # the 500 expired ones are gone; caller-new's window is open


def test_without_redis_the_app_counts_in_process(database: Any, tmp_path: Path) -> None:
    for app in make_app(database, tmp_path):
        assert isinstance(app.extensions[EXTENSION].storage, ProcessCounters)
