"""Background work: jobs started once the transaction that asked for them has committed,
where they run, and the periodic sweep.

:func:`enqueue_after_commit` hands a job to the dispatcher through :func:`app.dbutil.after_commit`
(so it waits for the posting's transaction or the Session's, whichever is current). With
``POINTPASS_REDIS_URL`` set, jobs go to an ``rq`` queue drained by ``pointpass worker``
(:class:`RQDispatcher`); unset, they run on a small in-process thread pool
(:class:`InProcessDispatcher`). :class:`Sweeper` submits a periodic job. Either way a job is a
plain importable function taking plain arguments, run inside an application context: it only
translates the job into a call to a domain service.

A job runs under the request id of the request that enqueued it (``app.requestid``), so its
log lines carry that id: in-process it is set around the call, with rq it travels in the
job's ``meta`` and :class:`Worker` sets it.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry, SimpleWorker
from rq.job import Job as RQJob

from app import dbutil, requestid
from app.extensions import db
from app.redisclient import redis_for

log = logging.getLogger("pointpass.jobs")

EXTENSION = "pointpass.jobs"

Job = Callable[..., Any]
# The key of an rq job's meta holding the id of the request that enqueued it.
META_REQUEST_ID = "request_id"


def enqueue_after_commit(func: Job, *args: Any, coalesce: str | None = None,
                         timeout: int | None = None) -> None:
    """Run ``func(*args)`` in the background after the current transaction commits.

    Nothing runs if the transaction rolls back. With ``coalesce``, at most one such job waits
    to start at a time: asking again while one waits adds nothing (one that has started does
    not count, so work committed while it runs gets a run of its own). ``timeout``: the
    seconds an rq worker lets the job run (rq's default, 180, when None).
    """
    dbutil.after_commit(partial(_submit, func, args, coalesce, requestid.current(), timeout),
                        key=None if coalesce is None else (EXTENSION, coalesce))


def _submit(func: Job, args: tuple[Any, ...], coalesce: str | None, request_id: str,
            timeout: int | None = None) -> None:
    # The dispatchers hand the job the current request id: the one that asked for it.
    with requestid.bound(request_id):
        if timeout is None:
            dispatcher().submit(func, args, coalesce)
        else:
            dispatcher().submit(func, args, coalesce, timeout=timeout)


def run_coalesced(key: str, path: str, *args: Any) -> Any:
    """The rq entry point of a coalesced job: free its key, then run it."""
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

    def submit(self, func: Job, args: tuple[Any, ...], coalesce: str | None = None,
               timeout: int | None = None) -> None:
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

    def _run(self, func: Job, args: tuple[Any, ...], coalesce: str | None,
             request_id: str) -> None:
        if coalesce is not None:
            with self._lock:
                self._waiting.discard(coalesce)
        with requestid.bound(request_id), self._app.app_context():
            try:
                func(*args)
            except Exception:
                log.exception("job %s%r failed", job_path(func), args)
                db.session.rollback()

    def submit(self, func: Job, args: tuple[Any, ...], coalesce: str | None = None,
               timeout: int | None = None) -> None:
        with self._lock:
            if coalesce is not None:
                if coalesce in self._waiting:
                    return
                self._waiting.add(coalesce)
            future = self._pool.submit(self._run, func, args, coalesce, requestid.current())
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

    def __init__(self, app: Flask, connection: Redis, queue_name: str) -> None:
        self.connection = connection
        self.queue = Queue(queue_name, connection=self.connection)
        self.queue_name = queue_name
        self._fallback = InProcessDispatcher(app, workers=1)

    def coalesce_key(self, key: str) -> str:
        return f"pointpass:{self.queue_name}:waiting:{key}"

    def submit(self, func: Job, args: tuple[Any, ...], coalesce: str | None = None,
               timeout: int | None = None) -> None:
        retry = Retry(max=5, interval=[1, 5, 30, 120])
        options: dict[str, Any] = {"retry": retry, "meta": {META_REQUEST_ID: requestid.current()}}
        if timeout is not None:
            options["job_timeout"] = timeout
        try:
            if coalesce is None:
                self.queue.enqueue(job_path(func), *args, **options)
            # The key expires, so a job lost with a killed worker does not block the next one.
            elif self.connection.set(self.coalesce_key(coalesce), 1, nx=True, ex=60):
                self.queue.enqueue(run_coalesced, coalesce, job_path(func), *args, **options)
        except RedisError as exc:
            log.warning("Redis unreachable (%s); running job %s in-process", exc, job_path(func))
            self._fallback.submit(func, args, coalesce)

    def wait(self, timeout: float = 30) -> None:
        self._fallback.wait(timeout)

    def shutdown(self) -> None:
        self._fallback.shutdown()


class Worker(SimpleWorker):  # type: ignore[misc] - rq's classes are partly typed
    """rq's worker running jobs in its own process (``pointpass worker``), each under the
    request id its ``meta`` carries."""

    def execute_job(self, job: RQJob, queue: Queue) -> None:
        with requestid.bound(job.meta.get(META_REQUEST_ID)):
            super().execute_job(job, queue)


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


def init_app(app: Flask) -> None:
    """Jobs go to rq on the app's Redis client (``app.redisclient``), else in-process."""
    connection = redis_for(app)
    if connection is not None:
        app.extensions[EXTENSION] = RQDispatcher(app, connection, app.config["RQ_QUEUE"])
    else:
        app.extensions[EXTENSION] = InProcessDispatcher(app)
