"""Draining the webhook outbox: sending due deliveries, backing off, giving up, disabling.

The same mechanism as the wallet outbox (:mod:`app.outbox.drain`), with its own rows and its
own coalesced job (``webhook-drain``), so a slow receiver never holds up a wallet push:

- :func:`app.webhooks.emit.emit` writes the deliveries in the transaction of the change and
  asks for a drain after commit;
- a drain leases a batch (``available_at`` moves past ``POINTPASS_WEBHOOK_LEASE_SECONDS``,
  the attempt is counted) and commits before sending, so a drain that dies mid-delivery
  leaves its deliveries to the next drain once the lease runs out; the periodic sweep
  (``app.wallet.sweep``) asks for a drain whenever deliveries are due. A delivery may so reach
  a receiver twice, with the same ``webhook-id`` (receivers deduplicate on it);
- the batch is sent concurrently (``POINTPASS_WEBHOOK_CONCURRENCY``), each POST with its own
  timeout, then every attempt is recorded;
- a failure (no answer, an error, a status outside 2xx, a redirect, a refused target) is
  retried after ``POINTPASS_WEBHOOK_RETRY_SECONDS`` (5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
  then every 10 h; each with up to 20 % jitter) until ``POINTPASS_WEBHOOK_RETRY_PERIOD_SECONDS``
  (3 days) after its first attempt, then the delivery has failed;
- an endpoint whose attempts have all failed for that period is disabled, with a record in
  the audit trail, and the console tells the program's admins.

Under rq the job only starts the drain in a thread of the worker process (:func:`drain_job`):
rq runs one job at a time, and a wallet push must not wait behind receivers.

A retry due before the next sweep wakes a drain itself (a timer in the process that ran the
drain; if that process dies, the sweep still finds the delivery due).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import delete, func, select, update

from app import audit, background, requestid
from app.extensions import db
from app.timeutil import utcnow
from app.webhooks import sender, signing, targets
from app.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

log = logging.getLogger("pointpass.webhooks")

DRAIN_KEY = "webhook-drain"
RETRY_SECONDS = (5, 300, 1800, 7200, 18000, 36000)
RETRY_PERIOD_SECONDS = 3 * 24 * 3600
JITTER = 0.2
DEFAULTS = {"WEBHOOK_TIMEOUT_SECONDS": 5, "WEBHOOK_LEASE_SECONDS": 120, "WEBHOOK_BATCH": 50,
            "WEBHOOK_CONCURRENCY": 8, "WEBHOOK_DRAIN_BUDGET_SECONDS": 30}


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: int
    endpoint_id: int
    attempts: int
    retry_until: datetime


@dataclass
class DrainStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    batches: int = 0


def setting(name: str) -> float:
    return float(current_app.config.get(name, DEFAULTS[name]))


def retry_schedule() -> tuple[float, ...]:
    """``POINTPASS_WEBHOOK_RETRY_SECONDS``: the waits after the 1st, 2nd ... failure (the last
    repeats), comma-separated seconds."""
    value = current_app.config.get("WEBHOOK_RETRY_SECONDS") or RETRY_SECONDS
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, int | float):
        value = [value]
    return tuple(float(part) for part in value)


def retry_period() -> timedelta:
    return timedelta(seconds=float(current_app.config.get("WEBHOOK_RETRY_PERIOD_SECONDS",
                                                          RETRY_PERIOD_SECONDS)))


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (with jitter)."""
    schedule = retry_schedule()
    return schedule[min(attempts, len(schedule)) - 1] * (1 + random.uniform(0, JITTER))  # noqa: S311 - jitter


def drain_after_commit() -> None:
    """Ask for a webhook drain once the current transaction commits (coalesced)."""
    background.enqueue_after_commit(drain_job, coalesce=DRAIN_KEY)


def request_drain() -> None:
    """Ask for a webhook drain now."""
    background.dispatcher().submit(drain_job, (), DRAIN_KEY)


# Under rq: the one thread of this process that drains webhooks, and whether a drain was
# asked for while it ran (it then drains again before it ends).
_runner_lock = threading.Lock()
_runner: dict[str, bool] = {"running": False, "again": False}


