"""A request id per request: taken from ``X-Request-Id`` when usable, else made; in the
response header, in problem bodies, on the log lines written while serving the request and
on those of the jobs it enqueued (in-process and in a real ``pointpass worker``)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from app import background
from app.enrollment import service
from tests.factories import REDIS_URL, ApiClient, admin_api, create_program, make_worker_app
from tests.processes import BIN

GENERATED = re.compile(r"[0-9a-f]{32}")


def _device_log(client: Any, message: str, headers: dict[str, str] | None = None) -> Any:
    """PassKit's log endpoint: the service logs ``message`` while serving the request."""
    return client.post("/passkit/v1/log", json={"logs": [message]}, headers=headers or {})


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    return next(r for r in caplog.records if text in r.getMessage())


def _refer_a_friend(api: ApiClient, program: dict[str, Any], request_id: str) -> None:
    """Enrol a referrer, then a friend with their code in a request sending ``request_id``:
    the friend's enrolment enqueues the job crediting the referrer."""
    referrer = api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Referrer"})
    referred = api.post(f"/api/v1/programs/{program['id']}/members",
                        json={"name": "Friend", "referral_code": referrer.json["referral_code"]},
                        headers={"X-Request-Id": request_id})
    assert referred.status_code == 201, referred.json


def test_a_sent_id_is_answered_in_the_header_the_problem_and_the_log(
        app: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    caplog.set_level(logging.INFO)
    response = client.get("/api/v1/no-such-thing", headers={"X-Request-Id": "client-id.42"})
    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == "client-id.42"
    assert response.mimetype == "application/problem+json"
    assert response.json["request_id"] == "client-id.42"

    response = _device_log(client, "sent id", {"X-Request-Id": "client-id.43"})
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "client-id.43"
    assert _logged(caplog, "Wallet: sent id").request_id == "client-id.43"


def test_without_an_id_one_is_made_per_request(app: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    caplog.set_level(logging.INFO)
    first = client.post("/api/v1/programs", json={})  # no API key: a 401 problem
    assert first.status_code == 401
    assert GENERATED.fullmatch(first.headers["X-Request-Id"])
    assert first.json["request_id"] == first.headers["X-Request-Id"]

    second = _device_log(client, "made id")
    made = second.headers["X-Request-Id"]
    assert GENERATED.fullmatch(made) and made != first.headers["X-Request-Id"]
    assert _logged(caplog, "Wallet: made id").request_id == made
    # Pages and files too, whatever answered them.
    assert GENERATED.fullmatch(client.get("/healthz").headers["X-Request-Id"])
    assert GENERATED.fullmatch(client.get("/no-such-page", headers={"Accept": "text/html"})
                               .headers["X-Request-Id"])


@pytest.mark.parametrize("hostile", [
    "forged\nINFO pointpass: admin signed in",
    "a" * 129,
    "x" * 500,
    "two words",
    "caf\u00e9",
    "",
])
def test_an_unusable_id_is_replaced(app: Any, hostile: str) -> None:
    # Set in the WSGI environment, as a server passes any header it accepted.
    client = app.test_client()
    response = client.get("/api/v1/no-such-thing",
                          environ_overrides={"HTTP_X_REQUEST_ID": hostile})
    assert GENERATED.fullmatch(response.headers["X-Request-Id"])
    assert response.json["request_id"] == response.headers["X-Request-Id"]


def test_the_longest_usable_id_is_kept(app: Any) -> None:
    sent = "~!" * 64
    response = app.test_client().get("/healthz", headers={"X-Request-Id": sent})
    assert response.headers["X-Request-Id"] == sent


def test_the_openapi_document_declares_the_header(app: Any) -> None:
    spec = app.test_client().get("/api/openapi.json").json
    assert "X-Request-Id" in spec["components"]["headers"]
    assert "request_id" in spec["components"]["schemas"]["ProblemSchema"]["properties"]
    earn = spec["paths"]["/api/v1/cards/{serial}/earn"]["post"]["responses"]
    assert all("X-Request-Id" in answer["headers"] for answer in earn.values())


def test_an_in_process_job_logs_with_the_id_of_the_request_that_enqueued_it(
        app: Any, api: ApiClient, program: dict[str, Any], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    job_log = logging.getLogger("tests.job")

    def credit_referral(member_id: int) -> None:
        job_log.info("crediting the referrer of member %d", member_id)

    monkeypatch.setattr(service, "credit_referral", credit_referral)
    caplog.set_level(logging.INFO)
    _refer_a_friend(api, program, "enrol-friend-1")
    with app.app_context():
        background.dispatcher().wait()
    line = _logged(caplog, "crediting the referrer of member")
    assert line.threadName.startswith("pointpass-job")
    assert line.request_id == "enrol-friend-1"


@pytest.fixture
def worker_app(database: Any, tmp_path: Path) -> Any:
    """Jobs go to rq (``app.config["TEST_WORKER_ENV"]`` runs a worker for them)."""
    yield from make_worker_app(database, tmp_path)


@pytest.mark.redis
def test_an_rq_job_logs_with_the_id_of_the_request_that_enqueued_it(worker_app: Any) -> None:
    """In a real ``pointpass worker`` writing JSON lines."""
    rq_app = worker_app
    _refer_a_friend(admin_api(rq_app), create_program(admin_api(rq_app)), "enrol-friend-2")
    queue = Queue(rq_app.config["RQ_QUEUE"], connection=Redis.from_url(REDIS_URL))
    job = next(job for job in queue.jobs
               if job.func_name == "app.enrollment.service.credit_referral")
    assert job.meta["request_id"] == "enrol-friend-2"

    env = {**rq_app.config["TEST_WORKER_ENV"], "POINTPASS_LOG_FORMAT": "json"}
    result = subprocess.run([BIN / "pointpass", "worker", "--burst"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    done = [line for line in lines if "Job OK" in line["message"] and job.id in line["message"]]
    assert [line["request_id"] for line in done] == ["enrol-friend-2"]
    # The worker's own lines, outside any job, carry none.
    assert any(line["request_id"] == "-" and "started" in line["message"] for line in lines)
