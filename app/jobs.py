"""Background jobs, started only once the transaction that asked for them has committed.

With ``POINTPASS_REDIS_URL`` set, jobs go to an ``rq`` queue drained by ``pointpass worker``;
unset, they run on a small in-process thread pool. Either way a job is a plain importable
function taking plain arguments, run inside an application context: it only translates the job
into a call to a domain service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from app.extensions import db

log = logging.getLogger("pointpass.jobs")

_PENDING = "pointpass.pending_jobs"
EXTENSION = "pointpass.jobs"

Job = Callable[..., Any]


def enqueue_after_commit(func: Job, *args: Any, coalesce: str | None = None) -> None:
    """Run ``func(*args)`` in the background after the current transaction commits.

    Nothing runs if the transaction rolls back. With ``coalesce``, at most one such job waits
    to start at a time: asking again while one waits adds nothing (one that has started does
    not count, so work committed while it runs gets a run of its own).
    """
    session = db.session()
    if not session.in_transaction():
        # Start the (lazy, connection-less) transaction the job belongs to, so that a rollback
        # with nothing else done still discards it.
        session.begin()
    pending = session.info.setdefault(_PENDING, [])
    if coalesce is None or all(key != coalesce for _, _, key in pending):
        pending.append((func, args, coalesce))


def run_coalesced(key: str, path: str, *args: Any) -> Any:
    """The rq entry point of a coalesced job: free its key, then run it."""
    import importlib

    target = dispatcher()
    if isinstance(target, RQDispatcher):
        target.connection.delete(target.coalesce_key(key))
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(*args)


def dispatcher() -> Dispatcher:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def job_path(func: Job) -> str:
    return f"{func.__module__}.{func.__qualname__}"


class Dispatcher:
    """Where committed jobs go."""

    def submit(self, func: Job, args: tuple[Any, ...], coalesce: str | None = None) -> None:
        raise NotImplementedError

    def wait(self, timeout: float = 30) -> None:
        """Block until in-process jobs submitted so far have finished (tests, CLI)."""

    def shutdown(self) -> None:
        pass


class InProcessDispatcher(Dispatcher):
    """Runs jobs on a thread pool inside this process, each in its own app context."""

    def __init__(self, app: Flask, workers: int = 2) -> None:
        self._app = app
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pointpass-job")
        self._futures: set[Future[None]] = set()
        self._waiting: set[str] = set()
        self._lock = threading.Lock()

    def _run(self, func: Job, args: tuple[Any, ...], coalesce: str | None = None) -> None:
        if coalesce is not None:
            with self._lock:
                self._waiting.discard(coalesce)
        with self._app.app_context():
            try:
                func(*args)
            except Exception:
                log.exception("job %s%r failed", job_path(func), args)
                db.session.rollback()

    def submit(self, func: Job, args: tuple[Any, ...], coalesce: str | None = None) -> None:
        with self._lock:
            if coalesce is not None:
                if coalesce in self._waiting:
                    return
                self._waiting.add(coalesce)
            future = self._pool.submit(self._run, func, args, coalesce)
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def wait(self, timeout: float = 30) -> None:
        # Jobs may submit jobs (a drain that finds more work): wait until none is left.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = set(self._futures)
            if not pending:
                return
            wait(pending, timeout=max(0.0, deadline - time.monotonic()))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class RQDispatcher(Dispatcher):
    """Sends jobs to an ``rq`` queue; falls back to in-process if Redis cannot be reached."""

    def __init__(self, app: Flask, redis_url: str, queue_name: str) -> None:
        from redis import Redis
        from rq import Queue

        self.connection = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.queue = Queue(queue_name, connection=self.connection)
        self.queue_name = queue_name
        self._fallback = InProcessDispatcher(app, workers=1)

    def coalesce_key(self, key: str) -> str:
        return f"pointpass:{self.queue_name}:waiting:{key}"

    def submit(self, func: Job, args: tuple[Any, ...], coalesce: str | None = None) -> None:
        from redis.exceptions import RedisError
        from rq import Retry

        retry = Retry(max=5, interval=[1, 5, 30, 120])
        try:
            if coalesce is None:
                self.queue.enqueue(job_path(func), *args, retry=retry)
            # The key expires, so a job lost with a killed worker does not block the next one.
            elif self.connection.set(self.coalesce_key(coalesce), 1, nx=True, ex=60):
                self.queue.enqueue(run_coalesced, coalesce, job_path(func), *args, retry=retry)
        except RedisError as exc:
            log.warning("Redis unreachable (%s); running job %s in-process", exc, job_path(func))
            self._fallback.submit(func, args, coalesce)

    def wait(self, timeout: float = 30) -> None:
        self._fallback.wait(timeout)

    def shutdown(self) -> None:
        self._fallback.shutdown()


class Sweeper(threading.Thread):
    """Every ``interval`` seconds, submit ``func`` as a coalesced job (a periodic sweep)."""

    def __init__(self, app: Flask, func: Job, key: str, interval: float) -> None:
        super().__init__(name=f"pointpass-sweep-{key}", daemon=True)
        self._app, self._func, self._key, self._interval = app, func, key, interval
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                with self._app.app_context():
                    dispatcher().submit(self._func, (), self._key)
            except Exception:
                log.exception("periodic %s could not be submitted", self._key)

    def stop(self) -> None:
        self._stopping.set()


@event.listens_for(Session, "after_commit")
def _dispatch_committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        target = dispatcher()
        for func, args, coalesce in pending:
            target.submit(func, args, coalesce)


@event.listens_for(Session, "after_soft_rollback")
def _discard_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    # "soft": fires even when no database transaction had begun yet; only the outermost
    # transaction owns the pending jobs (a rolled-back savepoint does not drop them).
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)


def init_app(app: Flask) -> None:
    redis_url = app.config.get("REDIS_URL")
    if redis_url:
        app.extensions[EXTENSION] = RQDispatcher(app, redis_url, app.config["RQ_QUEUE"])
    else:
        app.extensions[EXTENSION] = InProcessDispatcher(app)