def drain_job() -> None:
    """The webhook drain's job. In ``pointpass worker`` (rq runs one job at a time) it hands
    the drain to a thread of the worker process and ends at once, so the worker goes on with
    its next job, a wallet push say, while receivers take their time; a dead worker's
    deliveries come back when their lease runs out. In-process it drains in the job's own
    thread of the pool."""
    if not isinstance(background.dispatcher(), background.RQDispatcher):
        drain()
        return
    with _runner_lock:
        if _runner["running"]:
            _runner["again"] = True
            return
        _runner["running"] = True
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    threading.Thread(target=_run, args=(app, requestid.current()), daemon=True,
                     name="pointpass-webhook-drain").start()


def _run(app: Flask, request_id: str) -> None:
    while True:
        try:
            with requestid.bound(request_id), app.app_context():
                drain()
        except Exception:  # the sweep asks again; the deliveries wait, leased or due
            log.exception("webhook drain failed")
        with _runner_lock:
            if not _runner["again"]:
                _runner["running"] = False
                return
            _runner["again"] = False


def sweep_task() -> None:
    """The periodic sweep's part: a drain when deliveries are due (those of a dead drain
    whose lease ran out, retries, replays), and the log kept to its retention."""
    due = db.session.scalar(select(WebhookDelivery.id).where(
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.available_at <= utcnow()).limit(1))
    db.session.rollback()
    if due is not None:
        request_drain()
    forget_old()


RETENTION_DAYS = 30
FORGET_BATCH = 1000


def forget_old() -> int:
    """Delete (and commit) up to :data:`FORGET_BATCH` events older than
    ``POINTPASS_WEBHOOK_RETENTION_DAYS`` (30) with nothing left to send, with their
    deliveries and attempts: the delivery log keeps that long. Returns how many."""
    days = float(current_app.config.get("WEBHOOK_RETENTION_DAYS", RETENTION_DAYS))
    pending = select(WebhookDelivery.id).where(
        WebhookDelivery.event_id == WebhookEvent.id,
        WebhookDelivery.status == DeliveryStatus.PENDING).exists()
    old = (select(WebhookEvent.id)
           .where(WebhookEvent.created_at < utcnow() - timedelta(days=days), ~pending)
           .order_by(WebhookEvent.created_at).limit(FORGET_BATCH))
    ids = list(db.session.scalars(old))
    if ids:
        db.session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(ids)))
    db.session.commit()
    return len(ids)


