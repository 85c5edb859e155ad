"""Apps, API clients and data for the tests: one way to make each, shared by every test file
and by ``tests/conftest.py`` (which only wraps them in fixtures).

* :func:`make_app` builds the app on a test database (and tears it down);
  :func:`make_worker_app` adds a fresh rq queue and the environment a ``pointpass worker``
  process needs to join it.
* :func:`create_api_key`, :func:`admin_api`, :func:`create_program`, :func:`create_card` and
  :func:`register_device` make what a test starts from, through the same public interfaces
  a business uses (the API, the PassKit web service).

Nothing here imports ``tests.conftest``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from flask import Flask
from flask.testing import FlaskClient
from jinja2.bccache import Bucket, BytecodeCache
from redis import Redis
from rq import Queue
from sqlalchemy import func, select, text

from app import background, create_app
from app.auth import keys as api_keys
from app.extensions import db
from app.loyalty.codes import redemption_code, short_code
from app.loyalty.models import Card
from tests.apns_server import APNsTestServer
from tests.phones import Phone

T = TypeVar("T")


def _redis_url() -> str:
    """The test Redis: database 15 (``POINTPASS_TEST_REDIS_URL`` names another), and under
    pytest-xdist one database per test process below it (15, 14, ...), so no two processes'
    tests share a key (the pacing rate, a lock, the Google issuer's limit)."""
    url = os.environ.get("POINTPASS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    if not worker.startswith("gw"):
        return url
    base, _, number = url.rpartition("/")
    if not number.isdigit():
        base, number = url.rstrip("/"), "15"
    return f"{base}/{(int(number) - int(worker[2:])) % 16}"


REDIS_URL = _redis_url()

#: The development certificates of the session (``pass_cert``, ``pass_key``, ``wwdr``, ...),
#: filled by the session fixture ``dev_certs`` in conftest.
DEV_CERTS: dict[str, Path] = {}

#: A program with two tiers and one reward, as ``POST /api/v1/programs`` takes it.
PROGRAM: dict[str, Any] = {
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


class Database(Protocol):
    """A database the tests run on (SQLite file copies, or one PostgreSQL database)."""

    name: str

    def url_for(self, tmp_path: Path) -> str: ...

    def reset(self, url: str | None = None) -> None:
        """Empty the database at ``url`` (given by :meth:`url_for`) after its app is done."""


def apple_settings() -> dict[str, Any]:
    """Settings that sign Apple passes with the development certificates."""
    return {"APPLE_CERT": str(DEV_CERTS["pass_cert"]), "APPLE_KEY": str(DEV_CERTS["pass_key"]),
            "APPLE_WWDR_CERT": str(DEV_CERTS["wwdr"])}


def apns_settings(apns: APNsTestServer, certs: Mapping[str, Path]) -> dict[str, Any]:
    """Settings that push to the APNs test server ``apns`` (``certs``: its CA)."""
    return {"APNS_URL": apns.url, "APNS_CA_FILE": str(certs["ca"]),
            "APNS_BACKOFF_SECONDS": 0.01}


class _TemplatesOfTheSession(BytecodeCache):
    """Compiled templates shared by every app the tests make (each has its own Jinja
    environment, which compiled every template it rendered again: ~30 ms each, for every
    test). Jinja keys a template by its name and checks its source's checksum, so a changed
    template is compiled again."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


TEMPLATES = _TemplatesOfTheSession()


def make_app(database: Database, tmp_path: Path, **overrides: Any) -> Iterator[Flask]:
    """Yield the app on ``database`` with test settings (``overrides`` win), then stop its
    jobs, dispose of its connections and empty the database.

    Use as ``yield from make_app(...)`` in a fixture, or ``for app in make_app(...):`` in a
    test that needs an app with other settings.
    """
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
    app.jinja_env.bytecode_cache = TEMPLATES
    yield app
    with app.app_context():
        background.dispatcher().shutdown()
        db.session.remove()
        db.engine.dispose()
    database.reset(config["DATABASE_URL"])


def make_worker_app(database: Database, tmp_path: Path,
                    **settings: Any) -> Iterator[Flask]:
    """Like :func:`make_app`, with jobs on a fresh rq queue in the test Redis.

    ``app.config["TEST_WORKER_ENV"]`` is the environment for a ``pointpass worker`` on the
    same database, queue and ``settings`` (its outbox sweep every 0.5 s). The queue is
    deleted afterwards.
    """
    queue_name = f"pointpass-test-{uuid.uuid4().hex[:8]}"
    settings = {"REDIS_URL": REDIS_URL, "RQ_QUEUE": queue_name, **settings}
    for app in make_app(database, tmp_path, **settings):
        app.config["TEST_WORKER_ENV"] = {
            **os.environ, "POINTPASS_ENV": "testing",
            "POINTPASS_DATABASE_URL": app.config["DATABASE_URL"],
            "POINTPASS_INSTANCE_PATH": str(tmp_path / "worker"),
            "POINTPASS_BASE_URL": app.config["BASE_URL"],
            "POINTPASS_OUTBOX_SWEEP_SECONDS": "0.5",
            **{f"POINTPASS_{k}": str(v) for k, v in {**apple_settings(), **settings}.items()},
        }
        yield app
    Queue(queue_name, connection=Redis.from_url(REDIS_URL)).delete(delete_jobs=True)


def closing_maker(build: Callable[..., T],
                  close: Callable[[T], None]) -> Iterator[Callable[..., T]]:
    """For a fixture (``yield from closing_maker(...)``): yield a function that builds things
    (its arguments go to ``build``), then ``close`` every thing it built."""
    made: list[T] = []

    def make(*args: Any, **options: Any) -> T:
        thing = build(*args, **options)
        made.append(thing)
        return thing

    yield make
    for thing in made:
        close(thing)


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


def create_api_key(app: Flask, role: str, name: str | None = None) -> str:
    """A new API key with ``role`` (admin, marketer, staff, pos); returns the plaintext."""
    with app.app_context():
        return api_keys.create(name or f"test {role}", role)[1]


def admin_api(app: Flask) -> ApiClient:
    """An API client of ``app`` with a new admin key."""
    return ApiClient(app.test_client(), create_api_key(app, "admin"))


def create_program(api: ApiClient, **overrides: Any) -> dict[str, Any]:
    """A program made through the API (:data:`PROGRAM` with ``overrides``); its JSON."""
    response = api.post("/api/v1/programs", json={**PROGRAM, **overrides})
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def create_card(api: ApiClient, program: Mapping[str, Any], **member: Any) -> dict[str, Any]:
    """Enroll a member (``name`` "Siti" unless given; consenting to marketing unless
    ``consent_marketing=False``: campaigns and feedback prompts reach only such members) in
    ``program``; the new card's JSON."""
    response = api.post(f"/api/v1/programs/{program['id']}/members",
                        json={"name": "Siti", "consent_marketing": True, **member})
    assert response.status_code == 201, response.json
    return response.json["card"]  # type: ignore[no-any-return]


def register_device(app: Flask, serial: str, token: str | None = None) -> Phone:
    """A new iPhone that added the card ``serial`` and registered for its pushes (the
    PassKit web service); returns the phone (its ``token`` is the APNs push token)."""
    phone = Phone(app, token)
    phone.add(serial)
    return phone


def row_counts(app: Flask, *models: Any) -> tuple[int, ...]:
    """How many rows each of ``models`` (SQLAlchemy model classes) has."""
    with app.app_context():
        counts = tuple(db.session.scalar(select(func.count()).select_from(model)) or 0
                       for model in models)
        db.session.rollback()
        return counts


def _code_of(app: Flask, serial: str, code_of: Callable[[Card], str]) -> str:
    with app.app_context():
        card = db.session.scalar(select(Card).where(Card.serial_number == serial))
        code = code_of(card)
        db.session.rollback()
        return code


def card_short_code(app: Flask, serial: str) -> str:
    """The card's current short code (what its passes show under the QR code)."""
    return _code_of(app, serial, short_code)


def card_code(app: Flask, serial: str) -> str:
    """The card's current redemption code (what its passes show)."""
    return _code_of(app, serial, redemption_code)


def ledger_state(app: Flask, serial: str) -> tuple[int, int, int]:
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


def settle(app: Flask) -> None:
    """Wait until the in-process jobs ``app`` has been given so far (and theirs) have run."""
    with app.app_context():
        background.dispatcher().wait()
