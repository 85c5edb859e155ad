"""Rate limits with the ``limits`` library: shared through Redis when configured, else per
process.

Scans and redemptions count per staff key, sign-ups and staff sign-ins per address. A limit is
written as ``120/minute`` (fixed windows). A view decorated with :func:`limit` raises
:class:`RateLimited` (429 with ``Retry-After``) once its caller used up the window. The check
is one storage call: it runs on every scan and redemption, so it stays off the framework
(Flask-Limiter cost a quarter of a millisecond of CPU per request here).

If the storage (Redis) cannot be reached, requests are let through and a warning is logged:
a till must not stop taking redemptions because the limiter's store is down.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app, g, request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.errors import DomainError

log = logging.getLogger("pointpass.ratelimit")

P = ParamSpec("P")
R = TypeVar("R")

EXTENSION = "pointpass.ratelimit"


class RateLimited(DomainError):
    status = 429
    code = "rate-limited"
    title = "Too many requests"


def by_caller() -> str:
    """Per API key (or signed-in staff member); anonymous callers per address."""
    principal = g.get("flask_httpauth_user") or g.get("staff_principal")
    if principal is not None:
        return f"key:{principal.id}"
    return by_address()


def by_address() -> str:
    return f"ip:{request.remote_addr or '-'}"


@lru_cache(maxsize=64)
def _parsed(limit: str) -> RateLimitItem:
    return parse(limit)


def check(scope: str, limit: str, caller: str) -> None:
    """Count one request of ``caller`` against ``limit`` in ``scope``; 429 when over it."""
    limiter: FixedWindowRateLimiter = current_app.extensions[EXTENSION]
    item = _parsed(limit)
    key = f"{current_app.config['RATELIMIT_KEY_PREFIX']}:{scope}:{caller}"
    try:
        if limiter.hit(item, key):
            return
        reset = limiter.get_window_stats(item, key).reset_time
    except Exception as error:  # the store is down: let the request through
        log.warning("Rate limit not checked (%s: %s)", type(error).__name__, error)
        return
    retry_after = max(1, math.ceil(reset - time.time()))
    raise RateLimited(f"Too many requests: the limit is {limit}. Try again in {retry_after} s.",
                      headers={"Retry-After": str(retry_after)})


def limit(setting: str | None = None, *, fixed: str | None = None,
          key: Callable[[], str] = by_caller, methods: tuple[str, ...] | None = None,
          ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Limit a view to the rate in config ``setting`` (or the ``fixed`` rate), counted per
    ``key()``; only for ``methods`` when given. Apply it after authentication, so the caller
    is known."""
    if (setting is None) == (fixed is None):
        raise TypeError("give a setting name or a fixed rate")

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        scope = f"{view.__module__}.{view.__qualname__}"

        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if methods is None or request.method in methods:
                rate = fixed or str(current_app.config[setting or ""])
                check(scope, rate, key())
            return view(*args, **kwargs)

        return wrapper

    return decorator


def init_app(app: Flask) -> None:
    app.config.setdefault("STAFF_RATE_LIMIT", "120/minute")
    app.config.setdefault("JOIN_RATE_LIMIT", "20/minute")  # sign-ups per address
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    app.config.setdefault("RATELIMIT_KEY_PREFIX", f"pointpass:{app.config['RQ_QUEUE']}")
    for rate in (app.config["STAFF_RATE_LIMIT"], app.config["JOIN_RATE_LIMIT"]):
        _parsed(str(rate))  # a malformed setting fails at start-up, not on the first scan
    storage: Any = storage_from_string(str(app.config["RATELIMIT_STORAGE_URI"]))
    app.extensions[EXTENSION] = FixedWindowRateLimiter(storage)
