"""Settings: defaults, then ``POINTPASS_*`` environment variables, then an explicit mapping.

Every public setting is an environment variable ``POINTPASS_<NAME>`` read with Flask's
``config.from_prefixed_env("POINTPASS")``.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from passes.barcode import derive_key

log = logging.getLogger("pointpass.config")

DEFAULTS: dict[str, Any] = {
    # "production" unless told otherwise: a forgotten setting must fail closed.
    "ENV": "production",
    "DATABASE_URL": None,  # default: SQLite file in the instance folder
    "REDIS_URL": None,  # unset: jobs run in-process after the transaction commits
    "BASE_URL": "http://127.0.0.1:8000",
    "SECRET_KEY": None,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    # Program artwork uploads (PUT /api/v1/programs/<id>/images/<kind>) only.
    "MAX_IMAGE_BYTES": 2 * 1024 * 1024,
    # Members CSV uploads in the console (/console/programs/<id>/members/import) only.
    "IMPORT_MAX_BYTES": 20 * 1024 * 1024,
    "RQ_QUEUE": "pointpass",
    # The session cookie (staff sign-in, form tokens) is not sent on cross-site posts. Set
    # here: Flask's own default (None) exists already, so a setdefault would change nothing.
    "SESSION_COOKIE_SAMESITE": "Lax",
    # How many proxies in front of the service set X-Forwarded-For/-Proto/-Host/-Port.
    "TRUSTED_PROXIES": 0,
}

DEVELOPMENT_ENVS = {"development", "testing"}


# Settings an operator may set without the prefix by mistake (the names other tools use).
UNPREFIXED = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")
# The least a production secret key may hold: 256 bits (32 random bytes).
SECRET_KEY_MIN_BITS = 256
# A key of fewer different characters is a repeated pattern, however long.
SECRET_KEY_MIN_DISTINCT = 10
GENERATE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


class ConfigError(RuntimeError):
    """The service cannot start with the given settings; the message says which and why."""


def load(app: Flask, overrides: Mapping[str, Any] | None,
         environ: Mapping[str, str] | None = None) -> None:
    """Fill ``app.config`` from defaults, the environment and ``overrides``, then check it.

    Every refusal is a :class:`ConfigError` naming the ``POINTPASS_*`` setting at fault.
    """
    environ = os.environ if environ is None else environ
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("POINTPASS")
    if overrides:
        app.config.update(overrides)

    _unprefixed_settings(app, environ, overrides or {})
    if not app.config["DATABASE_URL"]:
        if not is_development(app):
            raise ConfigError(
                "POINTPASS_DATABASE_URL is not set. It is required outside development, e.g. "
                "postgresql://user:password@host/pointpass (a SQLite file is allowed when "
                "named: sqlite:////var/lib/pointpass/pointpass.db).")
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["DATABASE_URL"] = f"sqlite:///{Path(app.instance_path) / 'pointpass.db'}"
    app.config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(app.config["DATABASE_URL"])
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config["BASE_URL"] = str(app.config["BASE_URL"]).rstrip("/")
    app.config["SECRET_KEY"] = _secret_key(app)
    app.config["REDEMPTION_CODE_KEY"] = derive_key(
        app.config.get("BARCODE_KEY") or app.config["SECRET_KEY"]
    )
    app.config["TRUSTED_PROXIES"] = _trusted_proxies(app.config["TRUSTED_PROXIES"])
    _google_needs_https(app)
    _smtp_url(app.config.get("SMTP_URL"))
    _webhook_networks(app.config.get("WEBHOOK_ALLOWED_NETWORKS"))


def _webhook_networks(value: Any) -> None:
    """``POINTPASS_WEBHOOK_ALLOWED_NETWORKS``, when set: comma-separated CIDRs."""
    for item in (value.split(",") if isinstance(value, str) else list(value or ())):
        if not str(item).strip():
            continue
        try:
            ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            raise ConfigError(
                "POINTPASS_WEBHOOK_ALLOWED_NETWORKS must be comma-separated networks such as "
                f"10.20.0.0/16,fd00::/8 (got {str(item).strip()!r}).") from None


SMTP_SCHEMES = ("smtp", "smtp+starttls", "smtps")


def _smtp_url(url: Any) -> None:
    """``POINTPASS_SMTP_URL``, when set, names a scheme we speak and a host."""
    if not url:
        return
    parts = urlsplit(str(url))
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise ConfigError(
            "POINTPASS_SMTP_URL must be smtp://host:port, smtp+starttls://user:password@host:587 "
            f"or smtps://user:password@host:465 (scheme {parts.scheme or 'missing'!r}"
            f"{', no host' if not parts.hostname else ''}).")


def trust_proxies(app: Flask) -> None:
    """Take the client's address, scheme, host and port from the ``X-Forwarded-*`` headers
    of ``POINTPASS_TRUSTED_PROXIES`` proxies (Werkzeug's ProxyFix); with 0, ignore them."""
    count = app.config["TRUSTED_PROXIES"]
    if count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count)


