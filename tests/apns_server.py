"""A local APNs look-alike for tests and benchmarks: a real HTTP/2 server over TLS.

It speaks HTTP/2 (``h2``) over TLS with ALPN ``h2`` and *requires* a client certificate that
chains to ``client_ca_path``, as ``api.push.apple.com`` does with Pass Type ID certificates. It
validates requests the way APNs does (method, ``/3/device/<hex token>`` path, ``apns-topic``,
payload size and JSON), records every request, and answers per token as scripted with
:meth:`APNsTestServer.respond`; anything unscripted gets ``200`` with an ``apns-id`` header.

The server runs in a background thread on its own event loop, so synchronous tests can use it::

    with APNsTestServer(server_cert, server_key, wwdr_pem) as server:
        server.respond(token, 410, "Unregistered")
        ...  # push to server.url
        assert server.requests[0].topic == "pass.dev.pointpass.loyalty"
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from passes.devcerts import certificate_pem, create_ca, generate_rsa_key, private_key_pem

MAX_PAYLOAD_BYTES = 4096  # APNs' limit for everything but VoIP pushes
DEVICE_PATH_PREFIX = "/3/device/"
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, valid or not, and the status it answered."""

    token: str
    topic: str | None
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float  # time.monotonic() when the request was complete
    connection_id: int
    stream_id: int
    status: int


@dataclass
class _Rule:
    status: int
    reason: str | None
    times: int | None  # None: for ever
    timestamp_ms: int | None


@dataclass
class _Stream:
    headers: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)


class _H2ServerConnection(h2.connection.H2Connection):
    """h2 with an O(1) count of open inbound streams.

    h2 scans every stream to count the open ones each time a request opens a stream, which is
    quadratic with hundreds in flight; the protocol knows the count, and the scan (which also
    forgets closed streams) runs once per read instead.
    """

    def __init__(self, config: h2.config.H2Configuration, open_streams: dict[int, Any]) -> None:
        super().__init__(config=config)
        self._open = open_streams

    @property
    def open_inbound_streams(self) -> int:
        return len(self._open)

    def forget_closed_streams(self) -> None:
        h2.connection.H2Connection.open_inbound_streams.fget(self)  # type: ignore[attr-defined]


