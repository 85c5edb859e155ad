"""``GET /metrics``: the service in Prometheus' text format (``prometheus_client``).

What happened is counted where it happens (``app.telemetry``: requests, postings, pushes,
Google syncs); what is waiting is read when Prometheus asks, by one query each
(:class:`BacklogCollector`: the outbox per channel, marketer updates per status, the rq
queue), so nothing runs in the background. Under gunicorn the counts of every worker are
added up (``prometheus_client``'s multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, set up by
``app/gunicorn_conf.py``); without it (the development server, the tests) this process's own.

``POINTPASS_METRICS_TOKEN``, when set, is required as ``Authorization: Bearer <token>``;
unset, the endpoint is open and the proxy in front must keep it from the public. Like
``/healthz``, it is not in the OpenAPI document.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app import redisclient, telemetry
from app.errors import Unauthorized
from app.extensions import db
from app.outbox import status as outbox_status
from app.outbox.models import PassUpdate, UpdateStatus

log = logging.getLogger("pointpass.metrics")

bp = Blueprint("metrics", __name__)

# Where Flask leaves the matched URL rule for the WSGI middleware that counts the request.
ROUTE = "pointpass.route"  # the environ key of the URL rule a request matched


@bp.get("/metrics")
def metrics() -> Response:
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("/metrics needs the metrics token: Authorization: Bearer "
                               "<POINTPASS_METRICS_TOKEN>.",
                               headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    registry = CollectorRegistry(auto_describe=False)
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry.register(_ProcessCounts())
    registry.register(BacklogCollector(current_app._get_current_object()))  # type: ignore[attr-defined]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class _ProcessCounts:
    """This process's counters (no multiprocess directory: one process serves)."""

    def collect(self) -> Iterable[Metric]:
        return telemetry.REGISTRY.collect()


class BacklogCollector:
    """What is waiting, read at scrape time: one query per table, one Redis command.

    A source that does not answer leaves its metrics out of the scrape (and logs why): the
    counters still come through.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._guarded("the outbox", self._outbox, SQLAlchemyError)
        yield from self._guarded("pass updates", self._updates, SQLAlchemyError)
        yield from self._guarded("the rq queue", self._queue, RedisError)

    def _guarded(self, what: str, source: Callable[[], list[Metric]],
                 errors: type[Exception]) -> list[Metric]:
        try:
            return source()
        except errors as error:
            if isinstance(error, SQLAlchemyError):
                db.session.rollback()
            log.warning("metrics: %s left out, it did not answer: %s", what,
                        type(getattr(error, "orig", None) or error).__name__)
            return []

    def _outbox(self) -> list[Metric]:
        depth = GaugeMetricFamily("pointpass_outbox_depth", "Card changes not yet told to a "
                                  "wallet, by channel.", labels=["channel"])
        age = GaugeMetricFamily("pointpass_outbox_oldest_age_seconds", "Age of the oldest card "
                                "change not yet told to a wallet, by channel (0 when none).",
                                labels=["channel"])
        for backlog in outbox_status.status().channels:  # what `pointpass outbox status` shows
            depth.add_metric([backlog.channel], backlog.rows)
            age.add_metric([backlog.channel], backlog.oldest_age_seconds or 0.0)
        return [depth, age]

    def _updates(self) -> list[Metric]:
        counts: dict[str, int] = {status.value: 0 for status in UpdateStatus}
        for status, count in db.session.execute(
                select(PassUpdate.status, func.count()).group_by(PassUpdate.status)).all():
            counts[str(status)] = count
        db.session.rollback()
        gauge = GaugeMetricFamily("pointpass_pass_updates", "Marketer pass updates by status.",
                                  labels=["status"])
        for status, count in counts.items():
            gauge.add_metric([status], count)
        return [gauge]

    def _queue(self) -> list[Metric]:
        client = redisclient.redis_for(self.app)
        if client is None:
            return []  # jobs run in-process: no queue
        name = self.app.config["RQ_QUEUE"]
        gauge = GaugeMetricFamily("pointpass_rq_queue_depth", "Jobs waiting in the rq queue.",
                                  labels=["queue"])
        gauge.add_metric([name], Queue(name, connection=client).count)
        return [gauge]


class CountRequests:
    """WSGI middleware: count each request by its URL rule, method and status, and time it
    until its response starts."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        status = 500

        def start(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            nonlocal status
            status = int(status_line[:3])
            return start_response(status_line, headers, exc_info)

        try:
            return self.wsgi_app(environ, start)
        finally:
            telemetry.count_request(environ.get(ROUTE, telemetry.UNMATCHED_ROUTE),
                                    environ.get("REQUEST_METHOD", ""), status,
                                    time.perf_counter() - started)


def _note_route(response: Response) -> Response:
    rule = request.url_rule
    if rule is not None:
        request.environ[ROUTE] = rule.rule
    return response


def init_app(app: Flask) -> None:
    """Serve ``/metrics`` and count every request."""
    app.register_blueprint(bp)
    app.after_request(_note_route)
    app.wsgi_app = CountRequests(app.wsgi_app)  # type: ignore[method-assign]
