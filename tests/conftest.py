"""Fixtures: the app on SQLite and on a real PostgreSQL, an API client, keys and data.

They wrap tests/factories.py (``make_app``, ``create_program``, ``create_card``,
``register_device``, ``create_api_key``, ...), which a test imports when it needs an app with
other settings or more data than the fixtures give.

Every test that takes ``app`` (or a fixture built on it) runs twice: on a SQLite file and on a
fresh PostgreSQL database created for this test run. ``pg_app`` is PostgreSQL only.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from playwright.sync_api import Browser, Playwright, sync_playwright

from app import create_app
from app.extensions import db
from tests.apns_server import APNsTestServer, write_server_certificate
from tests.browser import CHROMIUM, launch, need, serve
from tests.factories import (
    DEV_CERTS,
    ApiClient,
    apns_settings,
    apple_settings,
    create_api_key,
    create_card,
    create_program,
    make_app,
)


def _one_url_builder_per_rule() -> None:
    """Every test makes its own app, and ``create_app`` spent most of its time (a quarter of
    a second per app, minutes over the suite) in werkzeug generating and compiling the Python
    code of two URL-builder functions per route. A builder depends only on the rule's parts,
    its defaults and whether it appends unknown arguments (it reaches the rule's converters
    through the rule it is bound to), so the session compiles each distinct one once. Only
    the tests do this; a server makes its app once."""
    from werkzeug.routing.rules import Rule

    original = Rule._compile_builder
    builders: dict[tuple[Any, ...], Any] = {}

    def compile_builder(self: Rule, append_unknown: bool = True) -> Any:
        key = (self.rule, tuple(self._trace), repr(sorted((self.defaults or {}).items())),
               append_unknown)
        if key not in builders:
            builders[key] = original(self, append_unknown)
        return builders[key]

    Rule._compile_builder = compile_builder  # type: ignore[method-assign]


_one_url_builder_per_rule()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Leave what exists once the tests are collected (~250,000 objects: the modules of
    Flask, SQLAlchemy, hypothesis, schemathesis, Playwright, ... and the test items) out of
    the garbage collector's work. They live as long as the session, but every full
    collection walked them all again: about a fifth of the CPU time of the database tests
    went to the collector. Objects the tests make are collected as before."""
    gc.collect()
    gc.freeze()


