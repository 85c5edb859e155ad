"""Fixtures: the app on SQLite and on a real PostgreSQL, an API client, keys and data.

Every test that takes ``app`` (or a fixture built on it) runs twice: on a SQLite file and on a
fresh PostgreSQL database created for this test run. ``pg_app`` is PostgreSQL only.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app import create_app
from app.extensions import db
from tests.apns_server import APNsTestServer, write_server_certificate

POSTGRES_ADMIN_URL = os.environ.get(
    "POINTPASS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("POINTPASS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _migrate(url: str, instance: Path) -> None:
    from flask_migrate import upgrade

    # TESTING: no periodic outbox sweep, which would outlive the session's databases.
    app = create_app({"DATABASE_URL": url, "ENV": "testing", "TESTING": True,
                      "INSTANCE_PATH": instance, **apple_settings()})
    with app.app_context():
        upgrade()
        db.engine.dispose()


class SQLiteDatabase:
    name = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.template = workdir / "template.db"
        _migrate(f"sqlite:///{self.template}", workdir)

    def url_for(self, tmp_path: Path) -> str:
        path = tmp_path / "pointpass.db"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def reset(self) -> None:
        pass  # each test has its own copy

    def close(self) -> None:
        pass


class PostgresDatabase:
    name = "postgres"

    def __init__(self, workdir: Path) -> None:
        self.dbname = f"pointpass_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        self.url = f"{base}/{self.dbname}"
        _migrate(self.url, workdir)

    def url_for(self, tmp_path: Path) -> str:
        return self.url

    def reset(self) -> None:
        tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")

    def close(self) -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteDatabase]:
    database = SQLiteDatabase(tmp_path_factory.mktemp("sqlite"))
    yield database
    database.close()


@pytest.fixture(scope="session")
def postgres_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(tmp_path_factory.mktemp("postgres"))
    yield database
    database.close()


_dev_certs: dict[str, Path] = {}


@pytest.fixture(scope="session", autouse=True)
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Development certificates (``pointpass dev-certs``), made once per test session."""
    from passes.devcerts import write_dev_certs

    _dev_certs.update(write_dev_certs(tmp_path_factory.mktemp("dev-certs")))
    return _dev_certs


def apple_settings() -> dict[str, Any]:
    return {"APPLE_CERT": str(_dev_certs["pass_cert"]), "APPLE_KEY": str(_dev_certs["pass_key"]),
            "APPLE_WWDR_CERT": str(_dev_certs["wwdr"])}


def _make_app(database: Any, tmp_path: Path, **overrides: Any) -> Iterator[Any]:
    config = {
        "DATABASE_URL": database.url_for(tmp_path),
        "ENV": "testing",
        "TESTING": True,
        "INSTANCE_PATH": tmp_path / "instance",
        "BASE_URL": "https://pointpass.test",
        **apple_settings(),
        **overrides,
    }
    app = create_app(config)
    app.config["DATABASE_NAME"] = database.name
    yield app
    with app.app_context():
        from app import background

        background.dispatcher().shutdown()
        db.session.remove()
        db.engine.dispose()
    database.reset()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_database")


@pytest.fixture
def app(database: Any, tmp_path: Path) -> Iterator[Any]:
    yield from _make_app(database, tmp_path)


@pytest.fixture
def pg_app(postgres_database: PostgresDatabase, tmp_path: Path) -> Iterator[Any]:
    yield from _make_app(postgres_database, tmp_path)


class ApiClient:
    """A test client that speaks JSON with a bearer key."""

    def __init__(self, client: FlaskClient, key: str | None = None) -> None:
        self.client = client
        self.key = key

    def as_(self, key: str | None) -> ApiClient:
        return ApiClient(self.client, key)

    def request(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None
                = None, **kwargs: Any) -> Any:
        all_headers = dict(headers or {})
        if self.key:
            all_headers.setdefault("Authorization", f"Bearer {self.key}")
        return self.client.open(path, method=method, json=json, headers=all_headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs)


@pytest.fixture
def keys(app: Any) -> dict[str, str]:
    """One API key per role."""
    from app.auth import keys as api_keys

    with app.app_context():
        return {role: api_keys.create(f"test {role}", role)[1]
                for role in ("admin", "marketer", "staff", "pos")}


@pytest.fixture
def api(app: Any, keys: dict[str, str]) -> ApiClient:
    """An API client authenticated as admin; ``api.as_(keys['pos'])`` switches role."""
    return ApiClient(app.test_client(), keys["admin"])


PROGRAM = {
    "name": "Kopi Test",
    "slug": "kopi-test",
    "currency": "IDR",
    "earn_points": 1,
    "earn_amount": 1_000_000,
    "referral_bonus_points": 50,
    "tiers": [
        {"name": "Bronze", "threshold": 0},
        {"name": "Silver", "threshold": 500, "multiplier_percent": 150},
    ],
    "rewards": [{"name": "Coffee", "points_cost": 100}],
}


@pytest.fixture
def program(api: ApiClient) -> dict[str, Any]:
    response = api.post("/api/v1/programs", json=PROGRAM)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


@pytest.fixture
def card(api: ApiClient, program: dict[str, Any]) -> dict[str, Any]:
    response = api.post(f"/api/v1/programs/{program['id']}/members",
                        json={"name": "Siti", "email": "siti@example.com", "language": "id"})
    assert response.status_code == 201, response.json
    return response.json["card"]  # type: ignore[no-any-return]


def ledger_state(app: Any, serial: str) -> tuple[int, int, int]:
    """(balance, sum of ledger points, number of entries) for a card, read with raw SQL."""
    with app.app_context():
        row = db.session.execute(
            text(
                "SELECT c.balance, COALESCE(SUM(l.points), 0), COUNT(l.id) FROM cards c "
                "LEFT JOIN ledger_entries l ON l.card_id = c.id WHERE c.serial_number = :s "
                "GROUP BY c.balance"
            ),
            {"s": serial},
        ).one()
        db.session.rollback()
        return int(row[0]), int(row[1]), int(row[2])


@pytest.fixture
def free_port() -> Any:
    """A function returning a TCP port on 127.0.0.1 that nothing listens on."""
    import socket

    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    return pick


# APNs: a local test server that requires the development client certificate.

@pytest.fixture(scope="session")
def apns_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_server_certificate(tmp_path_factory.mktemp("apns-server"))


@pytest.fixture
def apns(apns_certs: dict[str, Path]) -> Iterator[APNsTestServer]:
    server = APNsTestServer(apns_certs["cert"], apns_certs["key"], _dev_certs["wwdr"]).start()
    yield server
    server.stop()


def apns_settings(apns: APNsTestServer, certs: dict[str, Path]) -> dict[str, Any]:
    return {"APNS_URL": apns.url, "APNS_CA_FILE": str(certs["ca"]),
            "APNS_BACKOFF_SECONDS": 0.01}


@pytest.fixture
def push_app(database: Any, tmp_path: Path, apns: APNsTestServer,
             apns_certs: dict[str, Path]) -> Iterator[Flask]:
    yield from _make_app(database, tmp_path, **apns_settings(apns, apns_certs))


