"""APNs client for Apple Wallet pass update pushes.

Wallet learns that a pass changed from an empty push: an HTTP/2 ``POST`` of ``{}`` to
``https://api.push.apple.com/3/device/<push token>`` with ``apns-topic: <pass type identifier>``,
over TLS authenticated with the Pass Type ID certificate and key. The device then asks the
PassKit web service which passes changed and downloads them.

:class:`APNsClient` keeps one HTTP/2 connection open across calls and runs many streams on it
at once (up to ``max_concurrent_streams``, and never more than the server advertises). It is
raw ``h2`` over an asyncio TLS connection, driven by callbacks rather than a task per push,
because per-push overhead is what limits a fan-out of thousands of pushes. The event loop lives
in a private daemon thread, so the synchronous :meth:`APNsClient.push_many` can be called from
any thread (an rq job, a request handler) and still reuse the connection between calls.

Nothing here imports Flask or the database: callers map :class:`PushResult` outcomes to their
own bookkeeping (for example, delete registrations whose token came back ``UNREGISTERED``).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
import os
import random
import re
import ssl
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hpack import NeverIndexedHeaderTuple

log = logging.getLogger("pointpass.apns")

APNS_URL = "https://api.push.apple.com"
#: Wallet's pushes carry no alert: the body is an empty JSON dictionary.
PAYLOAD = b"{}"
#: The 400 reasons that mean "this token is no good" rather than "this request is wrong".
BAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})
# APNs tokens are hex (32 bytes today; Apple says they may grow). Checking before sending also
# keeps anything that is not a token out of the request path.
_TOKEN_RE = re.compile(r"[0-9A-Fa-f]{1,400}")
_READ_SLICE = 4096


class Outcome(enum.StrEnum):
    """What became of one push."""

    DELIVERED = "delivered"
    #: 410: the device no longer wants pushes for this pass type; stop using the token.
    UNREGISTERED = "unregistered"
    #: 400 BadDeviceToken / DeviceTokenNotForTopic, or a token that is not hex at all.
    BAD_TOKEN = "bad_token"  # noqa: S105 - an outcome name, not a password
    #: 429, 5xx or connection failures, still failing after every retry.
    RETRY_EXHAUSTED = "retry_exhausted"
    #: Any other error (other 4xx, a TLS refusal): retrying would not help.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PushResult:
    """The result of pushing to one token.

    ``status`` is the last HTTP status (``None`` if no response came back), ``reason`` APNs'
    error reason or a description of the connection error, ``timestamp_ms`` the time APNs says
    the token stopped being valid (410 only), ``attempts`` how many times the push was tried.
    """

    token: str
    outcome: Outcome
    status: int | None
    reason: str | None
    timestamp_ms: int | None
    attempts: int


class APNsCredentialsError(ValueError):
    """The client certificate or key could not be loaded (the message never holds a secret)."""


class APNsClientClosed(RuntimeError):
    """The client was closed before (or while) pushing."""


class _FatalConnectionError(ConnectionError):
    """A connection failure that retrying cannot fix (wrong certificate, no HTTP/2)."""


class _Job:
    """One push on its way: the token, its call, and the attempts made so far."""

    __slots__ = ("attempts", "batch", "token")

    def __init__(self, token: str, batch: _Batch) -> None:
        self.token = token
        self.batch = batch
        self.attempts = 0


class _Batch:
    """One ``push_many`` call: collects results and resolves its future when all are in."""

    __slots__ = ("future", "remaining", "results")

    def __init__(self, future: asyncio.Future[list[PushResult]], tokens: list[str]) -> None:
        self.future = future
        self.results: dict[str, PushResult | None] = dict.fromkeys(tokens)
        self.remaining = len(tokens)


class _Stream:
    __slots__ = ("body", "job", "status")

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.status: int | None = None
        self.body = b""


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding: it halves the cost of encoding a request's headers.

    Huffman saves about 20 bytes of a 70-byte hex path; CPU, not bandwidth, limits a fan-out.
    """

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=False)


