"""Start-up refuses settings the service cannot run safely with, naming the setting."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from app import create_app
from app.config import ConfigError

STRONG_KEY = secrets.token_urlsafe(48)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("POINTPASS_") or name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
            monkeypatch.delenv(name)


@pytest.fixture
def started() -> Iterator[list[Flask]]:
    """Apps a test started in production mode; their outbox sweepers are stopped after."""
    apps: list[Flask] = []
    yield apps
    for app in apps:
        sweeper = app.extensions.get("pointpass.sweeper")
        if sweeper is not None:
            sweeper.stop()
            sweeper.join(timeout=5)


def production(tmp_path: Path, started: list[Flask], **settings: Any) -> Flask:
    config = {"ENV": "production", "INSTANCE_PATH": tmp_path / "instance",
              "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "SECRET_KEY": STRONG_KEY,
              **settings}
    app = create_app({k: v for k, v in config.items() if v is not None})
    started.append(app)
    return app


def test_production_needs_an_explicit_database_url(tmp_path: Path,
                                                    started: list[Flask]) -> None:
    with pytest.raises(ConfigError, match="POINTPASS_DATABASE_URL is not set"):
        production(tmp_path, started, DATABASE_URL=None)
    # Named explicitly, SQLite is allowed.
    app = production(tmp_path, started)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'p.db'}"


def test_unprefixed_database_url_is_refused_in_production(
        tmp_path: Path, started: list[Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.internal/pointpass")
    with pytest.raises(ConfigError) as refused:
        production(tmp_path, started, DATABASE_URL=None)
    assert "DATABASE_URL is set in the environment but POINTPASS_DATABASE_URL is not" in str(
        refused.value)
    # With the prefixed one set as well, the other is only another program's setting.
    monkeypatch.setenv("POINTPASS_DATABASE_URL", f"sqlite:///{tmp_path / 'p.db'}")
    production(tmp_path, started, DATABASE_URL=None)


def test_development_warns_about_unprefixed_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="pointpass.config")
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
        monkeypatch.setenv(name, "ignored")
    app = create_app({"ENV": "development", "TESTING": True,
                      "INSTANCE_PATH": tmp_path / "instance"})
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"), "embedded default"
    assert app.config["REDIS_URL"] is None
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
        assert f"{name} is set in the environment but POINTPASS_{name} is not" in caplog.text


@pytest.mark.parametrize("key", ["abc", "k" * 64, secrets.token_urlsafe(24),
                                 "correct horse battery"],
                         ids=["short", "one-letter", "18-random-bytes", "words"])
def test_weak_secret_key_is_refused(tmp_path: Path, started: list[Flask], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        production(tmp_path, started, SECRET_KEY=key)
    message = str(refused.value)
    assert "POINTPASS_SECRET_KEY" in message and "secrets.token_urlsafe(48)" in message
    assert key not in message


@pytest.mark.parametrize("key", [secrets.token_urlsafe(32), secrets.token_hex(32)],
                         ids=["urlsafe", "hex"])
def test_32_random_bytes_are_enough(tmp_path: Path, started: list[Flask], key: str) -> None:
    assert production(tmp_path, started, SECRET_KEY=key).config["SECRET_KEY"] == key


def test_development_takes_any_secret_key(tmp_path: Path) -> None:
    app = create_app({"ENV": "development", "TESTING": True, "SECRET_KEY": "abc",
                      "INSTANCE_PATH": tmp_path / "instance"})
    assert app.config["SECRET_KEY"] == "abc"


def test_google_wallet_needs_an_https_base_url(tmp_path: Path, started: list[Flask],
                                               dev_certs: dict[str, Path]) -> None:
    google = {"GOOGLE_ISSUER_ID": "3388000000000000001",
              "GOOGLE_SERVICE_ACCOUNT": str(dev_certs["google_service_account"])}
    with pytest.raises(ConfigError, match="POINTPASS_BASE_URL must be an https URL"):
        production(tmp_path, started, BASE_URL="http://loyalty.example.com", **google)
    app = production(tmp_path, started, BASE_URL="https://loyalty.example.com", **google)
    assert app.extensions["pointpass.google"] is not None


@pytest.mark.parametrize("value", ["two", -1, True, 1.5])
def test_trusted_proxies_must_be_a_count(tmp_path: Path, started: list[Flask],
                                         value: Any) -> None:
    with pytest.raises(ConfigError, match="POINTPASS_TRUSTED_PROXIES"):
        production(tmp_path, started, TRUSTED_PROXIES=value)


def _seen_by_the_app(app: Flask) -> dict[str, str]:
    @app.get("/_test/client")
    def client() -> dict[str, str]:
        return {"addr": str(request.remote_addr), "scheme": request.scheme,
                "host": request.host}

    response = app.test_client().get("/_test/client", environ_base={"REMOTE_ADDR": "10.0.0.2"},
                                     headers={"X-Forwarded-For": "203.0.113.7",
                                              "X-Forwarded-Proto": "https",
                                              "X-Forwarded-Host": "loyalty.example.com"})
    return response.json  # type: ignore[no-any-return]


def test_trusted_proxy_headers_are_honoured(tmp_path: Path, started: list[Flask],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POINTPASS_TRUSTED_PROXIES", "1")
    app = production(tmp_path, started)
    assert _seen_by_the_app(app) == {"addr": "203.0.113.7", "scheme": "https",
                                     "host": "loyalty.example.com"}


def test_proxy_headers_are_ignored_by_default(tmp_path: Path, started: list[Flask]) -> None:
    app = production(tmp_path, started)
    assert _seen_by_the_app(app) == {"addr": "10.0.0.2", "scheme": "http", "host": "localhost"}
