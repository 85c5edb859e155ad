"""Liveness and readiness, for load balancers and process managers.

``GET /healthz``: the process serves (no database, no Redis). ``GET /readyz``: 200 only when
the database answers, its schema is the code's (``pointpass db upgrade`` has run) and Redis
answers when configured; otherwise 503 naming each failed check. Neither is in the OpenAPI
document, which describes the API under ``/api/v1``.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy import exc as sa_exc

from app import redisclient, schemacheck

log = logging.getLogger("pointpass.health")

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    ready, checks = readiness(current_app._get_current_object())  # type: ignore[attr-defined]
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


def readiness(app: Flask) -> tuple[bool, dict[str, str]]:
    """Whether the app can serve, and each check's outcome: the database, its schema, Redis.
    A failure is logged with the driver's message; the answer names only its kind."""
    checks: dict[str, str] = {}
    failed: list[str] = []
    reasons: list[str] = []  # for the log: the drivers' messages name hosts, not secrets
    try:
        found = schemacheck.schema(app)
    except sa_exc.SQLAlchemyError as error:
        checks["database"] = f"unreachable ({_why(error)})"
        reasons.append(f"database: {_first_line(error)}")
        checks["schema"] = "unknown: the database did not answer"
        failed += ["database", "schema"]
    else:
        checks["database"] = "ok"
        checks["schema"] = found.detail
        if not found.ready:
            failed.append("schema")
            reasons.append(f"schema: {found.detail}")

    client = redisclient.redis_for(app)
    if client is None:
        checks["redis"] = "not configured"
    else:
        try:
            client.ping()
            checks["redis"] = "ok"
        except RedisError as error:
            checks["redis"] = f"unreachable ({_why(error)})"
            reasons.append(f"redis: {_first_line(error)}")
            failed.append("redis")

    if failed:
        log.warning("not ready: %s", "; ".join(reasons))
    return not failed, checks


def _why(error: BaseException) -> str:
    """The kind of failure, without the driver's message (it names hosts and users)."""
    original = getattr(error, "orig", None) or error
    return type(original).__name__


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0][:300]


def init_app(app: Flask) -> None:
    schemacheck.init_app(app)
    app.register_blueprint(bp)