class _H2Connection(h2.connection.H2Connection):
    """h2 with an O(1) count of open outbound streams.

    h2 counts open streams by scanning every stream each time one is opened: with 500 in
    flight that scan was a third of the client's CPU. The protocol knows the count (its map of
    streams in flight); the scan, which also forgets closed streams, runs once per read.
    """

    def __init__(self, config: h2.config.H2Configuration, in_flight: dict[int, Any]) -> None:
        super().__init__(config=config)
        self._in_flight = in_flight
        self.encoder = _PlainEncoder()

    @property
    def open_outbound_streams(self) -> int:
        return len(self._in_flight)

    def forget_closed_streams(self) -> None:
        h2.connection.H2Connection.open_outbound_streams.fget(self)  # type: ignore[attr-defined]


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection to APNs. Parses responses and hands finished streams back."""

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        # Header validation is off for speed: we build every header ourselves, and the
        # test server validates them with h2's checks on.
        self.streams: dict[int, _Stream] = {}
        self.h2 = _H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
            ),
            self.streams,
        )
        self.usable = False  # True once the server's SETTINGS arrived, False after GOAWAY
        self.lost = False
        self.retired = False
        self.abort_reason: Exception | None = None
        self.responses = 0
        self.last_read = self.busy_since = time.monotonic()
        self.ping_sent: float | None = None  # when our unanswered PING went out
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 0,  # no server push
            },
        )
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        # Hand h2 a few kilobytes at a time and refill the freed stream slots after each:
        # the server gets new requests while we still parse the rest of a large read,
        # instead of both sides taking turns.
        view = memoryview(data)
        for start in range(0, len(view), _READ_SLICE):
            if self.lost or self.transport is None or self.transport.is_closing():
                return
            self._process(view[start : start + _READ_SLICE])

    def _process(self, data: memoryview) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._abort(exc)
            return
        finished: list[_Stream] = []
        failed: list[tuple[_Stream, str]] = []
        refused: list[_Stream] = []
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    for name, value in event.headers or ():
                        if name == b":status":
                            stream.status = int(value)
                            break
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None and event.data:
                    stream.body += event.data
                # Hand the window back straight away: error bodies are tiny and the
                # connection must not starve after many of them.
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    finished.append(stream)
            elif isinstance(event, h2.events.StreamReset):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    failed.append((stream, f"stream reset ({event.error_code!s})"))
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                if not self.ready.done():
                    self.usable = True
                    self.ready.set_result(None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.usable = False
                # Streams above last_stream_id were never processed: send them again on a
                # new connection without counting an attempt. h2 accepts no more frames
                # after GOAWAY, so the others are lost with this connection.
                last = event.last_stream_id or 0
                for stream_id in [s for s in self.streams if s > last]:
                    refused.append(self.streams.pop(stream_id))
        self.responses += len(finished)
        if finished or failed:
            self.h2.forget_closed_streams()
        self.engine.on_read(self, finished, failed, refused)
        if not self.usable and not self.lost and self.transport is not None:
            self.transport.close()  # GOAWAY received: let the rest fail through connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.usable = False
        error = exc or self.abort_reason or ConnectionResetError("connection closed by the server")
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: _connect reports it
        if not self.closed.done():
            self.closed.set_result(None)
        self.engine.on_connection_lost(self, error)

    # -- used by the engine ------------------------------------------------------------------

    def send(self, job: _Job, headers: list[tuple[bytes, bytes]]) -> None:
        if not self.streams:
            self.busy_since = time.monotonic()  # an idle connection is not a silent one
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers)
        self.h2.send_data(stream_id, PAYLOAD, end_stream=True)
        self.streams[stream_id] = _Stream(job)
        job.attempts += 1

    def ping(self) -> None:
        """Ask the server for a PING ACK: any answer proves the connection still works."""
        self.h2.ping(os.urandom(8))
        self.ping_sent = time.monotonic()
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Say GOAWAY and close (used when the client closes)."""
        self.usable = False
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self.h2.close_connection()
            self.flush()
        except h2.exceptions.ProtocolError:
            pass  # already closed on the HTTP/2 level
        self.transport.close()

    def retire(self) -> None:
        """Take no new streams; close once the ones in flight are answered (or lost)."""
        self.usable = False
        self.retired = True
        if not self.streams and self.transport is not None:
            self.close()

    def _abort(self, exc: Exception) -> None:
        self.usable = False
        self.abort_reason = exc  # transport.abort() reports no exception to connection_lost
        if self.transport is not None:
            self.flush()  # h2 queued a GOAWAY for the protocol error
            self.transport.abort()
        # connection_lost follows and fails the streams still in flight


