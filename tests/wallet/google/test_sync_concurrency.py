"""Google Wallet sync under concurrency: jobs for one card never interleave their sends.

Google allows three notifying updates per object per 24 hours, and applies updates in the
order they reach it; so the object must never receive an older balance after a newer one, and
the notifications counted must be the ones sent. These tests run the real jobs (in-process
threads, or several ``pointpass worker`` processes on PostgreSQL and Redis) against the local
Google test server.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq import Queue, Worker

from app import background
from app.extensions import db
from app.outbox import drain as outbox
from tests.factories import (
    REDIS_URL,
    admin_api,
    create_card,
    create_program,
    make_app,
    make_worker_app,
    settle,
)
from tests.google_server import GoogleWalletTestServer, RecordedRequest
from tests.processes import wait_until
from tests.wallet.google.conftest import ISSUER_ID, google_settings, new_google_card

BIN = Path(sys.executable).parent
NOTIFY = "NOTIFY_ON_UPDATE"


def _pending(app: Flask) -> int:
    with app.app_context():
        count = outbox.pending()
        db.session.rollback()
        return count


def _object_writes(server: GoogleWalletTestServer, object_id: str) -> list[RecordedRequest]:
    """The object's successful inserts and patches, in the order the server acted on them."""
    writes = [r for r in server.api_requests()
              if r.status == 200 and r.operation in ("insert", "patch", "update")
              and (r.resource_id == object_id)]
    return sorted(writes, key=lambda r: r.applied)


def _balance(request: RecordedRequest) -> int | None:
    points = (request.body or {}).get("loyaltyPoints")
    return None if points is None else int(points["balance"]["int"])


def test_an_older_version_is_never_sent_after_a_newer_one(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    """Google is slow with one patch while the next change's job runs: that job must not
    overtake it, and the object ends with the newest balance."""
    app = google_app
    api, _, serial, object_id = new_google_card(app)
    earn = f"/api/v1/cards/{serial}/earn"
    assert api.post(earn, json={"points": 10}).status_code == 201
    settle(app)

    held = wallet_server.hold("patch", object_id)
    assert api.post(earn, json={"points": 20}).status_code == 201  # its job's patch is held
    assert held.arrived.wait(20), "the patch for balance 30 never reached Google"

    # The next change, from another client (on SQLite it waits for the database's writer).
    answers: list[int] = []
    second = threading.Thread(target=lambda: answers.append(
        api.as_(api.key).post(earn, json={"points": 30}).status_code))
    second.start()
    # Give its job the time to overtake the held patch (it does at once when nothing stops it).
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and len(_object_writes(wallet_server, object_id)) < 3:
        time.sleep(0.02)
    held.release()
    second.join(30)
    assert answers == [201]
    settle(app)
    wait_until(lambda: _pending(app) == 0, "the outbox to drain")

    balances = [b for b in map(_balance, _object_writes(wallet_server, object_id))
                if b is not None]
    assert balances == sorted(balances), f"an older balance reached Google later: {balances}"
    assert balances[-1] == 60
    assert wallet_server.objects[object_id]["loyaltyPoints"]["balance"]["int"] == 60


def test_a_notifying_update_google_may_have_carried_out_is_counted(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    """A notifying patch that ends in 5xx may have reached the holder: it uses up one of the
    three notifications, so the next two changes notify and the third is silent."""
    app = google_app
    api, _, serial, object_id = new_google_card(app)
    settle(app)
    wallet_server.fail("patch", object_id, 503, "backendError", times=None)
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 1}).status_code == 201
    settle(app)
    failed = [r for r in wallet_server.api_requests("patch") if r.resource_id == object_id]
    assert failed and {(r.status, r.body["notifyPreference"]) for r in failed} == {(503, NOTIFY)}
    wallet_server.clear_failures()

    for _ in range(3):
        assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 1}).status_code == 201
        settle(app)
    delivered = [r for r in _object_writes(wallet_server, object_id) if r.operation == "patch"]
    assert [(_balance(r), r.body["notifyPreference"]) for r in delivered] == [
        (2, NOTIFY), (3, NOTIFY), (4, "NOTIFICATION_SETTINGS_FOR_UPDATES_UNSPECIFIED")]


