"""``GET /metrics``: Prometheus text that its own parser reads, counts that move with what the
service does, backlogs read at scrape time, the optional token, and under gunicorn the counts
of every worker in one scrape."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_migrate import upgrade
from redis import Redis
from rq import Queue
from sqlalchemy import update

from app import background, create_app
from app.extensions import db
from app.outbox import drain as outbox
from app.outbox.models import OutboxEntry
from app.timeutil import utcnow
from tests.apns_server import APNsTestServer
from tests.factories import (
    REDIS_URL,
    ApiClient,
    admin_api,
    create_card,
    create_program,
    make_app,
    register_device,
)
from tests.processes import wait_until
from tests.prometheus import moved, parse, scrape, value

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_an_earn_counts_one_posting_and_its_route_not_its_serial(
        api: ApiClient, card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    path = f"/api/v1/cards/{serial}/earn"
    route = dict(route="/api/v1/cards/<serial>/earn", method="POST", status="201")
    before = scrape(api.client)

    headers = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
    assert api.post(path, json={"points": 5}, headers=headers).status_code == 201
    replayed = api.post(path, json={"points": 5}, headers=headers)
    assert replayed.headers.get("Idempotent-Replayed") == "true"  # not a new posting
    assert api.post(path, json={"points": 0}).status_code == 422  # rolled back: not one either

    after = scrape(api.client)
    earned = "pointpass_ledger_postings_total"
    assert moved(before, after, earned, kind="earn") == 1
    assert moved(before, after, "pointpass_http_requests_total", **route) == 2
    assert value(after, "pointpass_http_request_duration_seconds_count",
                 route=route["route"], method="POST") is not None
    assert not [key for key in after if any(serial in v for _, v in key[1])]
    # The scrape-time gauges: every update status, every channel, no rq queue without Redis.
    assert {value(after, "pointpass_pass_updates", status=s)
            for s in ("queued", "marking", "pushing", "done")} == {0}
    assert value(after, "pointpass_outbox_depth", channel="apple") is not None
    assert not [key for key in after if key[0] == "pointpass_rq_queue_depth"]


@pytest.fixture
def apns_app(database: Any, tmp_path: Path,
             apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    yield from make_app(database, tmp_path, **apns_app_settings)


def test_the_outbox_gauge_shows_a_pending_push_until_it_is_delivered(
        apns_app: Flask, apns: APNsTestServer) -> None:
    api = admin_api(apns_app)
    serial = create_card(api, create_program(api))["serial_number"]
    phone = register_device(apns_app, serial)
    with apns_app.app_context():
        background.dispatcher().wait()
    apns.respond(phone.token, 503, "ServiceUnavailable", times=4)  # one drain: 1 + 3 retries
    pushes = "pointpass_apns_pushes_total"
    exhausted = dict(outcome="retry_exhausted", reason="ServiceUnavailable")
    before = scrape(api.client)
    assert value(before, "pointpass_outbox_depth", channel="apple") == 0
    assert value(before, "pointpass_outbox_oldest_age_seconds", channel="apple") == 0

    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 1}).status_code == 201
    with apns_app.app_context():
        background.dispatcher().wait()
    pending = scrape(api.client)
    assert value(pending, "pointpass_outbox_depth", channel="apple") == 1
    assert (value(pending, "pointpass_outbox_oldest_age_seconds", channel="apple") or 0) > 0
    assert moved(before, pending, pushes, **exhausted) == 1

    with apns_app.app_context():
        db.session.execute(update(OutboxEntry).values(available_at=utcnow()))
        db.session.commit()
        outbox.drain()
    drained = scrape(api.client)
    assert value(drained, "pointpass_outbox_depth", channel="apple") == 0
    delivered = dict(outcome="delivered", reason="none")
    assert moved(pending, drained, pushes, **delivered) == 1


def test_pushes_skipped_without_apns_are_counted(app: Flask) -> None:
    """Development stand-in certificates and no POINTPASS_APNS_URL: nothing is sent."""
    api = admin_api(app)
    serial = create_card(api, create_program(api))["serial_number"]
    register_device(app, serial)
    with app.app_context():
        background.dispatcher().wait()
    before = scrape(api.client)
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 3}).status_code == 201
    with app.app_context():
        background.dispatcher().wait()
    after = scrape(api.client)
    assert moved(before, after, "pointpass_apns_pushes_total", outcome="skipped",
                 reason="not-configured") == 1
    assert value(after, "pointpass_outbox_depth", channel="apple") == 0


def test_the_token_is_required_when_set(database: Any, tmp_path: Path) -> None:
    token = "metrics-" + uuid.uuid4().hex
    for app in make_app(database, tmp_path, METRICS_TOKEN=token):
        client = app.test_client()
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.content_type == "application/problem+json"
        assert refused.json["type"].endswith(":unauthorized")
        assert client.get("/metrics", headers={"Authorization": f"Bearer {token}x"}
                          ).status_code == 401
        assert client.get("/metrics", headers={"Authorization": token}).status_code == 401
        scrape(client, Authorization=f"Bearer {token}")


def test_metrics_are_not_in_the_openapi_document(app: Flask) -> None:
    paths = app.test_client().get("/api/openapi.json").json["paths"]
    assert "/metrics" not in paths
    assert any(path.startswith("/api/v1/") for path in paths)


@pytest.mark.redis
def test_rq_queue_depth_and_an_unreachable_redis(database: Any, tmp_path: Path, free_port: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    queue = f"pointpass-test-{uuid.uuid4().hex[:8]}"
    try:
        for app in make_app(database, tmp_path, REDIS_URL=REDIS_URL, RQ_QUEUE=queue):
            Queue(queue, connection=Redis.from_url(REDIS_URL)).enqueue("os.getpid")
            samples = scrape(app.test_client())
            assert value(samples, "pointpass_rq_queue_depth", queue=queue) == 1
    finally:
        Queue(queue, connection=Redis.from_url(REDIS_URL)).delete(delete_jobs=True)
    for app in make_app(database, tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        samples = scrape(app.test_client())  # still answers, without the queue
        assert not [key for key in samples if key[0] == "pointpass_rq_queue_depth"]
        assert value(samples, "pointpass_outbox_depth", channel="apple") == 0
        assert "metrics: the rq queue left out" in caplog.text


# Under gunicorn: the documented configuration, two workers, one directory of counts.

GUNICORN = ["-c", "python:app.gunicorn_conf", "--workers", "2", "--threads", "2",
            "--worker-class", "gthread", "wsgi:app"]
SECRET_KEY = "metrics-test-secret-" + "m" * 32


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), ""


@pytest.mark.parametrize("directory", ["operator's", "temporary"])
def test_gunicorn_workers_add_up_in_one_scrape(tmp_path: Path, free_port: Any,
                                               directory: str) -> None:
    """With ``PROMETHEUS_MULTIPROC_DIR`` set by the operator (emptied at start, left behind),
    or without it (a temporary directory, removed at exit)."""
    database_url = f"sqlite:///{tmp_path / 'service.db'}"
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY, "ENV": "testing",
                      "TESTING": True, "INSTANCE_PATH": tmp_path / "instance"})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("POINTPASS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(POINTPASS_SECRET_KEY=SECRET_KEY, POINTPASS_DATABASE_URL=database_url,
               POINTPASS_INSTANCE_PATH=str(tmp_path / "instance"), POINTPASS_ENV="development",
               TMPDIR=str(tmp_path))
    if directory == "operator's":
        counts = tmp_path / "metrics"
        counts.mkdir()
        (counts / "counter_1.db").write_bytes(b"left by an earlier run")  # emptied at start
        env["PROMETHEUS_MULTIPROC_DIR"] = str(counts)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "gunicorn.log").open("wb") as log:
        proc = subprocess.Popen([BIN / "gunicorn", "-b", f"127.0.0.1:{port}", *GUNICORN],
                                env=env, cwd=ROOT, stdout=log, stderr=log)
    sent = 0
    lock = threading.Lock()

    def healthz() -> None:
        nonlocal sent
        for _ in range(10):
            assert _get(base + "/healthz")[0] == 200
            with lock:
                sent += 1

    def workers_that_counted() -> set[str]:
        return {path.stem.rsplit("_", 1)[1] for path in counts.glob("counter_*.db")}

    try:
        wait_until(lambda: proc.poll() is None and _reachable(base), "gunicorn to answer", 60)
        if directory == "temporary":
            (counts,) = tmp_path.glob("pointpass-metrics-*")
        assert not (counts / "counter_1.db").exists()
        ok = dict(route="/healthz", method="GET", status="200")
        status, text = _get(base + "/metrics")
        assert status == 200
        before = value(parse(text), "pointpass_http_requests_total", **ok) or 0

        def both_served() -> bool:
            threads = [threading.Thread(target=healthz) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return len(workers_that_counted()) == 2

        wait_until(both_served, "requests served by both workers", 60)
        status, text = _get(base + "/metrics")
        assert status == 200
        assert value(parse(text), "pointpass_http_requests_total", **ok) == before + sent
        # A worker killed (and marked dead by the master): its counts stay in the sum.
        os.kill(int(min(workers_that_counted())), signal.SIGKILL)
        status, text = _get(base + "/metrics")
        assert status == 200
        assert value(parse(text), "pointpass_http_requests_total", **ok) == before + sent
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert counts.exists() == (directory == "operator's")


def _reachable(base: str) -> bool:
    try:
        return _get(base + "/healthz")[0] == 200
    except OSError:
        return False
