"""The app's one Redis client (``POINTPASS_REDIS_URL``), made on first use.

Creating it opens no connection, so the service starts while Redis is unreachable; its
timeouts keep a Redis that does not answer from holding up a request for long.
"""

from __future__ import annotations

import redis
from flask import Flask

EXTENSION = "pointpass.redis"
TIMEOUT_SECONDS = 2


def redis_for(app: Flask) -> redis.Redis | None:
    """The app's Redis client; ``None`` without ``POINTPASS_REDIS_URL``."""
    client: redis.Redis | None = app.extensions.get(EXTENSION)
    url = app.config.get("REDIS_URL")
    if client is None and url:
        # Two threads may both make one: either is as good, and neither has connected yet.
        client = redis.Redis.from_url(str(url), socket_connect_timeout=TIMEOUT_SECONDS,
                                      socket_timeout=TIMEOUT_SECONDS)
        app.extensions[EXTENSION] = client
    return client