class _ServerProtocol(asyncio.Protocol):
    """One connection: TLS (on memory BIOs) and an h2 server state machine.

    TLS is done here rather than by ``create_server(ssl=...)`` because asyncio aborts a
    connection whose handshake failed without sending OpenSSL's alert, so a refused client
    would only see the connection drop. APNs sends the alert (``unknown ca``, ...); so do we.
    """

    def __init__(self, server: APNsTestServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.conn: _H2ServerConnection | None = None
        self.streams: dict[int, _Stream] = {}
        self.connection_id = 0
        self.cert_topic: str | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = server._ssl.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._handshaken = False
        self.blackholed = False  # drops whatever arrives, like a NAT that forgot the flow

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._note_accepted(self)

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing() or self.blackholed:
            return
        self._incoming.write(data)
        if not self._handshaken:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush_tls()
                return
            except (ssl.SSLError, OSError):
                self._flush_tls()  # the alert, so the client learns why
                self.server._note_tls_failure()
                self._close_transport()
                return
            self._handshaken = True
            self._flush_tls()
            self._start_h2()
        chunks = []
        while True:
            try:
                chunk = self._tls.read(262144)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLError, OSError):  # close_notify or a broken record
                self._flush_tls()
                self._close_transport()
                break
            if not chunk:
                break
            chunks.append(chunk)
        if chunks and self.conn is not None:
            self._h2_received(b"".join(chunks))

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def _flush_tls(self) -> None:
        pending = self._outgoing.read()
        if pending and self.transport is not None and not self.transport.is_closing():
            self.transport.write(pending)

    def _send(self, data: bytes) -> None:
        if data and self._handshaken and self.transport is not None:
            self._tls.write(data)
            self._flush_tls()

    def _close_transport(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _start_h2(self) -> None:
        if self._tls.selected_alpn_protocol() != "h2":
            self._close_transport()  # APNs only speaks HTTP/2
            return
        self.cert_topic = _certificate_topic(self._tls.getpeercert(binary_form=True))
        self.connection_id = self.server._note_connected(self)
        strict = self.server.strict_headers
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=strict,
            normalize_inbound_headers=strict,
        )
        self.conn = _H2ServerConnection(config, self.streams)
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 8000,
            },
        )
        self.conn.initiate_connection()
        self._send(self.conn.data_to_send())

    def _h2_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or self.transport is None:
            return
        try:
            events = conn.receive_data(data)
        except Exception:  # a protocol error: h2 queued a GOAWAY, send it and hang up
            self._send(conn.data_to_send())
            self._close_transport()
            return
        completed: list[tuple[int, _Stream]] = []
        terminated = False
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = _Stream(list(event.headers or ()))
                self.server._note_streams(len(self.streams))
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None and event.data:
                    stream.body += event.data
                # Give the flow-control window back at once, as APNs does; requests are small.
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    completed.append((event.stream_id, stream))
            elif isinstance(event, h2.events.StreamReset):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, h2.events.PingReceived):
                self.server._note_ping()
            elif isinstance(event, h2.events.ConnectionTerminated):
                terminated = True
        # Answer everything that completed in this read together: the streams were in flight
        # at the same time (which is what max_concurrent_streams_seen measures), and one write
        # per read keeps the server fast enough for benchmarks.
        if completed:
            answers = self.server._handle(self, completed)
            latency = self.server.latency
            if latency > 0:
                asyncio.get_running_loop().call_later(latency, self._send_answers, answers)
            else:
                self._send_answers(answers)
        self._send(conn.data_to_send())  # ACKs and WINDOW_UPDATEs go out without delay
        if terminated:
            self._close_transport()

    def _send_answers(self, answers: list[tuple[int, int, list[tuple[str, str]], bytes]]) -> None:
        conn, transport = self.conn, self.transport
        if conn is None or transport is None or transport.is_closing():
            return
        for stream_id, _status, headers, body in answers:
            self.streams.pop(stream_id, None)
            try:
                if body:
                    conn.send_headers(stream_id, headers)
                    conn.send_data(stream_id, body, end_stream=True)
                else:
                    conn.send_headers(stream_id, headers, end_stream=True)
            except Exception:  # the client reset the stream or the connection closed meanwhile
                continue
        conn.forget_closed_streams()
        self._send(conn.data_to_send())

    def close(self, goaway: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if goaway and self.conn is not None:
            with contextlib.suppress(h2.exceptions.ProtocolError):  # already closed in HTTP/2
                self.conn.close_connection()
                self._send(self.conn.data_to_send())
            self.transport.close()
        else:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._note_disconnected(self)


def _certificate_topic(der: bytes | None) -> str | None:
    """The pass type identifier in a Pass Type ID certificate's subject UID, if any."""
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    uids = cert.subject.get_attributes_for_oid(NameOID.USER_ID)
    return str(uids[0].value) if uids else None


class APNsTestServer:
    """A local HTTP/2 + TLS server that behaves like APNs for pass update pushes.

    ``server_cert_path``/``server_key_path`` are the server's own certificate (it needs a SAN
    for 127.0.0.1) and key; clients must present a certificate chaining to ``client_ca_path``.
    ``max_concurrent_streams`` is advertised in SETTINGS (APNs advertises 1000 to certificate
    clients). ``latency`` delays every answer by that many seconds, to imitate a network.
    With ``check_topic`` the ``apns-topic`` must equal the client certificate's UID, or the
    answer is ``400 TopicDisallowed``, as APNs does for certificate-authenticated clients.
    ``strict_headers`` runs h2's checks of every request header (lowercase names, pseudo-header
    order, no connection headers); benchmarks turn it off to spend less time in the server, and
    ``record=False`` stops keeping requests. ``on_push``, when given, is called with the token
    of every push answered ``200``, on the server's event loop (:attr:`loop`) as the answer is
    decided: a benchmark's devices wake from it, so it must return quickly.
    """

    def __init__(
        self,
        server_cert_path: str | Path,
        server_key_path: str | Path,
        client_ca_path: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent_streams: int = 1000,
        latency: float = 0.0,
        check_topic: bool = True,
        record: bool = True,
        strict_headers: bool = True,
        on_push: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.max_concurrent_streams = max_concurrent_streams
        self.latency = latency
        self.check_topic = check_topic
        self.strict_headers = strict_headers
        self.record = record
        self.on_push = on_push
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(str(server_cert_path), str(server_key_path))
        self._ssl.load_verify_locations(cafile=str(client_ca_path))
        self._ssl.verify_mode = ssl.CERT_REQUIRED
        self._ssl.set_alpn_protocols(["h2"])
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._rules: dict[str, list[_Rule]] = {}
        self._protocols: set[_ServerProtocol] = set()
        self._accepted = 0
        self._tls_failures = 0
        self._pings = 0
        self._connections = 0
        self._max_streams_seen = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> APNsTestServer:
        """Bind, start serving in a background thread, and return ``self`` once listening."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(
                        lambda: _ServerProtocol(self), self.host, self.port, backlog=1024
                    )
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="apns-test-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for protocol in list(self._protocols):
                protocol.close(goaway=True)
            for _ in range(100):  # let the transports finish closing before the loop stops
                if not self._protocols:
                    break
                await asyncio.sleep(0.01)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = None
        self._loop = None

    def __enter__(self) -> APNsTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The server's event loop while it runs (``on_push`` is called on it)."""
        return self._loop

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``https://127.0.0.1:50123``."""
        return f"https://{self.host}:{self.port}"

    # -- scripting and inspection ------------------------------------------------------------

    def respond(
        self,
        token: str,
        status: int,
        reason: str | None = None,
        times: int | None = None,
        *,
        timestamp_ms: int | None = None,
    ) -> None:
        """Answer requests for ``token`` with ``status`` (and ``{"reason": reason}``).

        ``times`` limits the rule to that many requests, after which the next rule for the token
        (or the default ``200``) applies; rules for one token apply in the order given. A ``410``
        body carries ``timestamp`` (``timestamp_ms``, or the current time in ms).
        """
        with self._lock:
            self._rules.setdefault(token, []).append(_Rule(status, reason, times, timestamp_ms))

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request recorded so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, token: str) -> list[RecordedRequest]:
        """The recorded requests for one device token."""
        with self._lock:
            return [r for r in self._requests if r.token == token]

    @property
    def connections(self) -> int:
        """TLS connections established (handshake done, ALPN h2) since the start."""
        return self._connections

    @property
    def accepted(self) -> int:
        """TCP connections accepted, including those the TLS handshake then refused."""
        return self._accepted

    @property
    def tls_failures(self) -> int:
        """TLS handshakes the server refused (no or untrusted client certificate, ...)."""
        return self._tls_failures

    @property
    def open_connections(self) -> int:
        """Connections currently open."""
        return len(self._protocols)

    @property
    def pings(self) -> int:
        """PINGs received from clients (each answered with an ACK unless blackholed)."""
        return self._pings

    @property
    def max_concurrent_streams_seen(self) -> int:
        """The most requests that were in flight at once on one connection."""
        return self._max_streams_seen

    def reset(self) -> None:
        """Forget recorded requests, scripted rules and statistics (connections stay open)."""
        with self._lock:
            self._requests.clear()
            self._rules.clear()
            self._max_streams_seen = 0

    def close_connections(self, *, goaway: bool = True) -> None:
        """Close every open connection, with a GOAWAY frame or (``goaway=False``) abruptly."""
        loop = self._loop
        if loop is None:
            return

        async def close_all() -> None:
            for protocol in list(self._protocols):
                protocol.close(goaway)

        asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=5)

    def blackhole_connections(self) -> None:
        """From now on, ignore everything arriving on the connections open now, without
        closing them: what a client sees when a NAT or firewall drops an idle flow. New
        connections are served as usual."""
        loop = self._loop
        if loop is None:
            return

        async def blackhole_all() -> None:
            for protocol in list(self._protocols):
                protocol.blackholed = True

        asyncio.run_coroutine_threadsafe(blackhole_all(), loop).result(timeout=5)

    # -- called on the server's loop ---------------------------------------------------------

    def _note_accepted(self, protocol: _ServerProtocol) -> None:
        self._accepted += 1
        self._protocols.add(protocol)

    def _note_tls_failure(self) -> None:
        self._tls_failures += 1

    def _note_connected(self, protocol: _ServerProtocol) -> int:
        self._connections += 1
        return self._connections

    def _note_disconnected(self, protocol: _ServerProtocol) -> None:
        self._protocols.discard(protocol)

    def _note_ping(self) -> None:
        self._pings += 1

    def _note_streams(self, count: int) -> None:
        if count > self._max_streams_seen:
            self._max_streams_seen = count

    def _handle(
        self, protocol: _ServerProtocol, completed: list[tuple[int, _Stream]]
    ) -> list[tuple[int, int, list[tuple[str, str]], bytes]]:
        now = time.monotonic()
        answers = []
        records = []
        pushed: list[str] = []
        with self._lock:  # one acquisition per read, not per request
            for stream_id, stream in completed:
                headers = {
                    k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                    for k, v in stream.headers
                }
                body = bytes(stream.body)
                token, status, reason, timestamp_ms = self._validate(protocol, headers, body)
                if reason is None and token:
                    status, reason, timestamp_ms = self._scripted(token)
                answers.append((stream_id, status, *_response(status, reason, timestamp_ms)))
                if status == 200:
                    pushed.append(token)
                if self.record:
                    records.append(
                        RecordedRequest(
                            token=token,
                            topic=headers.get("apns-topic"),
                            method=headers.get(":method", ""),
                            path=headers.get(":path", ""),
                            headers=headers,
                            body=body,
                            time=now,
                            connection_id=protocol.connection_id,
                            stream_id=stream_id,
                            status=status,
                        )
                    )
            self._requests.extend(records)
        if self.on_push is not None:
            for token in pushed:
                self.on_push(token)
        return answers

    def _validate(
        self, protocol: _ServerProtocol, headers: dict[str, str], body: bytes
    ) -> tuple[str, int, str | None, int | None]:
        """APNs' checks, in its order. Returns (token, status, reason or None, timestamp)."""
        path = headers.get(":path", "")
        token = path[len(DEVICE_PATH_PREFIX) :] if path.startswith(DEVICE_PATH_PREFIX) else ""
        if headers.get(":method") != "POST":
            return token, 405, "MethodNotAllowed", None
        if not path.startswith(DEVICE_PATH_PREFIX):
            return token, 404, "BadPath", None
        if not token:
            return token, 400, "MissingDeviceToken", None
        if not set(token) <= _HEX:
            return token, 400, "BadDeviceToken", None
        topic = headers.get("apns-topic")
        if not topic:
            return token, 400, "MissingTopic", None
        if self.check_topic and protocol.cert_topic and topic != protocol.cert_topic:
            return token, 400, "TopicDisallowed", None
        if len(body) > MAX_PAYLOAD_BYTES:
            return token, 413, "PayloadTooLarge", None
        if not body:
            return token, 400, "PayloadEmpty", None
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            # APNs documents no reason for a payload that is not a JSON dictionary; this one
            # is the test server's own.
            return token, 400, "BadPayload", None
        return token, 200, None, None

    def _scripted(self, token: str) -> tuple[int, str | None, int | None]:
        rules = self._rules.get(token)
        if not rules:
            return 200, None, None
        rule = rules[0]
        if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                rules.pop(0)
        return rule.status, rule.reason, rule.timestamp_ms


def _response(
    status: int, reason: str | None, timestamp_ms: int | None
) -> tuple[list[tuple[str, str]], bytes]:
    headers = [(":status", str(status)), ("apns-id", str(uuid.uuid4()))]
    if status == 200:
        return headers, b""  # APNs answers success with an empty body
    document: dict[str, Any] = {"reason": reason or "InternalServerError"}
    if status == 410:
        document["timestamp"] = (
            timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        )
    body = json.dumps(document).encode()
    headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
    return headers, body


def write_server_certificate(directory: Path) -> dict[str, Path]:
    """Write a test CA and a server certificate it issued for 127.0.0.1 and localhost.

    Returns the paths keyed ``ca`` (give it to the client as ``ca_file``), ``cert`` and
    ``key`` (give them to :class:`APNsTestServer`).
    """
    ca_cert, ca_key = create_ca("Pointpass APNs Test Server CA")
    key = generate_rsa_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "ca": directory / "server-ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
    }
    paths["ca"].write_bytes(certificate_pem(ca_cert))
    paths["cert"].write_bytes(certificate_pem(cert))
    paths["key"].write_bytes(private_key_pem(key))
    return paths
