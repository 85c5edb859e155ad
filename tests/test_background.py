"""Background jobs: after commit only; in-process without Redis; a real rq worker with it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from app import background
from app.extensions import db
from tests.factories import (
    REDIS_URL,
    ApiClient,
    admin_api,
    create_program,
    ledger_state,
    make_app,
    make_worker_app,
    settle,
)

BIN = Path(sys.executable).parent


def _refer(api: ApiClient, program: dict[str, Any]) -> tuple[str, str]:
    """Enroll a referrer and a member they referred; return the referrer's serial and code."""
    referrer = api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Referrer"})
    code = referrer.json["referral_code"]
    referred = api.post(f"/api/v1/programs/{program['id']}/members",
                        json={"name": "Friend", "referral_code": code.lower()})
    assert referred.status_code == 201, referred.json
    return referrer.json["card"]["serial_number"], code


def test_in_process_job_runs_after_commit(app: Any, api: ApiClient,
                                          program: dict[str, Any]) -> None:
    serial, _ = _refer(api, program)
    settle(app)
    assert ledger_state(app, serial) == (50, 50, 1)
    entries = api.get(f"/api/v1/cards/{serial}").json["recent_entries"]
    assert entries[0]["reference"].startswith("referral:")


def test_job_is_dropped_when_the_transaction_rolls_back(app: Any) -> None:
    ran: list[int] = []
    with app.app_context():
        background.enqueue_after_commit(ran.append, 1)
        db.session.rollback()
        db.session.commit()  # a later commit must not run the discarded job
        background.dispatcher().wait()
        background.enqueue_after_commit(ran.append, 2)
        db.session.commit()
        background.dispatcher().wait()
    assert ran == [2]


@pytest.fixture
def rq_app(database: Any, tmp_path: Path) -> Any:
    yield from make_worker_app(database, tmp_path)


@pytest.mark.redis
def test_jobs_go_to_rq_and_a_real_worker_runs_them(rq_app: Any) -> None:
    api = admin_api(rq_app)
    program = create_program(api)
    serial, _ = _refer(api, program)

    queue = Queue(rq_app.config["RQ_QUEUE"], connection=Redis.from_url(REDIS_URL))
    # Besides the referral, the new cards' outbox drain waits there too.
    assert "app.enrollment.service.credit_referral" in [job.func_name for job in queue.jobs]
    assert ledger_state(rq_app, serial) == (0, 0, 0)  # nothing ran in the web process

    env = rq_app.config["TEST_WORKER_ENV"]
    result = subprocess.run([BIN / "pointpass", "worker", "--burst"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert queue.count == 0
    assert ledger_state(rq_app, serial) == (50, 50, 1)


@pytest.mark.redis
def test_the_worker_runs_the_retries_rq_schedules(rq_app: Any) -> None:
    """rq retries a failed job, and one a killed worker abandoned, by scheduling it: the
    worker must run rq's scheduler, or the retry never runs."""
    from datetime import UTC, datetime, timedelta

    api = admin_api(rq_app)
    program = create_program(api)
    serial, _ = _refer(api, program)

    queue = Queue(rq_app.config["RQ_QUEUE"], connection=Redis.from_url(REDIS_URL))
    job = next(job for job in queue.jobs
               if job.func_name == "app.enrollment.service.credit_referral")
    # What Job.retry() does with a retry interval: off the queue, onto the schedule.
    queue.remove(job)
    queue.schedule_job(job, datetime.now(UTC) + timedelta(seconds=1))

    env = rq_app.config["TEST_WORKER_ENV"]
    worker = subprocess.Popen([BIN / "pointpass", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120  # the worker imports and starts the whole app
        while ledger_state(rq_app, serial) != (50, 50, 1):
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the scheduled retry never ran"
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(10)


def test_unreachable_redis_falls_back_to_in_process(database: Any, tmp_path: Path) -> None:
    for app in make_app(database, tmp_path, REDIS_URL="redis://127.0.0.1:1/0"):

        api = admin_api(app)
        program = create_program(api)
        serial, _ = _refer(api, program)
        settle(app)
        assert ledger_state(app, serial) == (50, 50, 1)