@pytest.fixture
def pg_google_app(postgres_database: Any, tmp_path: Path,
                  wallet_server: GoogleWalletTestServer) -> Iterator[Flask]:
    yield from make_app(postgres_database, tmp_path, **google_settings(wallet_server))


def test_a_sync_that_finds_its_card_busy_too_long_leaves_the_change_for_a_retry(
    pg_google_app: Flask, wallet_server: GoogleWalletTestServer,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Google is stuck on one patch longer than the next job will wait: that job gives up
    without sending, keeps its outbox row, and the retry sends the newest balance."""
    from sqlalchemy import update

    from app.outbox.models import OutboxEntry
    from app.wallet.google import sync

    app = pg_google_app
    monkeypatch.setattr(sync, "LOCK_WAIT_SECONDS", 0.2, raising=False)
    caplog.set_level("INFO", logger="pointpass.google.sync")
    api, _, serial, object_id = new_google_card(app)
    earn = f"/api/v1/cards/{serial}/earn"
    settle(app)

    held = wallet_server.hold("patch", object_id)
    assert api.post(earn, json={"points": 10}).status_code == 201
    assert held.arrived.wait(20), "the patch for balance 10 never reached Google"
    assert api.post(earn, json={"points": 20}).status_code == 201
    wait_until(lambda: "waits for another sync" in caplog.text, "the second job to give up", 10)
    assert [_balance(r) for r in _object_writes(wallet_server, object_id)] == [0]  # sent none
    held.release()
    settle(app)
    # The second job's row waits for its retry (unless the first job's drain, still running,
    # found it due already).
    wait_until(lambda: _pending(app) <= 1, "the first job to finish")
    with app.app_context():  # the retry's time has come; the periodic sweep would drain
        db.session.execute(update(OutboxEntry).values(available_at=outbox.utcnow()))
        db.session.commit()
        outbox.request_drain()
        background.dispatcher().wait()
    wait_until(lambda: _pending(app) == 0, "the retry")
    assert [_balance(r) for r in _object_writes(wallet_server, object_id)] == [0, 10, 30]
    assert wallet_server.objects[object_id]["loyaltyPoints"]["balance"]["int"] == 30


def test_a_change_while_the_new_object_is_being_created_reaches_google(
    pg_google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    """The outbox creates a new card's object after the enrolment: a change committed while
    that insert is on its way (with the older balance) must still be sent."""
    app = pg_google_app
    api = admin_api(app)
    program = create_program(api)
    api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "First"})
    with app.app_context():
        background.dispatcher().wait()  # the class exists: the next insert is the new object's

    held = wallet_server.hold("insert", None)
    serial = create_card(api, program, name="Ari")["serial_number"]
    object_id = f"{ISSUER_ID}.{serial}"
    assert held.arrived.wait(20), "the new card's object never reached Google"
    # On PostgreSQL a sync's lock does not hold up postings: this commits meanwhile.
    earned = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 40})
    assert earned.status_code == 201, earned.json
    held.release()
    settle(app)
    wait_until(lambda: _pending(app) == 0, "the outbox to drain")

    assert [_balance(r) for r in _object_writes(wallet_server, object_id)] == [0, 40]
    assert wallet_server.objects[object_id]["loyaltyPoints"]["balance"]["int"] == 40


@pytest.mark.redis
def test_the_enrolment_request_leaves_google_to_the_worker(
    rq_google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    """One way to create the object: the outbox, drained by a worker. The web request sends
    Google nothing, and the save link appears once the object exists."""
    app = rq_google_app
    api = admin_api(app)
    program = create_program(api)
    enrolled = api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Ari"})
    assert enrolled.status_code == 201, enrolled.json
    serial = enrolled.json["card"]["serial_number"]
    assert wallet_server.api_requests() == []
    assert enrolled.json["card"]["google_save_url"] is None
    assert api.get(f"/api/v1/cards/{serial}").json["google_save_url"] is None

    result = subprocess.run([BIN / "pointpass", "worker", "--burst"],
                            env=app.config["TEST_WORKER_ENV"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _pending(app) == 0
    assert f"{ISSUER_ID}.{serial}" in wallet_server.objects
    url = api.get(f"/api/v1/cards/{serial}").json["google_save_url"]
    assert url.startswith("https://pay.google.com/gp/v/save/")


# --- several rq workers on PostgreSQL -------------------------------------------------------

WORKERS = 3
CARDS = 8
EARNS = 6


@pytest.fixture
def rq_google_app(postgres_database: Any, tmp_path: Path,
                  wallet_server: GoogleWalletTestServer) -> Iterator[Flask]:
    """The app on PostgreSQL with jobs on a fresh rq queue; ``TEST_WORKER_ENV`` runs
    ``pointpass worker`` against the same database, queue and Google test server."""
    yield from make_worker_app(postgres_database, tmp_path, **google_settings(wallet_server))
    Redis.from_url(REDIS_URL).delete(f"pointpass:google-rate:{ISSUER_ID}")


@pytest.fixture
def workers(rq_google_app: Flask, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``WORKERS`` running ``pointpass worker`` processes, registered with rq."""
    env = rq_google_app.config["TEST_WORKER_ENV"]
    processes = []
    for i in range(WORKERS):
        log = (tmp_path / f"worker-{i}.log").open("wb")
        processes.append(subprocess.Popen([BIN / "pointpass", "worker"], env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
    queue = Queue(rq_google_app.config["RQ_QUEUE"], connection=Redis.from_url(REDIS_URL))
    try:
        # A worker imports and starts the whole app first: give them time on a busy box.
        wait_until(lambda: len(Worker.all(queue=queue)) >= WORKERS
              or any(p.poll() is not None for p in processes), "the workers to start", 90)
        assert all(p.poll() is None for p in processes), \
            (tmp_path / "worker-0.log").read_text(errors="replace")
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.mark.redis
def test_several_workers_keep_each_objects_balances_in_order_and_notifications_capped(
    rq_google_app: Flask, workers: list[subprocess.Popen[bytes]],
    wallet_server: GoogleWalletTestServer, tmp_path: Path,
) -> None:
    app = rq_google_app
    api = admin_api(app)
    program = create_program(api)
    serials = [create_card(api, program, name=f"Member {i}")["serial_number"]
               for i in range(CARDS)]
    wait_until(lambda: _pending(app) == 0, "the new cards' outbox rows to drain")
    wallet_server.latency = 0.05  # as Google's own, so that jobs overlap as they would

    # Card after card, six earns each as fast as they come: each card's jobs overlap.
    statuses = [[api.post(f"/api/v1/cards/{serial}/earn", json={"points": 1}).status_code
                 for _ in range(EARNS)] for serial in serials]
    assert statuses == [[201] * EARNS] * CARDS
    wait_until(lambda: _pending(app) == 0, "the workers to drain the outbox", 60)
    assert all(p.poll() is None for p in workers), "a worker died"

    problems = []
    for serial in serials:
        object_id = f"{ISSUER_ID}.{serial}"
        patches = [r for r in _object_writes(wallet_server, object_id)
                   if r.operation == "patch"]
        notifying = [r for r in patches if r.body.get("notifyPreference") == NOTIFY]
        balances = [b for b in map(_balance, patches) if b is not None]
        if len(notifying) > 3:
            problems.append(f"{serial}: {len(notifying)} notifying patches")
        if balances != sorted(balances):
            problems.append(f"{serial}: balances went backwards: {balances}")
        if not balances or balances[-1] != EARNS:
            problems.append(f"{serial}: last balance sent {balances[-1:]} is not {EARNS}")
        if wallet_server.objects[object_id]["loyaltyPoints"]["balance"]["int"] != EARNS:
            problems.append(f"{serial}: Google holds "
                            f"{wallet_server.objects[object_id]['loyaltyPoints']}")
        assert api.get(f"/api/v1/cards/{serial}").json["balance"] == EARNS
    assert not problems, "\n".join(problems)