def claim(limit: int, lease_seconds: float) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries and commit; other drains skip them."""
    now = utcnow()
    due = (select(WebhookDelivery.id)
           .where(WebhookDelivery.status == DeliveryStatus.PENDING,
                  WebhookDelivery.available_at <= now)
           .order_by(WebhookDelivery.id).limit(limit).with_for_update(skip_locked=True))
    rows = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(due.scalar_subquery()))
        .values(available_at=now + timedelta(seconds=lease_seconds),
                attempts=WebhookDelivery.attempts + 1,
                retry_until=func.coalesce(WebhookDelivery.retry_until, now + retry_period()))
        .returning(WebhookDelivery.id, WebhookDelivery.event_id, WebhookDelivery.endpoint_id,
                   WebhookDelivery.attempts, WebhookDelivery.retry_until)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return [Claimed(*row) for row in sorted(rows)]


@dataclass(frozen=True)
class _Send:
    """What one delivery sends (read before sending, so no transaction is held)."""

    delivery: Claimed
    url: str
    secrets: tuple[str, ...]
    message_id: str
    body: str


def _prepare(batch: list[Claimed]) -> tuple[list[_Send], list[Claimed]]:
    """The sends of a batch, and the deliveries whose endpoint is disabled (not sent)."""
    endpoints = {e.id: e for e in db.session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.id.in_({row.endpoint_id for row in batch})))}
    events = {e.id: e for e in db.session.scalars(select(WebhookEvent).where(
        WebhookEvent.id.in_({row.event_id for row in batch})))}
    now = utcnow()
    sends, disabled = [], []
    for row in batch:
        endpoint, event = endpoints.get(row.endpoint_id), events.get(row.event_id)
        if endpoint is None or event is None or not endpoint.enabled:
            disabled.append(row)
            continue
        valid = [endpoint.secret]
        if endpoint.previous_secret and endpoint.previous_secret_until \
                and endpoint.previous_secret_until > now:
            valid.append(endpoint.previous_secret)
        sends.append(_Send(row, endpoint.url, tuple(valid), event.message_id, event.body))
    db.session.rollback()  # nothing written: end the read before the network
    return sends, disabled


def _send(app: Flask, item: _Send) -> sender.Outcome:
    """Check the target again (its name may resolve elsewhere now) and POST, signed now."""
    started = time.monotonic()
    with app.app_context():
        try:
            target = targets.check(item.url)
        except targets.TargetRefused as refused:
            return sender.Outcome(None, f"refused: {refused.detail}"[:200],
                                  int((time.monotonic() - started) * 1000))
        except Exception as error:  # a resolver's own failure: an attempt that failed
            log.exception("webhook target %s could not be checked", item.url)
            return sender.Outcome(None, f"target check failed: {type(error).__name__}",
                                  int((time.monotonic() - started) * 1000))
        timestamp = int(time.time())
        headers = {
            "webhook-id": item.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature_header(list(item.secrets), item.message_id,
                                                          timestamp, item.body),
        }
        return sender.post(target, item.body.encode(), headers,
                           timeout=setting("WEBHOOK_TIMEOUT_SECONDS"),
                           ca_file=app.config.get("WEBHOOK_CA_FILE") or None)


def drain() -> DrainStats:
    """Send every due delivery (the webhook drain job), for at most
    ``POINTPASS_WEBHOOK_DRAIN_BUDGET_SECONDS`` before handing over to a new job."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    stats = DrainStats()
    deadline = time.monotonic() + setting("WEBHOOK_DRAIN_BUDGET_SECONDS")
    workers = max(1, int(setting("WEBHOOK_CONCURRENCY")))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pointpass-webhook") as pool:
        while True:
            batch = claim(int(setting("WEBHOOK_BATCH")), setting("WEBHOOK_LEASE_SECONDS"))
            if not batch:
                break
            stats.batches += 1
            sends, disabled = _prepare(batch)
            outcomes = list(pool.map(lambda item: _send(app, item), sends))
            _record(list(zip(sends, outcomes, strict=True)), disabled, stats)
            if time.monotonic() > deadline:
                request_drain()  # let other jobs (wallet pushes) run in between
                return stats
    _wake_for_next_retry(app)
    return stats


def _record(results: list[tuple[_Send, sender.Outcome]], disabled: list[Claimed],
            stats: DrainStats) -> None:
    now = utcnow()
    for row in disabled:
        db.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row.id).values(
            status=DeliveryStatus.FAILED, last_error="endpoint disabled"))
        stats.failed += 1
    succeeded_endpoints: set[int] = set()
    failed_endpoints: set[int] = set()
    gave_up: dict[int, int] = {}  # endpoint id: a delivery of it that failed for the period
    for item, outcome in results:
        row = item.delivery
        stats.sent += 1
        values: dict[str, Any] = {"last_status_code": outcome.status_code,
                                  "last_error": outcome.error}
        if outcome.succeeded:
            values.update(status=DeliveryStatus.DELIVERED, delivered_at=now)
            stats.delivered += 1
            succeeded_endpoints.add(row.endpoint_id)
        else:
            failed_endpoints.add(row.endpoint_id)
            if now >= row.retry_until:
                values.update(status=DeliveryStatus.FAILED)
                stats.failed += 1
                gave_up[row.endpoint_id] = row.id
            else:
                next_at = now + timedelta(seconds=retry_delay(row.attempts))
                values.update(available_at=min(next_at, row.retry_until))
        # Only while this drain's lease holds (a drain that outlived its lease leaves the
        # delivery to the one that took it over).
        held = db.session.execute(update(WebhookDelivery).where(
            WebhookDelivery.id == row.id, WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.attempts == row.attempts).values(**values)).rowcount  # type: ignore[attr-defined]
        if held or db.session.get(WebhookDelivery, row.id) is not None:  # not deleted since
            db.session.add(WebhookAttempt(
                delivery_id=row.id, attempted_at=now, duration_ms=outcome.duration_ms,
                status_code=outcome.status_code, error=outcome.error,
                succeeded=outcome.succeeded))
    if succeeded_endpoints:
        db.session.execute(update(WebhookEndpoint).where(
            WebhookEndpoint.id.in_(succeeded_endpoints)).values(failing_since=None))
    failing = failed_endpoints - succeeded_endpoints
    _note_failures(failing, {endpoint: delivery for endpoint, delivery in gave_up.items()
                             if endpoint in failing}, now)
    db.session.commit()


