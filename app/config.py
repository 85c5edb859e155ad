"""Settings: defaults, then ``POINTPASS_*`` environment variables, then an explicit mapping.

Every public setting is an environment variable ``POINTPASS_<NAME>`` read with Flask's
``config.from_prefixed_env("POINTPASS")``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from passes.barcode import derive_key

DEFAULTS: dict[str, Any] = {
    # "production" unless told otherwise: a forgotten setting must fail closed.
    "ENV": "production",
    "DATABASE_URL": None,  # default: SQLite file in the instance folder
    "REDIS_URL": None,  # unset: jobs run in-process after the transaction commits
    "BASE_URL": "http://127.0.0.1:8000",
    "SECRET_KEY": None,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "RQ_QUEUE": "pointpass",
    # The session cookie (staff sign-in, form tokens) is not sent on cross-site posts. Set
    # here: Flask's own default (None) exists already, so a setdefault would change nothing.
    "SESSION_COOKIE_SAMESITE": "Lax",
}

DEVELOPMENT_ENVS = {"development", "testing"}


class ConfigError(RuntimeError):
    """The service cannot start with the given settings."""


def load(app: Flask, overrides: Mapping[str, Any] | None) -> None:
    """Fill ``app.config`` from defaults, the environment and ``overrides``, then check it."""
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("POINTPASS")
    if overrides:
        app.config.update(overrides)

    if not app.config["DATABASE_URL"]:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["DATABASE_URL"] = f"sqlite:///{Path(app.instance_path) / 'pointpass.db'}"
    app.config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(app.config["DATABASE_URL"])
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config["BASE_URL"] = str(app.config["BASE_URL"]).rstrip("/")
    app.config["SECRET_KEY"] = _secret_key(app)
    app.config["REDEMPTION_CODE_KEY"] = derive_key(
        app.config.get("BARCODE_KEY") or app.config["SECRET_KEY"]
    )


def is_development(app: Flask) -> bool:
    return app.config.get("ENV") in DEVELOPMENT_ENVS or app.testing


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for ``postgres://`` and ``postgresql://`` URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_options(url: str) -> dict[str, Any]:
    # A statement's parameters (pass authentication tokens, key hashes) stay out of error
    # messages, which reach the log in the traceback of an unexpected error.
    if url.startswith("sqlite"):
        # Writers wait for each other instead of failing with "database is locked".
        return {"connect_args": {"timeout": 30, "check_same_thread": False},
                "hide_parameters": True}
    # Dead connections are caught at checkout by app.dbutil.check_connections, not by a
    # "pre-ping" round trip on every request.
    # An unreachable host fails within seconds (a 503 to the client) instead of after the
    # operating system's TCP retries.
    return {"pool_size": 10, "max_overflow": 20, "connect_args": {"connect_timeout": 5},
            "hide_parameters": True}


def _secret_key(app: Flask) -> str:
    key = app.config.get("SECRET_KEY")
    if key:
        return str(key)
    if not is_development(app):
        raise ConfigError(
            "POINTPASS_SECRET_KEY is not set. It is required outside development: set it to a "
            "long random string (for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`), or set "
            "POINTPASS_ENV=development to run with a generated development key."
        )
    # Development: a generated key kept in the instance folder so sessions survive restarts.
    path = Path(app.instance_path) / "dev-secret-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