def _trusted_proxies(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or \
            not str(value).isdigit():
        raise ConfigError(f"POINTPASS_TRUSTED_PROXIES must be a number of proxies (0 or more), "
                          f"got {value!r}.")
    return int(value)


def _unprefixed_settings(app: Flask, environ: Mapping[str, str],
                         overrides: Mapping[str, Any]) -> None:
    """``DATABASE_URL`` and friends are not read: say so, rather than run on a default."""
    for name in UNPREFIXED:
        if not environ.get(name) or environ.get(f"POINTPASS_{name}") or name in overrides:
            continue
        message = (f"{name} is set in the environment but POINTPASS_{name} is not; Pointpass "
                   f"reads only POINTPASS_{name}")
        if name == "DATABASE_URL" and not is_development(app):
            raise ConfigError(f"{message}. Set POINTPASS_DATABASE_URL to the database to use.")
        log.warning("%s, so %s is ignored.", message, name)


def _google_needs_https(app: Flask) -> None:
    """Google Wallet fetches the logo and posts callbacks to the base URL: only over https."""
    if not (app.config.get("GOOGLE_ISSUER_ID") or app.config.get("GOOGLE_SERVICE_ACCOUNT")):
        return
    if not app.config["BASE_URL"].startswith("https://"):
        raise ConfigError(
            f"POINTPASS_BASE_URL must be an https URL when Google Wallet is configured "
            f"(POINTPASS_GOOGLE_ISSUER_ID, POINTPASS_GOOGLE_SERVICE_ACCOUNT): Google fetches "
            f"the program's logo and sends callbacks there. Got {app.config['BASE_URL']!r}.")


def secret_key_bits(key: str) -> float:
    """An upper estimate of a key's entropy in bits: its length times the bits of the
    character classes it uses (lower case, upper case, digits, ``-_``, other), and zero for
    a key of fewer than ``SECRET_KEY_MIN_DISTINCT`` different characters.

    ``secrets.token_urlsafe(32)`` and ``secrets.token_hex(32)`` reach 256 bits.
    """
    if len(set(key)) < SECRET_KEY_MIN_DISTINCT:
        return 0.0
    ascii_classes = [(str.islower, 26), (str.isupper, 26), (str.isdigit, 10),
                     (lambda c: c in "-_", 2)]
    pool = sum(size for test, size in ascii_classes
               if any(c.isascii() and test(c) for c in key))
    if any(not (c.isascii() and c.isalnum()) and c not in "-_" for c in key):
        pool += 32  # punctuation and anything else
    return len(key) * math.log2(pool)


def is_test_suite() -> bool:
    """Whether the current app runs the test suite (``POINTPASS_ENV=testing``): slow hashes
    (passwords, PINs) then use their schemes' least cost. Never a deployment's setting."""
    from flask import current_app, has_app_context

    return has_app_context() and current_app.config.get("ENV") == "testing"


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
    if key and not is_development(app) and secret_key_bits(str(key)) < SECRET_KEY_MIN_BITS:
        raise ConfigError(
            f"POINTPASS_SECRET_KEY is too short or too regular: it needs at least 32 random "
            f"bytes (256 bits). Generate one with `{GENERATE_A_KEY}` and give every instance "
            f"and worker the same key.")
    if key:
        return str(key)
    if not is_development(app):
        raise ConfigError(
            "POINTPASS_SECRET_KEY is not set. It is required outside development: set it to a "
            "long random string (for example the output of "
            f"`{GENERATE_A_KEY}`), or set "
            "POINTPASS_ENV=development to run with a generated development key."
        )
    # Development: a generated key kept in the instance folder so sessions survive restarts.
    path = Path(app.instance_path) / "dev-secret-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
