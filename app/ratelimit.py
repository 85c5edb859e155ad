"""Rate limits with the ``limits`` library: shared through Redis when configured, else per
process.

Scans and redemptions count per staff key, sign-ups, staff sign-ins and PassKit device logs
per address. A limit is written as ``120/minute`` (fixed windows). A view decorated with
:func:`limit` raises :class:`RateLimited` (429 with ``Retry-After``) once its caller used up
the window. The check is one storage call: it runs on every scan and redemption, so it stays
off the framework (Flask-Limiter cost a quarter of a millisecond of CPU per request here).

If the storage (Redis) cannot be reached, requests are let through and a warning is logged:
a till must not stop taking redemptions because the limiter's store is down.

Without Redis the counters live in the process (:class:`ProcessCounters`), each gunicorn
worker counting on its own. limits' own ``memory://`` storage is not used by default: it
starts a timer thread every 10 ms to drop expired counters, and under load each of those
starts held up the request that triggered it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app, g, request
from limits import RateLimitItem, parse
from limits.storage import RedisStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.errors import DomainError
from app.redisclient import redis_for

log = logging.getLogger("pointpass.ratelimit")

P = ParamSpec("P")
R = TypeVar("R")

EXTENSION = "pointpass.ratelimit"


class RateLimited(DomainError, code="rate-limited", status=429, title="Too many requests"):
    """The caller used up the window; ``Retry-After`` says when the next one starts."""


class ProcessCounters(Storage):
    """Fixed-window counters in this process (``pointpass-memory://``), with no thread.

    A counter that has expired starts again when its key is next counted; expired counters
    of keys no longer used are swept, inline, at most every ``sweep_seconds``. Only the
    fixed-window strategy is supported (it is the one Pointpass uses). ``clock`` gives the
    time in seconds since the epoch (tests pass a fake one).
    """

    STORAGE_SCHEME = ["pointpass-memory"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False,
                 sweep_seconds: float = 60.0, clock: Callable[[], float] = time.time,
                 **options: Any) -> None:
        super().__init__(uri, wrap_exceptions, **options)
        self._clock = clock
        self._counts: dict[str, list[float]] = {}  # key -> [count, expires at]
        self._lock = threading.Lock()
        self._sweep_seconds = float(sweep_seconds)
        self._next_sweep = self._clock() + self._sweep_seconds

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return ()  # nothing to reach, nothing to fail

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                self._next_sweep = now + self._sweep_seconds
                for stale in [k for k, (_, ends) in self._counts.items() if ends <= now]:
                    del self._counts[stale]
            counter = self._counts.get(key)
            if counter is None or counter[1] <= now:
                counter = self._counts[key] = [0, now + expiry]
            counter[0] += amount
            return int(counter[0])

    def get(self, key: str) -> int:
        counter = self._counts.get(key)
        return int(counter[0]) if counter and counter[1] > self._clock() else 0

    def get_expiry(self, key: str) -> float:
        now = self._clock()
        counter = self._counts.get(key)
        return counter[1] if counter and counter[1] > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            cleared = len(self._counts)
            self._counts.clear()
        return cleared

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def __len__(self) -> int:
        return len(self._counts)


def by_caller() -> str:
    """Per API key (or signed-in staff member); anonymous callers per address."""
    principal = g.get("flask_httpauth_user")
    if principal is not None:
        return f"key:{principal.id}"
    till = g.get("till_actor")  # app.staff.actor.TillActor, on the staff pages
    if till is not None:
        return f"key:{till.id}" if till.kind == "api_key" else f"{till.kind}:{till.id}"
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


def counters() -> Storage:
    """The store the limits count in (Redis when configured): :mod:`app.lockout` keeps its
    counts there too."""
    limiter: FixedWindowRateLimiter = current_app.extensions[EXTENSION]
    return limiter.storage


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
    app.config.setdefault("FEEDBACK_RATE_LIMIT", "20/minute")  # feedback answers per address
    # PassKit device log posts per address (the endpoint has no authentication).
    app.config.setdefault("DEVICE_LOG_RATE_LIMIT", "30/minute")
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL")
                          or "pointpass-memory://")
    app.config.setdefault("RATELIMIT_KEY_PREFIX", f"pointpass:{app.config['RQ_QUEUE']}")
    for rate in (app.config["STAFF_RATE_LIMIT"], app.config["JOIN_RATE_LIMIT"],
                 app.config["DEVICE_LOG_RATE_LIMIT"], app.config["FEEDBACK_RATE_LIMIT"]):
        _parsed(str(rate))  # a malformed setting fails at start-up, not on the first scan
    app.extensions[EXTENSION] = FixedWindowRateLimiter(_storage(app))


def _storage(app: Flask) -> Storage:
    """The counters' store: the app's Redis client (its connection pool) when the setting
    names ``POINTPASS_REDIS_URL``; any other URI gets a store of its own."""
    uri = str(app.config["RATELIMIT_STORAGE_URI"])
    connection = redis_for(app)
    if connection is not None and uri == app.config.get("REDIS_URL"):
        return RedisStorage(uri, connection_pool=connection.connection_pool)
    return storage_from_string(uri)  # type: ignore[return-value]
