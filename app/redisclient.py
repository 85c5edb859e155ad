"""The app's one Redis client (``POINTPASS_REDIS_URL``), made once in ``create_app``.

Everything that talks to Redis (the pass store, Google's per-issuer rate limit, the request
rate limiter, the rq worker) is handed this client, so a process keeps one connection pool
and every connection has the same timeouts: a Redis that does not answer costs a request a
few seconds, never a hung worker.
"""

from __future__ import annotations

import redis
from flask import Flask

EXTENSION = "pointpass.redis"

CONNECT_TIMEOUT_SECONDS = 2.0
# Commands of the service are quick; a reply that takes longer means Redis is in trouble.
SOCKET_TIMEOUT_SECONDS = 5.0
# A connection idle longer than this is PINGed before use, so a connection Redis or a proxy
# dropped is replaced instead of failing the command sent on it.
HEALTH_CHECK_INTERVAL_SECONDS = 30


def init_app(app: Flask) -> None:
    """Create the client when ``POINTPASS_REDIS_URL`` is set (no connection is opened yet)."""
    url = app.config.get("REDIS_URL")
    app.extensions[EXTENSION] = redis.Redis.from_url(
        str(url),
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
    ) if url else None


def redis_for(app: Flask) -> redis.Redis | None:
    """The app's Redis client; ``None`` without ``POINTPASS_REDIS_URL``."""
    return app.extensions.get(EXTENSION)  # type: ignore[no-any-return]


def worker_client(app: Flask) -> redis.Redis | None:
    """A client of its own for ``pointpass worker``'s rq loop (``None`` without Redis).

    rq lengthens its client's read timeout beyond its blocking wait for the next job (about
    415 s). On a pool of its own that leaves the app's client, which the jobs use (pass store,
    Google's limit), at :data:`SOCKET_TIMEOUT_SECONDS`.
    """
    shared = redis_for(app)
    if shared is None:
        return None
    pool = shared.connection_pool
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **pool.connection_kwargs))
