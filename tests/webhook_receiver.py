"""A local HTTPS webhook receiver for the tests: a certificate authority of its own, a
certificate for ``localhost``, ``hooks.example.test`` and 127.0.0.1, and a scripted answer
per request (status codes in turn, then 200; optionally a stall until released)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NAMES = ("localhost", "hooks.example.test")


def write_certificates(directory: Path) -> dict[str, Path]:
    """A CA (``ca``) and a server certificate it signed (``cert``, ``key``), as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pointpass test webhook CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in NAMES]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMES[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.pem", "cert": directory / "cert.pem",
             "key": directory / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    server_name: str | None  # the SNI the client sent


class WebhookReceiver:
    """``answers``: the status codes of the next requests, in turn (then 200). ``stall``: set
    to make the next request wait until :meth:`release` (``stalled`` is set meanwhile)."""

    def __init__(self, certs: dict[str, Path] | None = None) -> None:
        self.requests: list[Received] = []  # those answered
        self.stalled_requests: list[Received] = []  # those held without an answer
        self.answers: list[int] = []
        self.redirect_to: str | None = None
        self.stall = False
        self.stalled = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self
        self._sni: dict[int, str | None] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver._handle(self, body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if certs is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certs["cert"], certs["key"])

            def remember_sni(sock: ssl.SSLSocket, name: str | None, _ctx: Any) -> None:
                self._sni[id(sock)] = name

            context.sni_callback = remember_sni
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def url(self, host: str = "localhost", path: str = "/hooks/pointpass") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def release(self) -> None:
        self._release.set()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        received = Received(handler.path, dict(handler.headers.items()), body,
                            self._sni.get(id(handler.connection)))
        with self._lock:
            stall, self.stall = self.stall, False
        if stall:
            self.stalled_requests.append(received)
            self.stalled.set()
            self._release.wait(60)
            return  # no answer: the connection closes
        with self._lock:
            self.requests.append(received)
            status = self.answers.pop(0) if self.answers else 200
        handler.send_response(status)
        if self.redirect_to and 300 <= status < 400:
            handler.send_header("Location", self.redirect_to)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")
