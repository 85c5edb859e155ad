"""One HTTP/2 connection to APNs, as an asyncio protocol over TLS.

It opens a stream per push, parses the answers, and hands finished, reset and refused streams
to its :class:`Listener` (the pool) in one call per read. It decides nothing: retries,
timeouts and replacing connections are the pool's business.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack

from app.wallet.apple.apns.results import PAYLOAD

#: Whatever the pool tracks for one push; the connection keeps it with the push's stream and
#: hands it back, without looking inside.
J = TypeVar("J")

_READ_SLICE = 4096


class Stream(Generic[J]):
    """One push in flight on a connection: its job, and the answer as it arrives."""

    __slots__ = ("body", "job", "status")

    def __init__(self, job: J) -> None:
        self.job = job
        self.status: int | None = None
        self.body = b""


class Listener(Protocol[J]):
    """What a connection reports to (the pool)."""

    def on_read(
        self,
        conn: Connection[J],
        finished: list[Stream[J]],
        failed: list[tuple[Stream[J], str]],
        refused: list[Stream[J]],
    ) -> None:
        """After each slice of input: streams answered, reset (with a reason), and never
        processed by the server (above a GOAWAY's last stream id)."""

    def on_connection_lost(self, conn: Connection[J], exc: Exception) -> None:
        """The connection is gone; ``conn.streams`` still holds the pushes in flight."""


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding: it halves the cost of encoding a request's headers.

    Huffman saves about 20 bytes of a 70-byte hex path; CPU, not bandwidth, limits a fan-out.
    h2 offers no setting for it. Measured with ``benchmarks/bench_apns.py`` (2026-11-28,
    ``benchmarks/RESULTS.md``): with Huffman the client spent 5-12% more CPU per push.
    """

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=False)


class _H2Connection(h2.connection.H2Connection):
    """h2 with an O(1) count of open outbound streams.

    h2's public ``open_outbound_streams`` scans every stream, and ``send_headers`` reads it
    each time a stream is opened: with 500 in flight that scan was a third of the client's
    CPU. The protocol knows the count (its map of streams in flight), so this overrides the
    property; the scan, which also forgets closed streams, runs once per read instead.
    Measured with ``benchmarks/bench_apns.py`` (2026-11-28, ``benchmarks/RESULTS.md``): plain
    h2 cost the client 54% more CPU per push at 500 streams (380 against 246 us).
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


class Connection(asyncio.Protocol, Generic[J]):
    """One HTTP/2 connection to APNs. Parses responses and hands finished streams back.

    ``usable`` turns true once the server's SETTINGS arrived (``ready`` resolves then) and
    false again after GOAWAY, :meth:`retire` or :meth:`close`; ``closed`` resolves when the
    transport is gone. ``clock`` stamps reads, busy starts and PINGs (the pool's clock).
    """

    def __init__(self, listener: Listener[J],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.listener = listener
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        #: The pushes in flight, by stream id.
        self.streams: dict[int, Stream[J]] = {}
        # Header validation is off for speed: we build every header ourselves, and the
        # test server validates them with h2's checks on.
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
        self.last_read = self.busy_since = clock()
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
        self.last_read = self.clock()
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
            self.abort(exc)
            return
        finished: list[Stream[J]] = []
        failed: list[tuple[Stream[J], str]] = []
        refused: list[Stream[J]] = []
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
        self.listener.on_read(self, finished, failed, refused)
        if not self.usable and not self.lost and self.transport is not None:
            self.transport.close()  # GOAWAY received: let the rest fail through connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.usable = False
        error = exc or self.abort_reason or ConnectionResetError("connection closed by the server")
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: the pool's connect reports it
        if not self.closed.done():
            self.closed.set_result(None)
        self.listener.on_connection_lost(self, error)

    # -- used by the pool --------------------------------------------------------------------

    def send(self, job: J, headers: list[tuple[bytes, bytes]]) -> None:
        """Open a stream with ``headers`` and the empty payload (buffered until
        :meth:`flush`). Raises h2's ``ProtocolError`` if the connection cannot take it."""
        if not self.streams:
            self.busy_since = self.clock()  # an idle connection is not a silent one
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers)
        self.h2.send_data(stream_id, PAYLOAD, end_stream=True)
        self.streams[stream_id] = Stream(job)

    def ping(self) -> None:
        """Ask the server for a PING ACK: any answer proves the connection still works."""
        self.h2.ping(os.urandom(8))
        self.ping_sent = self.clock()
        self.flush()

    def flush(self) -> None:
        """Write whatever h2 has queued (frames, WINDOW_UPDATEs, ACKs)."""
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

    def abort(self, exc: Exception) -> None:
        """Drop the connection at once; ``exc`` becomes the reason its streams fail with."""
        self.usable = False
        self.abort_reason = exc  # transport.abort() reports no exception to connection_lost
        if self.transport is not None:
            self.flush()  # h2 queued a GOAWAY for the protocol error
            self.transport.abort()
        # connection_lost follows and fails the streams still in flight