class _Engine:
    """Everything on the client's event loop: the queue, the connection, retries, results."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        authority: str,
        ssl_context: ssl.SSLContext,
        topic: str,
        max_concurrent_streams: int,
        retries: int,
        backoff_base: float,
        backoff_max: float,
        connect_timeout: float,
        request_timeout: float,
        idle_ping: float,
        counters: dict[str, int],
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_streams = max_concurrent_streams
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.idle_ping = idle_ping
        self.counters = counters
        # Encoded once; only :path changes per push. The path is sent never-indexed so that
        # thousands of distinct tokens do not churn HPACK's dynamic table.
        self.head = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
        ]
        self.tail = [(b"apns-topic", topic.encode())]
        self.queue: collections.deque[_Job] = collections.deque()
        self.conn: _Connection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.connections: set[_Connection] = set()
        self.batches: set[_Batch] = set()
        self.pump_scheduled = False
        self.closed = False

    # -- entry points ------------------------------------------------------------------------

    async def run(self, tokens: list[str]) -> list[PushResult]:
        if self.closed:
            raise APNsClientClosed("the APNs client is closed")
        loop = asyncio.get_running_loop()
        batch = _Batch(loop.create_future(), tokens)
        self.batches.add(batch)
        for token in tokens:
            job = _Job(token, batch)
            if _TOKEN_RE.fullmatch(token):
                self.queue.append(job)
            else:
                self._finish(job, Outcome.BAD_TOKEN, None, "BadDeviceToken (not a hex token)")
        self._pump()
        try:
            return await batch.future
        finally:
            self.batches.discard(batch)

    async def aclose(self) -> None:
        self.closed = True
        if self.connecting is not None:
            self.connecting.cancel()
        for conn in list(self.connections):
            conn.close()
        for batch in list(self.batches):
            if not batch.future.done():
                batch.future.set_exception(APNsClientClosed("the APNs client was closed"))
        self.queue.clear()
        waiting = [conn.closed for conn in self.connections]
        if waiting:
            await asyncio.wait(waiting, timeout=2)

    # -- sending -----------------------------------------------------------------------------

    def _pump(self) -> None:
        """Open streams for queued pushes while the connection has room; connect if needed."""
        self.pump_scheduled = False
        if not self.queue or self.closed:
            return
        conn = self.conn
        if conn is None or not conn.usable:
            if self.connecting is None:
                self.connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        limit = min(self.max_streams, conn.h2.remote_settings.max_concurrent_streams)
        queue, streams, h2conn = self.queue, conn.streams, conn.h2
        head, tail = self.head, self.tail
        while queue and len(streams) < limit:
            if h2conn.outbound_flow_control_window < len(PAYLOAD):
                break  # resumes when the server's WINDOW_UPDATE arrives (on_read pumps)
            job = queue.popleft()
            if job.batch.future.done():
                continue  # its caller was cancelled
            path = NeverIndexedHeaderTuple(b":path", b"/3/device/" + job.token.encode("ascii"))
            try:
                conn.send(job, [*head, path, *tail])
            except h2.exceptions.ProtocolError:
                # The connection cannot take new streams (stream ids used up, closed under
                # us): retire it and carry on with a new one.
                queue.appendleft(job)
                conn.retire()
                self.conn = None
                self._schedule_pump()
                break
        conn.flush()

    def _schedule_pump(self) -> None:
        # Coalesce: many retry timers firing in one loop iteration make one pump.
        if not self.pump_scheduled:
            self.pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, conn = await loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host,
                )
                self.connections.add(conn)
                ssl_object = transport.get_extra_info("ssl_object")
                if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                    transport.abort()
                    raise _FatalConnectionError("the server did not negotiate HTTP/2 (ALPN h2)")
                # Wait for the server's SETTINGS: its MAX_CONCURRENT_STREAMS may be lower
                # than ours, and a TLS 1.3 refusal of our certificate arrives about now.
                await conn.ready
        except asyncio.CancelledError:
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
            raise
        except (OSError, TimeoutError, h2.exceptions.ProtocolError) as exc:
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
            self.connecting = None
            self._connect_failed(exc)
            return
        self.connecting = None
        self.conn = conn
        loop.call_later(min(self.request_timeout, self.idle_ping) / 2, self._watch, conn)
        self._pump()

    def _connect_failed(self, exc: BaseException) -> None:
        """No connection: every queued push spent an attempt on it."""
        reason = _describe(exc)
        fatal = _is_fatal(exc)
        log.debug("APNs connection to %s:%s failed: %s", self.host, self.port, reason)
        jobs = list(self.queue)
        self.queue.clear()
        for job in jobs:
            job.attempts += 1
            self._attempt_failed(job, None, reason, fatal=fatal)

    def _watch(self, conn: _Connection) -> None:
        """Abort a connection whose in-flight streams got no answer for ``request_timeout``,
        or that did not answer a PING in that time.

        A connection idle for ``idle_ping`` seconds is PINGed: a NAT or firewall that
        forgot the flow drops packets without a word, and the next push would otherwise
        wait ``request_timeout`` before going out again on a new connection.
        """
        if conn.lost:
            return
        now = time.monotonic()
        silent = now - max(conn.last_read, conn.busy_since)
        if conn.streams and silent > self.request_timeout:
            conn._abort(TimeoutError("no response from APNs"))
            return
        if conn.ping_sent is not None and conn.last_read >= conn.ping_sent:
            conn.ping_sent = None  # answered (any frame since the PING will do)
        if conn.ping_sent is not None:
            if now - conn.ping_sent > self.request_timeout:
                log.info("APNs connection did not answer a PING; opening a new one when needed")
                conn._abort(TimeoutError("no answer to PING from APNs"))
                return
        elif not conn.streams and conn.usable and now - conn.last_read > self.idle_ping:
            conn.ping()
        interval = min(self.request_timeout, self.idle_ping) / 2
        asyncio.get_running_loop().call_later(interval, self._watch, conn)

    # -- responses ---------------------------------------------------------------------------

    def on_read(
        self,
        conn: _Connection,
        finished: list[_Stream],
        failed: list[tuple[_Stream, str]],
        refused: list[_Stream],
    ) -> None:
        for stream in finished:
            self._on_response(stream)
        for stream, reason in failed:
            self._attempt_failed(stream.job, None, reason)
        for stream in refused:
            stream.job.attempts -= 1  # never processed by the server: not an attempt
            self.queue.append(stream.job)
        if conn is self.conn:
            self._pump()  # refill the freed stream slots
        elif conn.retired and not conn.streams:
            conn.close()  # drained
        # Always flush: h2 queues WINDOW_UPDATEs and the ACKs of the server's PINGs and
        # SETTINGS, which must go out even when there is nothing left to push.
        conn.flush()

    def _on_response(self, stream: _Stream) -> None:
        job, status = stream.job, stream.status
        if status == 200:
            self._finish(job, Outcome.DELIVERED, 200, None)
            return
        reason, timestamp_ms = _parse_error(stream.body)
        if status == 410:
            self._finish(job, Outcome.UNREGISTERED, status, reason, timestamp_ms)
        elif status == 400 and reason in BAD_TOKEN_REASONS:
            self._finish(job, Outcome.BAD_TOKEN, status, reason)
        elif status is None or status == 429 or status >= 500:
            self._attempt_failed(job, status, reason)
        else:
            self._finish(job, Outcome.FAILED, status, reason)

    def on_connection_lost(self, conn: _Connection, exc: Exception) -> None:
        self.connections.discard(conn)
        if self.conn is conn:
            self.conn = None
        in_flight = [stream.job for stream in conn.streams.values()]
        conn.streams.clear()
        if self.closed or not conn.ready.done() or conn.ready.exception() is not None:
            return  # never got going: _connect reports the failure
        reason = _describe(exc)
        for job in in_flight:
            self._attempt_failed(job, None, reason, fatal=_is_fatal(exc))
        if conn.responses == 0 and self.queue:
            # Accepted, then dropped before answering anything: count it against the
            # queued pushes too, or a server that always hangs up would loop for ever.
            self._connect_failed(exc)
        elif self.queue:
            self._schedule_pump()  # reconnect for what is left

    def _attempt_failed(
        self, job: _Job, status: int | None, reason: str | None, *, fatal: bool = False
    ) -> None:
        if fatal:
            self._finish(job, Outcome.FAILED, status, reason)
        elif job.attempts > self.retries or self.closed:
            self._finish(job, Outcome.RETRY_EXHAUSTED, status, reason)
        else:
            # Exponential backoff with "equal jitter": spread retries of a burst of 429s
            # so they do not come back as one burst.
            delay = min(self.backoff_max, self.backoff_base * 2 ** (job.attempts - 1))
            delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not secrets
            asyncio.get_running_loop().call_later(delay, self._retry, job)

    def _retry(self, job: _Job) -> None:
        if self.closed or job.batch.future.done():
            return
        self.queue.append(job)
        self._schedule_pump()

    def _finish(
        self,
        job: _Job,
        outcome: Outcome,
        status: int | None,
        reason: str | None,
        timestamp_ms: int | None = None,
    ) -> None:
        batch = job.batch
        if batch.future.done():
            return
        result = PushResult(job.token, outcome, status, reason, timestamp_ms, job.attempts)
        batch.results[job.token] = result
        self.counters[outcome.value] += 1
        if outcome is not Outcome.DELIVERED:
            # The token is an identifier of someone's device: log only enough to correlate.
            level = logging.INFO if outcome is Outcome.UNREGISTERED else logging.WARNING
            log.log(
                level,
                "APNs push not delivered: outcome=%s token=%s… status=%s reason=%s attempts=%d",
                outcome.value,
                job.token[:8],
                status,
                reason,
                job.attempts,
            )
        batch.remaining -= 1
        if batch.remaining == 0:
            batch.future.set_result([r for r in batch.results.values() if r is not None])


def _parse_error(body: bytes) -> tuple[str | None, int | None]:
    """APNs' error body: ``{"reason": "...", "timestamp": ms}`` (timestamp only on 410)."""
    if not body:
        return None, None
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    reason = document.get("reason")
    timestamp = document.get("timestamp")
    return (
        reason if isinstance(reason, str) else None,
        timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
    )


