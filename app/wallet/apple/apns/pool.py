"""The pushes in progress and the connections that carry them.

:class:`Pool` lives on the client's event loop. It queues pushes, opens streams on the
current :class:`Connection` while it has room (never more than ``max_concurrent_streams`` or
the server's limit), maps answers to outcomes, retries with backoff, and replaces connections
that went away, ran out of stream ids, or went silent (a watchdog per connection PINGs idle
ones and aborts those that do not answer within ``request_timeout``). A connection being
replaced is retired: it takes no new streams and closes once its own are answered.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
import ssl
import time
from collections.abc import Callable

import h2.exceptions
from hpack import NeverIndexedHeaderTuple

from app.wallet.apple.apns.connection import Connection, Stream
from app.wallet.apple.apns.results import (
    BAD_TOKEN_REASONS,
    PAYLOAD,
    APNsClientClosed,
    FatalConnectionError,
    Outcome,
    PushResult,
    describe,
    is_fatal,
    parse_error,
)

# The same logger as the client's: one name for every APNs log line.
log = logging.getLogger("pointpass.apns")

# APNs tokens are hex (32 bytes today; Apple says they may grow). Checking before sending also
# keeps anything that is not a token out of the request path.
_TOKEN_RE = re.compile(r"[0-9A-Fa-f]{1,400}")


class Job:
    """One push on its way: the token, its call, and the attempts made so far."""

    __slots__ = ("attempts", "batch", "token")

    def __init__(self, token: str, batch: Batch) -> None:
        self.token = token
        self.batch = batch
        self.attempts = 0


class Batch:
    """One ``push_many`` call: collects results and resolves its future when all are in."""

    __slots__ = ("future", "remaining", "results")

    def __init__(self, future: asyncio.Future[list[PushResult]], tokens: list[str]) -> None:
        self.future = future
        self.results: dict[str, PushResult | None] = dict.fromkeys(tokens)
        self.remaining = len(tokens)


class Pool:
    """Everything on the client's event loop: the queue, the connections, retries, results."""

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
        clock: Callable[[], float] = time.monotonic,
        watch_interval: float | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
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
        # What the watchdog reads the time from, how often it looks (by default at half the
        # shorter of the two timeouts) and the random part of a backoff: tests set them.
        self.clock = clock
        self.watch_interval = (min(request_timeout, idle_ping) / 2 if watch_interval is None
                               else watch_interval)
        self.jitter = jitter
        # Encoded once; only :path changes per push. The path is sent never-indexed so that
        # thousands of distinct tokens do not churn HPACK's dynamic table.
        self.head = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
        ]
        self.tail = [(b"apns-topic", topic.encode())]
        self.queue: collections.deque[Job] = collections.deque()
        self.conn: Connection[Job] | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.connections: set[Connection[Job]] = set()
        self.batches: set[Batch] = set()
        self.pump_scheduled = False
        self.closed = False

    # -- entry points ------------------------------------------------------------------------

    async def run(self, tokens: list[str]) -> list[PushResult]:
        """Push to every token (distinct, in order) and return their results in that order."""
        if self.closed:
            raise APNsClientClosed("the APNs client is closed")
        loop = asyncio.get_running_loop()
        batch = Batch(loop.create_future(), tokens)
        self.batches.add(batch)
        for token in tokens:
            job = Job(token, batch)
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
        """Say GOAWAY on every connection and fail the calls still waiting; wait up to 2 s
        for the connections to close."""
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
            job.attempts += 1
        conn.flush()

    def _schedule_pump(self) -> None:
        # Coalesce: many retry timers firing in one loop iteration make one pump.
        if not self.pump_scheduled:
            self.pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        conn: Connection[Job] | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, conn = await loop.create_connection(
                    lambda: Connection(self, self.clock),
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host,
                )
                self.connections.add(conn)
                ssl_object = transport.get_extra_info("ssl_object")
                if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                    transport.abort()
                    raise FatalConnectionError("the server did not negotiate HTTP/2 (ALPN h2)")
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
        loop.call_later(self.watch_interval, self._watch, conn)
        self._pump()

    def _connect_failed(self, exc: BaseException) -> None:
        """No connection: every queued push spent an attempt on it."""
        reason = describe(exc)
        fatal = is_fatal(exc)
        log.debug("APNs connection to %s:%s failed: %s", self.host, self.port, reason)
        jobs = list(self.queue)
        self.queue.clear()
        for job in jobs:
            job.attempts += 1
            self._attempt_failed(job, None, reason, fatal=fatal)

    def _watch(self, conn: Connection[Job]) -> None:
        """Abort a connection whose in-flight streams got no answer for ``request_timeout``,
        or that did not answer a PING in that time.

        A connection idle for ``idle_ping`` seconds is PINGed: a NAT or firewall that
        forgot the flow drops packets without a word, and the next push would otherwise
        wait ``request_timeout`` before going out again on a new connection.
        """
        if conn.lost:
            return
        now = self.clock()
        silent = now - max(conn.last_read, conn.busy_since)
        if conn.streams and silent > self.request_timeout:
            conn.abort(TimeoutError("no response from APNs"))
            return
        if conn.ping_sent is not None and conn.last_read >= conn.ping_sent:
            conn.ping_sent = None  # answered (any frame since the PING will do)
        if conn.ping_sent is not None:
            if now - conn.ping_sent > self.request_timeout:
                log.info("APNs connection did not answer a PING; opening a new one when needed")
                conn.abort(TimeoutError("no answer to PING from APNs"))
                return
        elif not conn.streams and conn.usable and now - conn.last_read > self.idle_ping:
            conn.ping()
        asyncio.get_running_loop().call_later(self.watch_interval, self._watch, conn)

    # -- responses ---------------------------------------------------------------------------

    def on_read(
        self,
        conn: Connection[Job],
        finished: list[Stream[Job]],
        failed: list[tuple[Stream[Job], str]],
        refused: list[Stream[Job]],
    ) -> None:
        """Settle the streams a connection read (see :class:`Listener`) and refill it."""
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

    def _on_response(self, stream: Stream[Job]) -> None:
        job, status = stream.job, stream.status
        if status == 200:
            self._finish(job, Outcome.DELIVERED, 200, None)
            return
        reason, timestamp_ms = parse_error(stream.body)
        if status == 410:
            self._finish(job, Outcome.UNREGISTERED, status, reason, timestamp_ms)
        elif status == 400 and reason in BAD_TOKEN_REASONS:
            self._finish(job, Outcome.BAD_TOKEN, status, reason)
        elif status is None or status == 429 or status >= 500:
            self._attempt_failed(job, status, reason)
        else:
            self._finish(job, Outcome.FAILED, status, reason)

    def on_connection_lost(self, conn: Connection[Job], exc: Exception) -> None:
        """Fail (or retry) the pushes that were in flight on ``conn``; reconnect if needed."""
        self.connections.discard(conn)
        if self.conn is conn:
            self.conn = None
        in_flight = [stream.job for stream in conn.streams.values()]
        conn.streams.clear()
        if self.closed or not conn.ready.done() or conn.ready.exception() is not None:
            return  # never got going: _connect reports the failure
        reason = describe(exc)
        for job in in_flight:
            self._attempt_failed(job, None, reason, fatal=is_fatal(exc))
        if conn.responses == 0 and self.queue:
            # Accepted, then dropped before answering anything: count it against the
            # queued pushes too, or a server that always hangs up would loop for ever.
            self._connect_failed(exc)
        elif self.queue:
            self._schedule_pump()  # reconnect for what is left

    def _attempt_failed(
        self, job: Job, status: int | None, reason: str | None, *, fatal: bool = False
    ) -> None:
        if fatal:
            self._finish(job, Outcome.FAILED, status, reason)
        elif job.attempts > self.retries or self.closed:
            self._finish(job, Outcome.RETRY_EXHAUSTED, status, reason)
        else:
            # Exponential backoff with "equal jitter": spread retries of a burst of 429s
            # so they do not come back as one burst.
            delay = min(self.backoff_max, self.backoff_base * 2 ** (job.attempts - 1))
            delay = delay / 2 + self.jitter(0, delay / 2)
            asyncio.get_running_loop().call_later(delay, self._retry, job)

    def _retry(self, job: Job) -> None:
        if self.closed or job.batch.future.done():
            return
        self.queue.append(job)
        self._schedule_pump()

    def _finish(
        self,
        job: Job,
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
