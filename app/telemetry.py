"""The service's counters, for ``GET /metrics`` (``app.metrics``): what happened, counted where
it happens.

The bottom of the metrics: it imports only ``prometheus_client``, so the domain modules that
count (the ledger, the APNs and Google channels) import it without importing the view that
serves them. Every metric is named ``pointpass_...`` and lives in :data:`REGISTRY`, not in
``prometheus_client``'s default registry (whose process metrics are not named so).

Under gunicorn (``app/gunicorn_conf.py``) ``PROMETHEUS_MULTIPROC_DIR`` is set before the
workers start: each worker then writes its values to files there, and a scrape answered by
any worker adds up every worker's. The metrics here are all labelled, so no value exists
before a worker first counts: each label combination's child is made on first use, in the
process that counts, and kept in a :class:`Children` map so the hot path is one dictionary
lookup and one increment (no label checks, no lock of the metric's own).
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# Request latency buckets, in seconds: an earn takes milliseconds; a pass download up to ~1 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Methods counted by name; anything else a client sends is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"  # requests no URL rule matched (404s, mostly)


class Children(dict[Any, Any]):
    """A metric's children by label values (a value, or a tuple of them), made on first use."""

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, key: Any) -> Any:
        child = self.metric.labels(*(key if isinstance(key, tuple) else (key,)))
        self[key] = child
        return child


REQUESTS = Counter("pointpass_http_requests", "HTTP requests served, by route (the URL rule), "
                   "method and status.", ["route", "method", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("pointpass_http_request_duration_seconds",
                            "Time to answer an HTTP request (until the response starts), by "
                            "route and method.", ["route", "method"], buckets=LATENCY_BUCKETS,
                            registry=REGISTRY)
POSTINGS = Children(Counter("pointpass_ledger_postings", "Ledger postings committed, by kind "
                            "(a replayed idempotency key is not a posting).", ["kind"],
                            registry=REGISTRY))
APNS_PUSHES = Children(Counter("pointpass_apns_pushes", "APNs pushes by outcome and reason "
                               "(APNs' reason, 'connection' for a connection failure, "
                               "'not-configured' or 'already-current' when pushes are "
                               "skipped).",
                               ["outcome", "reason"], registry=REGISTRY))
GOOGLE_SYNCS = Children(Counter("pointpass_google_syncs", "Google Wallet syncs of a card by "
                                "outcome (sent, current, busy, retry, refused, unreachable).",
                                ["outcome"], registry=REGISTRY))

_requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def count_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request; ``route`` is its URL rule (never the raw path)."""
    key = (route, method if method in METHODS else "other", status)
    children = _requests.get(key)
    if children is None:
        children = _requests[key] = (REQUESTS.labels(route, key[1], str(status)),
                                     REQUEST_SECONDS.labels(route, key[1]))
    children[0].inc()
    children[1].observe(seconds)


# An APNs reason is one word ("BadDeviceToken"); anything else came from a connection error.
_APNS_REASON = re.compile(r"[A-Za-z]{1,40}")


def count_push(outcome: str, status: int | None, reason: str | None) -> None:
    """Count one push result: its outcome and APNs' reason (bounded to APNs' words)."""
    word = (reason or "").split(" ", 1)[0]
    if _APNS_REASON.fullmatch(word):
        label = word
    elif status is None and reason:
        label = "connection"
    else:
        label = "none" if outcome == "delivered" else "other"
    APNS_PUSHES[(str(outcome), label)].inc()