def _describe(exc: BaseException) -> str:
    """A short description of a connection error, with no payloads or secrets in it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{type(exc).__name__}: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{type(exc).__name__}: {exc.reason}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _is_fatal(exc: BaseException) -> bool:
    """Errors that the same request would meet again: certificates, no HTTP/2."""
    if isinstance(exc, _FatalConnectionError | ssl.SSLCertVerificationError):
        return True
    # The server refused our certificate (TLS alerts such as UNKNOWN_CA or
    # CERTIFICATE_REQUIRED); EOFs and resets are transient and stay retryable.
    return isinstance(exc, ssl.SSLError) and "ALERT" in str(exc.reason or "").upper()


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
    for ``request_timeout`` (a NAT that dropped the flow says nothing).

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
        self._ssl_context = _client_ssl_context(cert_path, key_path, key_password, ca_file)
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
        }
        self._counters: dict[str, int] = {outcome.value: 0 for outcome in Outcome}
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._engine: _Engine | None = None
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

    def _start(self) -> tuple[_LoopThread, _Engine]:
        with self._lock:
            if self._closed:
                raise APNsClientClosed("the APNs client is closed")
            if self._runner is not None and self._runner.pid != os.getpid():
                # Forked (an rq work horse): the loop thread and the connection belong to
                # the parent. Start afresh without touching the parent's socket.
                self._runner = self._engine = None
            if self._runner is None or self._engine is None:
                runner = _LoopThread()
                engine = _Engine(**self._engine_options, counters=self._counters)
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


def _client_ssl_context(
    cert_path: str | Path,
    key_path: str | Path,
    key_password: str | None,
    ca_file: str | Path | None,
) -> ssl.SSLContext:
    """TLS for APNs: verify the server, present the Pass Type ID certificate, ALPN h2."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    error: str | None = None
    try:
        # Never pass None: with an encrypted key OpenSSL would then prompt on the terminal,
        # which hangs a worker. An empty password just fails to decrypt.
        context.load_cert_chain(str(cert_path), str(key_path), key_password or "")
    except ssl.SSLError as exc:
        # OpenSSL's reason (e.g. KEY_VALUES_MISMATCH) names the problem without echoing
        # anything secret; the exception itself is not chained on purpose.
        error = exc.reason or _key_problem(key_path, has_password=bool(key_password))
    except OSError as exc:
        error = exc.strerror or type(exc).__name__
    except (ValueError, TypeError) as exc:
        error = type(exc).__name__
    finally:
        key_password = None  # keep the password out of this frame's locals in tracebacks
    if error is not None:
        raise APNsCredentialsError(
            f"cannot load the APNs client certificate {cert_path} with key {key_path}: {error}"
        )
    return context


def _key_problem(key_path: str | Path, *, has_password: bool) -> str:
    """Explain OpenSSL's bare "PEM lib" error from the key file's armour."""
    try:
        head = Path(key_path).read_bytes()[:200]
    except OSError:
        head = b""
    if b"ENCRYPTED" in head:
        if has_password:
            return "the key password does not decrypt the key"
        return "the key is encrypted and no key password was given"
    return "the certificate or key is not valid PEM"
