"""When the database cannot be reached, requests get a 503 problem with Retry-After (so POS
systems and the staff page retry), never a 500, and nothing is half written."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app import create_app
from app.extensions import db
from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import ApiClient, admin_api, create_card, create_program, ledger_state


def _assert_database_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["type"] == "urn:pointpass:problem:database-unavailable"
    assert int(response.headers["Retry-After"]) > 0


@pytest.fixture
def unreachable_app(tmp_path: Path, free_port: Any) -> Iterator[Any]:
    """The service configured with a PostgreSQL server that is not running."""
    app = create_app({
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/pointpass",
        "ENV": "testing", "TESTING": True, "INSTANCE_PATH": tmp_path / "instance",
    })
    yield app
    with app.app_context():
        db.engine.dispose()


def test_a_database_that_is_down_answers_503(unreachable_app: Any,
                                             caplog: pytest.LogCaptureFixture) -> None:
    client = ApiClient(unreachable_app.test_client(), "pp_" + "x" * 43)
    _assert_database_unavailable(client.get("/api/v1/programs"))
    _assert_database_unavailable(client.post("/api/v1/cards/PP-1/earn", json={"points": 5},
                                             headers={"Idempotency-Key": "k1"}))
    # One line per request, no traceback, and the password-free reason.
    outage_lines = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(outage_lines) == 2
    assert all(r.exc_info is None for r in outage_lines)


@pytest.mark.postgres
def test_a_connection_lost_mid_posting_answers_503_and_writes_nothing(pg_app: Any) -> None:
    """The server ends the request's session while the posting waits for the card's lock."""
    api = admin_api(pg_app)
    program = create_program(api)
    serial = create_card(api, program, name="Siti")["serial_number"]
    before = ledger_state(pg_app, serial)
    with pg_app.app_context():
        dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        database = str(db.engine.url.database)
    holder = psycopg.connect(dsn)
    holder.execute("SELECT id FROM cards WHERE serial_number = %s FOR UPDATE", (serial,))
    responses: list[Any] = []
    request = threading.Thread(target=lambda: responses.append(api.post(
        f"/api/v1/cards/{serial}/earn", json={"points": 7},
        headers={"Idempotency-Key": "lost-connection"})))
    request.start()
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            deadline = time.monotonic() + 10
            ended = 0
            while not ended:
                assert time.monotonic() < deadline, "the request never waited for the lock"
                (ended,) = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND wait_event_type = 'Lock'", (database,)).fetchone()
                time.sleep(0.02)
    finally:
        request.join(timeout=30)
        holder.rollback()
        holder.close()
    _assert_database_unavailable(responses[0])
    assert ledger_state(pg_app, serial) == before

    # The pool recovers: the retry with the same key posts once.
    retry = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 7},
                     headers={"Idempotency-Key": "lost-connection"})
    assert retry.status_code == 201, retry.json
    assert ledger_state(pg_app, serial)[0] == before[0] + 7
