"""Rate limits (Flask-Limiter): shared through Redis when configured, else per process."""

from __future__ import annotations

from flask import Flask, current_app, g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address


def _caller() -> str:
    """Limits count per API key (or signed-in staff member); anonymous callers per address."""
    principal = g.get("flask_httpauth_user") or g.get("staff_principal")
    if principal is not None:
        return f"key:{principal.id}"
    return f"ip:{get_remote_address()}"


limiter = Limiter(key_func=_caller, default_limits=[], headers_enabled=True)


def staff_limit() -> str:
    return str(current_app.config["STAFF_RATE_LIMIT"])


def init_app(app: Flask) -> None:
    app.config.setdefault("STAFF_RATE_LIMIT", "120/minute")
    app.config.setdefault("JOIN_RATE_LIMIT", "20/minute")  # sign-ups per address
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    app.config.setdefault("RATELIMIT_KEY_PREFIX", f"pointpass:{app.config['RQ_QUEUE']}")
    limiter.init_app(app)
