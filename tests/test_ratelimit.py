"""Rate limits: shared through Redis across processes, open when the store is down."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.auth import keys as api_keys
from tests.conftest import REDIS_URL, ApiClient, _make_app


def _apps(database: Any, tmp_path: Path, count: int, **settings: Any) -> list[Any]:
    apps = []
    for i in range(count):
        maker = _make_app(database, tmp_path, INSTANCE_PATH=tmp_path / f"instance-{i}",
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
        with apps[0][0].app_context():
            staff = api_keys.create("till", "staff")[1]
        clients = [ApiClient(app.test_client(), staff) for app, _ in apps]
        statuses = [clients[i % 2].post("/api/v1/scans", json={"code": "x"}).status_code
                    for i in range(4)]
        assert statuses == [422, 422, 422, 429]
    finally:
        for _, maker in reversed(apps):
            for _ in maker:
                pass


def test_an_unreachable_store_lets_requests_through_with_a_warning(
        database: Any, tmp_path: Path, free_port: Any, caplog: pytest.LogCaptureFixture) -> None:
    for app in _make_app(database, tmp_path, STAFF_RATE_LIMIT="1/minute",
                         RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0"):
        with app.app_context():
            staff = api_keys.create("till", "staff")[1]
        client = ApiClient(app.test_client(), staff)
        with caplog.at_level(logging.WARNING, logger="pointpass.ratelimit"):
            statuses = [client.post("/api/v1/scans", json={"code": "x"}).status_code
                        for _ in range(3)]
        assert statuses == [422, 422, 422]  # answered (the code is bad), not 500 or 429
        assert "Rate limit not checked" in caplog.text


def test_a_malformed_limit_fails_at_start_up(database: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        next(_make_app(database, tmp_path, STAFF_RATE_LIMIT="lots"))
