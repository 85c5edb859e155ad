"""One Redis client per app: every part that talks to Redis shares its pool and timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rq import Queue

from app import background, ratelimit, redisclient
from app.redisclient import redis_for
from app.wallet.apple.setup import apple_wallet
from app.wallet.google.setup import google_wallet
from tests.factories import DEV_CERTS, REDIS_URL, make_app


def _google_settings() -> dict[str, Any]:
    return {"GOOGLE_ISSUER_ID": "3388000000000000001",
            "GOOGLE_SERVICE_ACCOUNT": str(DEV_CERTS["google_service_account"])}


def test_every_user_of_redis_shares_the_apps_one_pool(sqlite_database: Any,
                                                      tmp_path: Path) -> None:
    for app in make_app(sqlite_database, tmp_path, REDIS_URL=REDIS_URL, **_google_settings()):
        connection = redis_for(app)
        assert connection is not None
        pool = connection.connection_pool
        with app.app_context():
            store = apple_wallet().store  # type: ignore[union-attr]
            google_limiter = google_wallet().client().rate_limiter  # type: ignore[union-attr]
        limiter_storage = app.extensions[ratelimit.EXTENSION].storage
        assert store.redis.connection_pool is pool  # type: ignore[attr-defined]
        assert google_limiter.redis.connection_pool is pool
        assert limiter_storage.storage.connection_pool is pool
        assert app.extensions[background.EXTENSION].connection.connection_pool is pool


def test_connections_time_out(sqlite_database: Any, tmp_path: Path) -> None:
    for app in make_app(sqlite_database, tmp_path, REDIS_URL=REDIS_URL):
        settings = redis_for(app).connection_pool.connection_kwargs  # type: ignore[union-attr]
        assert settings["socket_connect_timeout"] == redisclient.CONNECT_TIMEOUT_SECONDS
        assert settings["socket_timeout"] == redisclient.SOCKET_TIMEOUT_SECONDS
        assert settings["health_check_interval"] == redisclient.HEALTH_CHECK_INTERVAL_SECONDS


def test_each_app_has_its_own_pool(sqlite_database: Any, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_app(sqlite_database, tmp_path / "a", REDIS_URL=REDIS_URL)
    second = make_app(sqlite_database, tmp_path / "b", REDIS_URL=REDIS_URL)
    pools = [redis_for(next(maker)).connection_pool for maker in (first, second)]  # type: ignore[union-attr]
    assert pools[0] is not pools[1]
    for maker in (second, first):
        for _ in maker:
            pass


def test_without_redis_there_is_no_client(sqlite_database: Any, tmp_path: Path) -> None:
    for app in make_app(sqlite_database, tmp_path):
        assert redis_for(app) is None
        assert isinstance(app.extensions[ratelimit.EXTENSION].storage, ratelimit.ProcessCounters)


def test_the_workers_rq_loop_leaves_the_apps_timeouts_alone(sqlite_database: Any,
                                                           tmp_path: Path) -> None:
    # rq raised the shared client's read timeout to ~415 s in `pointpass worker`, so a hung
    # Redis held a job's pass-store or Google-limit call that long.
    for app in make_app(sqlite_database, tmp_path, REDIS_URL=REDIS_URL):
        own = redisclient.worker_client(app)
        assert own is not None
        background.Worker([Queue("pointpass-timeout-test", connection=own)], connection=own)
        assert own.connection_pool.connection_kwargs["socket_timeout"] > 60  # rq's, as before
        shared = redis_for(app).connection_pool  # type: ignore[union-attr]
        assert shared is not own.connection_pool
        assert shared.connection_kwargs["socket_timeout"] == redisclient.SOCKET_TIMEOUT_SECONDS
