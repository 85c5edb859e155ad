"""The public APNs client: :class:`APNsClient` and the event-loop thread it runs on.

The event loop lives in a private daemon thread, so the synchronous
:meth:`APNsClient.push_many` can be called from any thread (an rq job, a request handler) and
still reuse the connection between calls; :meth:`APNsClient.apush_many` serves async callers
from the same loop. The work on that loop is the pool's (``pool.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from app.wallet.apple.apns.pool import Pool
from app.wallet.apple.apns.results import APNS_URL, APNsClientClosed, Outcome, PushResult
from app.wallet.apple.apns.tls import client_ssl_context

log = logging.getLogger("pointpass.apns")


class _LoopThread:
    """A private event loop in a daemon thread, so synchronous callers can share connections."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        started = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(started,), name="pointpass-apns", daemon=True
        )
        self.thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def stop(self) -> None:
        if self.pid != os.getpid():
            return  # inherited through fork: the thread does not exist in this process
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)


class APNsClient:
    """Push Wallet pass updates through APNs over one reused HTTP/2 connection.

    ``cert_path``/``key_path`` are the Pass Type ID certificate and its key (PEM; the key may
    be encrypted with ``key_password``, which is used once to load it and never stored).
    ``ca_file`` adds a CA to trust for the server (for a test server); Apple's servers are
    trusted through the system store. ``topic`` is the pass type identifier.
    ``max_concurrent_streams`` caps streams in flight (the server's SETTINGS may lower it).
    Pushes that meet 429, 5xx or a connection failure are retried ``retries`` times with
    exponential backoff from ``backoff_base`` seconds (capped at ``backoff_max``) plus jitter.
    A push unanswered for ``request_timeout`` seconds is retried on a new connection; an idle
    connection is PINGed every ``idle_ping`` seconds and replaced if the PING goes unanswered
    for ``request_timeout`` (a NAT that dropped the flow says nothing). The watchdog looks
    every ``watch_interval`` seconds (default: half the shorter of the two) and reads the
    time from ``clock``; ``jitter(low, high)`` picks the random part of each backoff (default
    :func:`random.uniform`; jitter, not secrets). Tests pass a fake clock and a recording
    jitter.

    Use as a context manager or call :meth:`close`. Safe to call from several threads.
    """

    def __init__(
        self,
        *,
        cert_path: str | Path,
        key_path: str | Path,
        topic: str,
        key_password: str | None = None,
        url: str = APNS_URL,
        ca_file: str | Path | None = None,
        max_concurrent_streams: int = 500,
        retries: int = 3,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        connect_timeout: float = 10.0,
        request_timeout: float = 15.0,
        idle_ping: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        watch_interval: float | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"APNs URL must be https://host[:port], not {url!r}")
        if not topic:
            raise ValueError("topic (the pass type identifier) is required")
        if max_concurrent_streams < 1 or retries < 0:
            raise ValueError("max_concurrent_streams must be >= 1 and retries >= 0")
        self.url = url
        self.topic = topic
        self.cert_path = str(cert_path)
        self.max_concurrent_streams = max_concurrent_streams
        self.retries = retries
        self._ssl_context = client_ssl_context(cert_path, key_path, key_password, ca_file)
        key_password = None  # drop the only reference: keep it out of tracebacks' locals
        self._engine_options: dict[str, Any] = {
            "host": parts.hostname,
            "port": parts.port or 443,
            "authority": parts.netloc.rpartition("@")[2],
            "ssl_context": self._ssl_context,
            "topic": topic,
            "max_concurrent_streams": max_concurrent_streams,
            "retries": retries,
            "backoff_base": backoff_base,
            "backoff_max": backoff_max,
            "connect_timeout": connect_timeout,
            "request_timeout": request_timeout,
            "idle_ping": idle_ping,
            "clock": clock,
            "watch_interval": watch_interval,
            "jitter": jitter,
        }
        self._counters: dict[str, int] = {outcome.value: 0 for outcome in Outcome}
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._engine: Pool | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"APNsClient(url={self.url!r}, topic={self.topic!r}, cert_path={self.cert_path!r}, "
            f"max_concurrent_streams={self.max_concurrent_streams}, retries={self.retries})"
        )

    @property
    def counters(self) -> dict[str, int]:
        """How many pushes ended in each :class:`Outcome` since the client was made."""
        return dict(self._counters)

    def push_many(self, tokens: Iterable[str]) -> list[PushResult]:
        """Push an update to every distinct token and wait for all results.

        Duplicates are pushed once (Wallet refreshes every changed pass of the type on a
        device after a single push). Results come in the order tokens first appear.
        """
        unique = _unique(tokens)
        if not unique:
            return []
        runner, engine = self._start()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is runner.loop:
            raise RuntimeError("push_many called from the client's own event loop")
        return asyncio.run_coroutine_threadsafe(engine.run(unique), runner.loop).result()

    async def apush_many(self, tokens: Iterable[str]) -> list[PushResult]:
        """Like :meth:`push_many`, awaitable from any event loop."""
        unique = _unique(tokens)
        if not unique:
            return []
        runner, engine = self._start()
        future = asyncio.run_coroutine_threadsafe(engine.run(unique), runner.loop)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Close the connection (GOAWAY) and stop the client's thread. Idempotent."""
        with self._lock:
            self._closed = True
            runner, engine = self._runner, self._engine
            self._runner = self._engine = None
        if runner is None or engine is None or runner.pid != os.getpid():
            return
        if runner.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(engine.aclose(), runner.loop).result(timeout=5)
            except TimeoutError:
                log.warning("APNs client did not close its connection within 5 s")
        runner.stop()

    async def aclose(self) -> None:
        """:meth:`close` for async code (runs it off the event loop)."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> APNsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> APNsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _start(self) -> tuple[_LoopThread, Pool]:
        with self._lock:
            if self._closed:
                raise APNsClientClosed("the APNs client is closed")
            if self._runner is not None and self._runner.pid != os.getpid():
                # Forked (an rq work horse): the loop thread and the connection belong to
                # the parent. Start afresh without touching the parent's socket.
                self._runner = self._engine = None
            if self._runner is None or self._engine is None:
                runner = _LoopThread()
                engine = Pool(**self._engine_options, counters=self._counters)
                self._runner, self._engine = runner, engine
                # Stop the thread if the client is dropped without close().
                self._finalizer = weakref.finalize(self, runner.stop)
            return self._runner, self._engine


def _unique(tokens: Iterable[str]) -> list[str]:
    if isinstance(tokens, str | bytes):
        raise TypeError("tokens must be an iterable of token strings, not one string")
    unique = list(dict.fromkeys(tokens))
    if not all(isinstance(token, str) for token in unique):
        raise TypeError("every token must be a str")
    return unique
