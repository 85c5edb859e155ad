"""Liveness, readiness, and a schema behind the code: 503 with what to do, never 500."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade

from app import create_app
from app.extensions import db
from tests.factories import REDIS_URL, ApiClient, apple_settings, make_app


@pytest.fixture
def app_with_redis(database: Any, tmp_path: Path) -> Iterator[Any]:
    yield from make_app(database, tmp_path, REDIS_URL=REDIS_URL)


def test_ready_when_database_schema_and_redis_answer(app_with_redis: Any) -> None:
    client = app_with_redis.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json == {"status": "ok",
                             "checks": {"database": "ok", "schema": "ok", "redis": "ok"}}


def test_ready_without_redis_configured(app: Any) -> None:
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["checks"]["redis"] == "not configured"


def test_readiness_checks_write_no_log_lines(app: Any, caplog: Any) -> None:
    # Load balancers ask every few seconds: alembic's "Context impl ..." lines each time
    # filled the log.
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            assert client.get("/readyz").status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []


def test_starts_and_reports_unready_without_database_and_redis(
        tmp_path: Path, free_port: Any) -> None:
    """Production settings, PostgreSQL and Redis on ports nothing listens on."""
    app = create_app({
        "ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/pointpass",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "INSTANCE_PATH": tmp_path / "instance", **apple_settings()})
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "checks": {
        "database": "unreachable (OperationalError)",
        "schema": "unknown: the database did not answer",
        "redis": "unreachable (ConnectionError)"}}
    api = client.get("/api/v1/programs", headers={"Authorization": "Bearer pp_x"})
    assert api.status_code == 503
    assert api.json["type"] == "urn:pointpass:problem:database-unavailable"


def test_not_ready_until_migrated(tmp_path: Path) -> None:
    app = create_app({"ENV": "testing", "TESTING": True, "INSTANCE_PATH": tmp_path / "instance",
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}", **apple_settings()})
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["schema"].startswith("empty")
    assert "pointpass db upgrade" in response.json["checks"]["schema"]
    with app.app_context():
        upgrade()
        db.engine.dispose()
    assert client.get("/readyz").status_code == 200


def test_schema_behind_the_code_answers_503_not_500(app: Any, api: ApiClient,
                                                    card: dict[str, Any]) -> None:
    script = ScriptDirectory(app.extensions["migrate"].directory)
    paths = ["/api/v1/keys", "/api/v1/programs", f"/api/v1/cards/{card['serial_number']}",
             f"/card/{card['serial_number']}/x", "/", "/api/v1/updates/1",
             f"/api/v1/programs/{card['program_id']}/images/logo",
             f"/api/v1/programs/{card['program_id']}/campaigns",
             f"/api/v1/cards/{card['serial_number']}/devices",
             f"/api/v1/programs/{card['program_id']}/stats",
             f"/api/v1/programs/{card['program_id']}/members.csv", "/api/v1/webhooks"]
    previous = script.get_current_head()
    try:
        # Back one migration at a time until a request touches what it added (a migration
        # that only changes an index leaves every answer as it was).
        outdated = 0
        for _ in range(5):
            with app.app_context():
                downgrade(revision="-1")
            previous = script.get_revision(previous).down_revision
            for path in paths:
                response = api.get(path)
                if response.status_code < 500:
                    continue  # what the older schema holds is still served
                assert response.status_code == 503, (path, response.status_code, response.data)
                assert response.mimetype == "application/problem+json"
                assert response.json["type"] == "urn:pointpass:problem:schema-outdated"
                assert "pointpass db upgrade" in response.json["detail"]
                assert response.headers["Retry-After"]
                outdated += 1
            if outdated:
                break
        assert outdated, f"no request touched what the last migrations added: {paths}"

        ready = app.test_client().get("/readyz")
        assert ready.status_code == 503
        assert ready.json["checks"]["database"] == "ok"
        assert ready.json["checks"]["schema"].startswith(f"behind: database at {previous}")
        assert "pointpass db upgrade" in ready.json["checks"]["schema"]
    finally:
        with app.app_context():
            upgrade()
            db.session.remove()
    assert app.test_client().get("/readyz").status_code == 200
    assert all(api.get(path).status_code < 500 for path in paths)


def test_health_endpoints_stay_out_of_the_api_document(app: Any) -> None:
    paths = app.test_client().get("/api/openapi.json").json["paths"]
    assert paths and all(path.startswith("/api/v1/") for path in paths)