def _note_failures(endpoint_ids: Iterable[int], gave_up: dict[int, int],
                   now: datetime) -> None:
    """Endpoints that failed: remember since when; disable those failing for the period.

    ``gave_up`` maps endpoints to a delivery of theirs that has just failed for the whole
    period: such an endpoint is failing for the period too when no attempt succeeded since
    that delivery's first (its first attempt may have come a little after the event, so the
    endpoint's first failure a little less than a period ago)."""
    ids = list(endpoint_ids)
    if not ids:
        return
    db.session.execute(update(WebhookEndpoint).where(
        WebhookEndpoint.id.in_(ids), WebhookEndpoint.failing_since.is_(None))
        .values(failing_since=now))
    limit = now - retry_period()
    for endpoint in db.session.scalars(select(WebhookEndpoint).where(
            WebhookEndpoint.id.in_(ids), WebhookEndpoint.enabled.is_(True))):
        since = endpoint.failing_since
        if since is None:
            continue
        first = (db.session.scalar(select(func.min(WebhookAttempt.attempted_at)).where(
            WebhookAttempt.delivery_id == gave_up[endpoint.id]))
            if endpoint.id in gave_up else None)
        if since <= limit or (first is not None and since <= first):
            disable_failing(endpoint, now)


def disable_failing(endpoint: WebhookEndpoint, now: datetime) -> None:
    """Disable an endpoint that failed for the whole retry period (not committed): its
    pending deliveries fail, the audit trail records it, the console shows it."""
    endpoint.enabled = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = "failing"
    endpoint.updated_at = now
    db.session.execute(update(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint.id,
        WebhookDelivery.status == DeliveryStatus.PENDING,
    ).values(status=DeliveryStatus.FAILED, last_error="endpoint disabled"))
    audit.record("webhook.disable", program_id=endpoint.program_id,
                 target=f"webhook:{endpoint.id}", actor=audit.SYSTEM,
                 details={"reason": "failing", "failing_since": endpoint.failing_since
                          and endpoint.failing_since.isoformat()})
    log.warning("webhook endpoint %d of program %d disabled: every attempt failed since %s",
                endpoint.id, endpoint.program_id, endpoint.failing_since)


# One timer per process: the earliest retry due before the next sweep wakes a drain.
_timer_lock = threading.Lock()
_timer: tuple[float, threading.Timer] | None = None


def _wake_for_next_retry(app: Flask) -> None:
    next_at = db.session.scalar(select(func.min(WebhookDelivery.available_at)).where(
        WebhookDelivery.status == DeliveryStatus.PENDING))
    db.session.rollback()
    if next_at is None:
        return
    delay = max(0.0, (next_at - utcnow()).total_seconds())
    if delay > float(app.config.get("OUTBOX_SWEEP_SECONDS", 30)):
        return  # the sweep will find it
    global _timer
    at = time.monotonic() + delay
    with _timer_lock:
        if _timer is not None and _timer[1].is_alive() and _timer[0] <= at:
            return
        if _timer is not None:
            _timer[1].cancel()
        timer = threading.Timer(delay + 0.05, _wake, (app,))
        timer.daemon = True
        _timer = (at, timer)
        timer.start()


def _wake(app: Flask) -> None:
    try:
        with app.app_context():
            request_drain()
    except RuntimeError:  # the in-process pool has shut down (the app is stopping)
        log.debug("no webhook drain asked for: the app is stopping")
    except Exception:  # the sweep finds the delivery anyway
        log.exception("could not ask for a webhook drain")
