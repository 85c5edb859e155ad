"""One id per request, on its response, its problem bodies, its log lines and its jobs.

:class:`RequestIdMiddleware` takes the id from the ``X-Request-Id`` request header when it is
a usable one (printable ASCII without spaces, at most :data:`MAX_LENGTH` characters), else
makes one (32 hexadecimal digits), holds it in a context variable while the request is served
and returns it in the ``X-Request-Id`` header of every response, errors and 404s included.
:func:`current` reads it (``-`` outside a request): ``app.logs`` puts it on every log record,
``app.problems`` in every problem body, and ``app.background`` carries it into the jobs a
request enqueues, where :func:`bound` sets it again while the job runs.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

HEADER = "X-Request-Id"
# The id outside a request (a periodic sweep, a command, start-up).
NONE = "-"
MAX_LENGTH = 128

_ENVIRON_KEY = "HTTP_X_REQUEST_ID"
# Visible ASCII: no control character can forge a log line, no space can split a field.
_USABLE = re.compile(rf"[!-~]{{1,{MAX_LENGTH}}}")
_current: ContextVar[str] = ContextVar("pointpass_request_id", default=NONE)


def current() -> str:
    """The id of the request (or of the job's request) being served; ``-`` if none."""
    return _current.get()


def new() -> str:
    """A fresh request id: 32 random hexadecimal digits."""
    return secrets.token_hex(16)


def usable(value: str | None) -> bool:
    """Whether a client's ``X-Request-Id`` may be kept as it is."""
    return value is not None and _USABLE.fullmatch(value) is not None


@contextmanager
def bound(request_id: str | None) -> Iterator[None]:
    """Serve ``request_id`` (``-`` when None) as the current id inside the block."""
    token = _current.set(request_id or NONE)
    try:
        yield
    finally:
        _current.reset(token)


StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class RequestIdMiddleware:
    """WSGI middleware giving each request its id (see the module's description).

    Outside Flask, so the id is set before any of its hooks runs and reaches every
    response, whatever answered it."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        request_id = environ.get(_ENVIRON_KEY)
        if request_id is None or _USABLE.fullmatch(request_id) is None:
            request_id = new()

        def start_with_id(status: str, headers: list[tuple[str, str]],
                          exc_info: Any = None) -> Any:
            headers.append((HEADER, request_id))
            return start_response(status, headers, exc_info)

        token = _current.set(request_id)
        try:
            return self.app(environ, start_with_id)
        finally:
            _current.reset(token)
