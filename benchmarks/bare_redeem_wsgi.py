"""The redemption floor's transaction behind the thinnest WSGI app, for bench_redeem.py.

Not the service: no Flask, no validation, no authentication, no SQLAlchemy, one psycopg
connection per gunicorn thread. It shows what gunicorn and psycopg alone cost on this machine,
so the benchmark can tell how much of the service's gap to the floor is HTTP and how much is
the application stack. Settings: ``BARE_DSN`` (libpq URL) and ``BARE_STAFF_KEY_ID``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from benchmarks.common import floor_redeem

_local = threading.local()


def _connection() -> Any:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(os.environ["BARE_DSN"])
    return conn


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length))
    balance = floor_redeem(_connection(), body["serial"], environ["HTTP_IDEMPOTENCY_KEY"],
                           int(os.environ["BARE_STAFF_KEY_ID"]))
    answer = json.dumps({"balance": balance}).encode()
    start_response("201 Created", [("Content-Type", "application/json"),
                                   ("Content-Length", str(len(answer)))])
    return [answer]
