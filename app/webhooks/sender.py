"""One webhook POST, to the address the guard checked (:mod:`app.webhooks.targets`).

The connection goes to :attr:`Target.address`; TLS sends the URL's host name (SNI) and checks
the certificate against it, and ``Host`` is the URL's. Redirects are not followed (a 3xx is a
failure), the whole exchange has ``POINTPASS_WEBHOOK_TIMEOUT_SECONDS`` (5), and at most 4 KB
of the answer is read. ``POINTPASS_WEBHOOK_CA_FILE`` adds certificate authorities to the
system's (for a receiver with a certificate of the operator's own CA).
"""

from __future__ import annotations

import contextlib
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache

import urllib3
from urllib3.exceptions import HTTPError

from app.webhooks.targets import Target

MAX_ANSWER_BYTES = 4096
USER_AGENT = "Pointpass-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    """What one POST came to: a status code, or an error; and how long it took."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@lru_cache(maxsize=8)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def post(target: Target, body: bytes, headers: dict[str, str], *, timeout: float,
         ca_file: str | None = None) -> Outcome:
    """POST ``body`` to ``target``; never raises for what the network or receiver does."""
    started = time.monotonic()
    pool: urllib3.HTTPConnectionPool
    options = {"timeout": urllib3.Timeout(total=timeout), "retries": False, "maxsize": 1,
               "block": False}
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address, target.port, ssl_context=_tls_context(ca_file),
            server_hostname=target.host, assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED", **options)  # type: ignore[arg-type]
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port,
                                          **options)  # type: ignore[arg-type]
    try:
        response = pool.urlopen(
            "POST", target.path, body=body, redirect=False, retries=False,
            preload_content=False, assert_same_host=False,
            headers={**headers, "Host": target.host_header, "User-Agent": USER_AGENT,
                     "Content-Type": "application/json"})
        with contextlib.suppress(HTTPError):
            response.read(MAX_ANSWER_BYTES)
        status = response.status
        response.release_conn()
        error = None
        if 300 <= status < 400:
            error = f"redirect ({status}) not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}"
        return Outcome(status, error, _ms(started))
    except (HTTPError, OSError, ssl.SSLError) as exc:
        return Outcome(None, _describe(exc)[:200], _ms(started))
    finally:
        pool.close()


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason or exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
