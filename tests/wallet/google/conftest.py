"""Fixtures for the Google Wallet tests: a service account, the local Wallet server, clients,
content and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from app.wallet.google.client import GoogleWalletClient, LocalRateLimiter, RateLimiter
from passes.devcerts import google_service_account_info
from passes.google.payloads import (
    Link,
    LoyaltyClassContent,
    LoyaltyObjectContent,
    TextModule,
)
from tests.factories import (
    REDIS_URL,
    ApiClient,
    admin_api,
    closing_maker,
    create_card,
    create_program,
    make_app,
)
from tests.google_server import GoogleWalletTestServer

ISSUER_ID = "3388000000012345678"
REDEMPTION_CODE = "PP1:CARD1:0:ABCDEFGHIJKLMNOPQRSTUVWX"


@pytest.fixture(autouse=True)
def _no_regional_access_boundary_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """google-auth looks up the account's "allowed locations" at iamcredentials.googleapis.com
    in a background thread after each token exchange; tests must not talk to Google."""
    from google.oauth2 import service_account

    monkeypatch.setattr(service_account.Credentials,
                        "_is_regional_access_boundary_lookup_required", lambda self: False)


@pytest.fixture(scope="session")
def service_account_info() -> dict[str, str]:
    """A service-account key document (fresh RSA key) without a usable ``token_uri``."""
    return google_service_account_info(client_email="wallet@pointpass-test.iam.gserviceaccount.com")


@pytest.fixture
def wallet_server(service_account_info: dict[str, str],
                  tmp_path: Path) -> Iterator[GoogleWalletTestServer]:
    """A running test server whose service-account file (``server.sa_file``) points its
    ``token_uri`` at the server."""
    sa_file = tmp_path / "service-account.json"
    sa_file.write_text(json.dumps(service_account_info), encoding="utf-8")
    server = GoogleWalletTestServer(sa_file, issuer_id=ISSUER_ID)
    sa_file.write_text(json.dumps({**service_account_info, "token_uri": server.token_url}),
                       encoding="utf-8")
    server.sa_file = sa_file  # type: ignore[attr-defined]
    with server:
        yield server


def google_settings(server: GoogleWalletTestServer) -> dict[str, Any]:
    """App settings that sync Google Wallet with the test ``server``."""
    return {
        "GOOGLE_ISSUER_ID": ISSUER_ID,
        "GOOGLE_SERVICE_ACCOUNT": str(server.sa_file),  # type: ignore[attr-defined]
        "GOOGLE_API_URL": server.api_url,
        "GOOGLE_CALLBACK_KEYS_URL": server.keys_url,
        "GOOGLE_BACKOFF_SECONDS": 0.01,
    }


@pytest.fixture
def google_app(database: Any, tmp_path: Path,
               wallet_server: GoogleWalletTestServer) -> Iterator[Flask]:
    """The app on SQLite or PostgreSQL, syncing Google Wallet with the test server."""
    yield from make_app(database, tmp_path, **google_settings(wallet_server))


@pytest.fixture
def make_google_client(wallet_server: GoogleWalletTestServer) -> Iterator[Callable[..., Any]]:
    """Build clients of the test server (keyword arguments go to GoogleWalletClient);
    all are closed afterwards."""

    def build(rate_limiter: RateLimiter | None = None, **options: Any) -> GoogleWalletClient:
        options.setdefault("backoff_base", 0.01)
        options.setdefault("timeout", 5.0)
        return GoogleWalletClient(
            wallet_server.api_url,
            wallet_server.sa_file,  # type: ignore[attr-defined]
            rate_limiter or LocalRateLimiter(rate=1000),
            **options,
        )

    yield from closing_maker(build, GoogleWalletClient.close)


@pytest.fixture
def google_client(make_google_client: Callable[..., GoogleWalletClient]) -> GoogleWalletClient:
    return make_google_client()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.ConnectionError:
        pytest.fail(f"no Redis at {REDIS_URL}: the tests need a real Redis")
    yield connection
    connection.close()


@pytest.fixture
def limiter_key(redis_client: redis.Redis) -> Iterator[str]:
    key = f"pointpass:test:google-rate:{uuid.uuid4().hex}"
    yield key
    redis_client.delete(key)


def new_google_card(app: Flask) -> tuple[ApiClient, dict[str, Any], str, str]:
    """A program and a card made through the API of ``app`` (nothing settled yet): the
    admin API client, the program, the card's serial and its Google object id."""
    api = admin_api(app)
    program = create_program(api)
    serial = create_card(api, program, name="Ari")["serial_number"]
    return api, program, serial, f"{ISSUER_ID}.{serial}"


def class_content(**overrides: Any) -> LoyaltyClassContent:
    values: dict[str, Any] = {
        "issuer_id": ISSUER_ID,
        "program_slug": "kopi-test",
        "issuer_name": "Kopi Test",
        "program_name": {"en": "Kopi Rewards", "id": "Hadiah Kopi", "th": "รางวัลกาแฟ",
                         "ms": "Ganjaran Kopi"},
        "logo_url": "https://pointpass.test/static/logo.png",
        "background_color": "#1A2B3C",
        "country_code": "id",
        "callback_url": "https://pointpass.test/google/callbacks",
    }
    values.update(overrides)
    return LoyaltyClassContent(**values)


def object_content(**overrides: Any) -> LoyaltyObjectContent:
    values: dict[str, Any] = {
        "issuer_id": ISSUER_ID,
        "serial": "CARD1",
        "class_id": f"{ISSUER_ID}.kopi-test",
        "balance": 120,
        "barcode_value": REDEMPTION_CODE,
        "barcode_alternate_text": "CARD1",
        "account_id": "CARD1",
        "account_name": "Siti",
        "tier": "Silver",
        "text_modules": (
            TextModule("terms", {"en": "Terms", "id": "Ketentuan"}, "Points expire after a year."),
        ),
        "links": (Link("support", "https://pointpass.test/support", "Help"),),
    }
    values.update(overrides)
    return LoyaltyObjectContent(**values)
