"""Pooled PostgreSQL connections: one the server closed is never handed to a request."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
import sqlalchemy
from sqlalchemy import text

from app import dbutil
from app.extensions import db
from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import admin_api

pytestmark = pytest.mark.postgres


def _terminate_connections_to(database: str) -> int:
    """What a server restart does to clients: end every session on ``database``."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        (ended,) = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchone()
        deadline = time.monotonic() + 10
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                           "pid <> pg_backend_pid()", (database,)).fetchone()[0]:
            assert time.monotonic() < deadline, "sessions did not end"
            time.sleep(0.02)
    return int(ended)


def _engine(url: str) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"),
                                    pool_size=1, max_overflow=0)


def test_a_plain_pool_hands_out_a_connection_the_server_closed(pg_app: Any) -> None:
    """Why the check exists: without it the first query after a restart fails."""
    with pg_app.app_context():
        url = db.engine.url
    engine = _engine(url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert _terminate_connections_to(str(url.database)) >= 1
    with pytest.raises(sqlalchemy.exc.OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    engine.dispose()


def test_checked_pool_replaces_a_connection_the_server_closed(pg_app: Any) -> None:
    with pg_app.app_context():
        url = db.engine.url
    engine = _engine(url.render_as_string(hide_password=False))
    dbutil.check_connections(engine)
    with engine.connect() as conn:
        first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    _terminate_connections_to(str(url.database))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first_pid
    engine.dispose()


def test_checked_pool_pings_a_connection_idle_for_long(pg_app: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pg_app.app_context():
        url = db.engine.url
    engine = _engine(url.render_as_string(hide_password=False))
    dbutil.check_connections(engine)
    pings: list[Any] = []
    original = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or original(c))
    for _ in range(3):
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    assert len(pings) == 1  # the new connection only: a recently used one is not pinged
    monkeypatch.setattr(dbutil, "PING_AFTER_IDLE_SECONDS", 0.0)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert len(pings) == 2
    engine.dispose()


def test_the_first_request_after_a_database_restart_succeeds(pg_app: Any) -> None:
    api = admin_api(pg_app)
    with pg_app.app_context():
        database = str(db.engine.url.database)
    created = api.post("/api/v1/programs", json={"name": "Kopi", "slug": "kopi"})
    assert created.status_code == 201, created.json
    assert _terminate_connections_to(database) >= 1

    response = api.get("/api/v1/programs")

    assert response.status_code == 200, response.json
    assert [p["slug"] for p in response.json["programs"]] == ["kopi"]