POSTGRES_ADMIN_URL = os.environ.get(
    "POINTPASS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _migrate(url: str, instance: Path) -> None:
    from flask_migrate import upgrade

    # TESTING: no periodic outbox sweep, which would outlive the session's databases.
    app = create_app({"DATABASE_URL": url, "ENV": "testing", "TESTING": True,
                      "INSTANCE_PATH": instance, **apple_settings()})
    with app.app_context():
        upgrade()
        db.engine.dispose()


#: Where the SQLite files go: a RAM file system when there is one. SQLite works the same
#: there (same locks, same journal); only its fsync at every commit costs nothing, where on
#: this machine's disk it costs ~10 ms, and a test commits tens of times.
SQLITE_DIR = Path("/dev/shm")


class SQLiteDatabase:
    name = "sqlite"

    def __init__(self, workdir: Path) -> None:
        in_ram = SQLITE_DIR.is_dir() and os.access(SQLITE_DIR, os.W_OK)
        self.root = Path(tempfile.mkdtemp(prefix="pointpass-test-sqlite-",
                                          dir=SQLITE_DIR if in_ram else workdir))
        self.template = self.root / "template.db"
        _migrate(f"sqlite:///{self.template}", workdir)

    def url_for(self, tmp_path: Path) -> str:
        """A fresh copy of the migrated database, for one app."""
        folder = Path(tempfile.mkdtemp(prefix="db-", dir=self.root))
        path = folder / "pointpass.db"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def reset(self, url: str | None = None) -> None:
        """Delete the app's copy (and any journal beside it); the rest go at :meth:`close`."""
        if url is not None:
            shutil.rmtree(Path(url.removeprefix("sqlite:///")).parent, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class PostgresDatabase:
    name = "postgres"

    def __init__(self, workdir: Path) -> None:
        self.dbname = f"pointpass_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
            # A commit returns before its WAL reaches the disk: what other sessions see, and
            # when, is unchanged; only a crash of the server could lose the last commits,
            # and no test crashes it. Spares a disk flush per commit (every test commits).
            conn.execute(f'ALTER DATABASE "{self.dbname}" SET synchronous_commit = off')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        self.url = f"{base}/{self.dbname}"
        _migrate(self.url, workdir)

    def url_for(self, tmp_path: Path) -> str:
        return self.url

    def reset(self, url: str | None = None) -> None:
        """Empty every table and restart every id sequence, as after the migrations.

        DELETE (children first) rather than TRUNCATE: TRUNCATE gives each table, index and
        sequence a new file, about 0.3 s for this schema, where a test's few rows take
        milliseconds to delete.
        """
        with psycopg.connect(self.url) as conn:  # one transaction, committed on exit
            # One round trip: the statements as one string (no parameters).
            conn.execute("".join(f'DELETE FROM "{table.name}";'
                                 for table in reversed(db.metadata.sorted_tables))
                         .encode()
                         + b"SELECT setval(format('%I.%I', schemaname, sequencename), "
                           b"start_value, false) FROM pg_sequences "
                           b"WHERE schemaname = current_schema()")

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


@pytest.fixture(scope="session", autouse=True)
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Development certificates (``pointpass dev-certs``), made once per test session."""
    from passes.devcerts import write_dev_certs

    DEV_CERTS.update(write_dev_certs(tmp_path_factory.mktemp("dev-certs")))
    return DEV_CERTS


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_database")


@pytest.fixture
def app(database: Any, tmp_path: Path) -> Iterator[Any]:
    yield from make_app(database, tmp_path)


@pytest.fixture
def pg_app(postgres_database: PostgresDatabase, tmp_path: Path) -> Iterator[Any]:
    yield from make_app(postgres_database, tmp_path)


@pytest.fixture
def keys(app: Any) -> dict[str, str]:
    """One API key per role."""
    return {role: create_api_key(app, role) for role in ("admin", "marketer", "staff", "pos")}


@pytest.fixture
def api(app: Any, keys: dict[str, str]) -> ApiClient:
    """An API client authenticated as admin; ``api.as_(keys['pos'])`` switches role."""
    return ApiClient(app.test_client(), keys["admin"])


@pytest.fixture
def program(api: ApiClient) -> dict[str, Any]:
    return create_program(api)


@pytest.fixture
def card(api: ApiClient, program: dict[str, Any]) -> dict[str, Any]:
    return create_card(api, program, email="siti@example.com", language="id")


@pytest.fixture
def free_port() -> Any:
    """A function returning a TCP port on 127.0.0.1 that nothing listens on."""
    import socket

    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    return pick


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver, for the test module (started when a browser test first needs
    it). Not for the session: while the driver runs, its event loop counts as running in
    this thread, and asyncio.run() in a later test (tests/wallet/apple/test_apns.py) fails.
    A module that launches browsers of its own (with a fake camera) launches them here."""
    need(CHROMIUM, "Chromium", "chromium fonts-noto-core")
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, one per test module: each test makes a context of its own
    (cookies, storage, permissions, viewport)."""
    launched = launch(playwright)
    yield launched
    launched.close()


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """The app served over HTTP on 127.0.0.1 (a secure context: cameras are allowed) for as
    long as the test runs."""
    with serve(app) as url:
        yield url


# APNs: a local test server that requires the development client certificate.

@pytest.fixture(scope="session")
def apns_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_server_certificate(tmp_path_factory.mktemp("apns-server"))


@pytest.fixture
def apns(apns_certs: dict[str, Path]) -> Iterator[APNsTestServer]:
    server = APNsTestServer(apns_certs["cert"], apns_certs["key"], DEV_CERTS["wwdr"]).start()
    yield server
    server.stop()


@pytest.fixture
def apns_app_settings(apns: APNsTestServer, apns_certs: dict[str, Path]) -> dict[str, Any]:
    """App settings that push to the ``apns`` test server."""
    return apns_settings(apns, apns_certs)


@pytest.fixture
def push_app(database: Any, tmp_path: Path, apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    yield from make_app(database, tmp_path, **apns_app_settings)


