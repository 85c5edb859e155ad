"""Keeping secrets out of the logs, whoever writes the line.

Several URLs of the service are bearer secrets: the card page (``/card/<serial>/<token>``,
which shows the current redemption code) and the pass download
(``/wallet/apple/<serial>/<token>.pkpass``, whose pass holds the ``authenticationToken`` of
Apple's web service). They appear in request lines, in ``Referer`` headers (the card page's
own links and downloads send it) and in the app's error lines. :func:`redact` rewrites them,
and the other secrets that can end up in a message (API keys, ``Authorization`` values,
redemption codes, JSON Web Tokens such as Google save links), to ``[redacted]``.

:func:`install` applies it (and :func:`inert` to string arguments, where text from outside
arrives) to every log record this process creates, whatever the logger,
handler or call site: a log record factory redacts the final message (``record.getMessage()``,
so the arguments too) and an exception's traceback text. A filter on the handlers would miss
handlers added later (a deployer's logging configuration, gunicorn's own), and a filter on the
root logger sees only records logged on the root logger itself.

For gunicorn, :class:`GunicornLogger` also redacts the access log's fields (``%(r)s``,
``%(U)s``, ``%(q)s``, ``%(f)s`` and any header or environment field) and blanks credential
headers (``Authorization``, ``Cookie``, ``Set-Cookie``); ``app/gunicorn_conf.py`` selects it.

The same factory puts the request id (:mod:`app.requestid`, ``-`` outside a request) on every
record as ``record.request_id``. ``POINTPASS_LOG_FORMAT`` chooses how lines are written:
``text`` (:data:`TEXT_FORMAT`) or ``json``, one object per line (:class:`JsonFormatter`), for
the app's handler (:func:`init_app`, so ``pointpass worker`` too) and gunicorn's error and
access logs (:class:`GunicornLogger`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from gunicorn import glogging

from app import requestid
from app.config import ConfigError

REDACTED = "[redacted]"

# Each kind of secret: the substrings that announce it (a cheap test that spares the
# expression most lines), and the expression, whose group 1 is kept before "[redacted]".
# A character of a token's path segment. Tokens are hexadecimal: what ends a URL in a log
# line (a quote, "?", punctuation of the sentence around it) ends them too, and ".pkpass" is kept.
_PATH_CHARS = r"[^/\s?#&\"'<>.%:;,()\[\]{}]"
_KEEP = r"\1" + REDACTED
_KINDS: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    # The token of the card page and of the pass download (the serial is kept).
    (("/card/", "/wallet/apple/"),
     re.compile(rf"(/(?:card|wallet/apple)/{_PATH_CHARS}*/){_PATH_CHARS}+")),
    # The same percent-encoded: a URL in a query string, or a client that encoded the slash
    # (gunicorn's request line keeps the raw URI, and the route still matches).
    (("%2F", "%2f"),
     re.compile(rf"((?:/|%2[Ff])(?:card|wallet(?:/|%2[Ff])apple)(?:/|%2[Ff]){_PATH_CHARS}*"
                rf"(?:/|%2[Ff])){_PATH_CHARS}+")),
    # A redemption code's signature (the serial and code version are kept).
    (("PP1:", "pp1:"),
     re.compile(r"(\b[Pp][Pp]1:[0-9A-Za-z]{1,40}:[0-9A-Za-z]{1,7}:)[A-Za-z2-7]{24}")),
    # An API key.
    (("pp_",), re.compile(r"((?<![\w-])pp_)[\w-]{20,}")),
    # An Authorization value quoted in a message (a dump of headers).
    (("earer", "EARER", "pplePass", "pplepass", "PPLEPASS"),
     re.compile(r"(\b(?i:Bearer|ApplePass)\s+)[^\s\"',;]+")),
    # A JSON Web Token: Google save links (".../gp/v/save/<jwt>"), OAuth assertions.
    (("eyJ",), re.compile(r"()\beyJ[\w-]*\.[\w-]+\.[\w-]*")),
)


def redact(text: str) -> str:
    """``text`` with every secret this service knows of replaced by ``[redacted]``; the part
    that names the thing is kept (``/card/<serial>/[redacted]``, ``PP1:<serial>:<v>:[redacted]``).
    Text holding none is returned as it is, and cheaply."""
    for markers, pattern in _KINDS:
        for marker in markers:
            if marker in text:
                text = pattern.sub(_KEEP, text)
                break
    return text


def _escape_table() -> dict[int, str]:
    """Characters a log line must not carry as they are: C0 and C1 controls and DEL (a
    newline forges a line of its own, ANSI escapes rewrite a terminal), line and paragraph
    separators, and the bidirectional controls that make text read other than it is stored.
    Backslash too, so an escape in an escaped value is always ours."""
    codes = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
             *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
    table = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in codes}
    table.update({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    return table


_ESCAPES = _escape_table()


def inert(value: str) -> str:
    """``value`` with control, separator and bidi characters (and backslashes) written as
    escapes, so text from outside cannot forge or disguise a log line."""
    return value.translate(_ESCAPES)


def _inert_arguments(record: logging.LogRecord) -> None:
    """Escape the string arguments of a record (where outside text arrives; the template is
    ours). ``isprintable`` (false for every escaped character) spares the usual argument."""
    args = record.args
    if isinstance(args, tuple) and any(isinstance(a, str) and not a.isprintable()
                                       for a in args):
        record.args = tuple(inert(a) if isinstance(a, str) and not a.isprintable() else a
                            for a in args)


_traceback_formatter = logging.Formatter()
_install_lock = threading.Lock()
_installed = False


def _redact_record(record: logging.LogRecord) -> None:
    _inert_arguments(record)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: the handler reports it as usual
        return
    redacted = redact(message)
    if redacted != message:
        # The formatted message replaces the template, so no handler formats the arguments
        # again. Lines with nothing to hide keep their template and arguments.
        record.msg, record.args = redacted, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # Exception messages may quote a URL. Formatters use ``exc_text`` when it is set, so
        # it is set only when something was hidden (custom formatters keep their own format).
        text = _traceback_formatter.formatException(record.exc_info)
        hidden = redact(text)
        if hidden != text:
            record.exc_text = hidden
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install() -> None:
    """Redact every log record created in this process from now on (idempotent).

    Installed as a log record factory wrapping the current one, so it applies to every
    logger (the app's, gunicorn's, Werkzeug's, libraries') and every handler."""
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.request_id = requestid.current()
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


# Formats of a line: POINTPASS_LOG_FORMAT.
TEXT = "text"
JSON = "json"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
_HANDLER_MARK = "_pointpass"


def log_format(value: Any) -> str:
    """``POINTPASS_LOG_FORMAT`` checked: ``text`` (unset) or ``json``."""
    chosen = TEXT if value is None or value == "" else str(value).strip().lower()
    if chosen not in (TEXT, JSON):
        raise ConfigError(f"POINTPASS_LOG_FORMAT must be {TEXT!r} or {JSON!r}, not {value!r}.")
    return chosen


def _with_request_id(record: logging.LogRecord) -> None:
    # Records not made by the factory (another process's, a handler's own) have none.
    if not hasattr(record, "request_id"):
        record.request_id = requestid.NONE


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, for any record (those without a request id print ``-``)."""

    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        _with_request_id(record)
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``request_id``, and ``exception`` (the traceback) when there is one.

    The message is the redacted, escaped one (:func:`install`); the object is written in
    ASCII, so no character of it (a line separator, a control) can end or disguise a line.
    A record's ``pointpass_fields`` mapping (the access log's) adds members."""

    def format(self, record: logging.LogRecord) -> str:
        _with_request_id(record)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": record.request_id,
        }
        fields = getattr(record, "pointpass_fields", None)
        if isinstance(fields, Mapping):
            line.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=True, default=str)


def formatter(chosen: str) -> logging.Formatter:
    """The formatter of a checked :func:`log_format`."""
    return JsonFormatter() if chosen == JSON else TextFormatter()


def configure(chosen: str) -> None:
    """Redact every record (:func:`install`) and write the process's lines in ``chosen``
    format: to standard error at INFO when no logging is configured yet (the handler this
    adds is reformatted on a later call); a deployer's own handlers are left as they are.
    In JSON, Python's warnings are logged too, so none writes a line of plain text."""
    install()
    if chosen == JSON:
        logging.captureWarnings(True)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    for handler in root.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            handler.setFormatter(formatter(chosen))


def init_app(app: Flask) -> None:
    """Logging for the service (``POINTPASS_LOG_FORMAT``), and a request id per request."""
    configure(log_format(app.config.get("LOG_FORMAT")))
    app.wsgi_app = requestid.RequestIdMiddleware(app.wsgi_app)  # type: ignore[method-assign]


# Access log fields that are credentials whatever they hold.
_CREDENTIAL_ATOMS = frozenset({
    "{authorization}i", "{proxy-authorization}i", "{cookie}i", "{set-cookie}o",
    "{http_authorization}e", "{http_proxy_authorization}e", "{http_cookie}e",
})
_ATOM_NAMES = re.compile(r"%\(([^)]+)\)")
_REQUEST_ID_ATOM = "{x-request-id}o"
# The members of a JSON access line, from gunicorn's access log fields.
_JSON_ACCESS_FIELDS = {"remote_addr": "h", "method": "m", "path": "U", "query": "q",
                       "status": "s", "bytes": "B", "referer": "f", "user_agent": "a"}


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.isdigit() else value


class GunicornLogger(glogging.Logger):  # type: ignore[misc] - gunicorn has no type hints
    """gunicorn's logger with secrets kept out of the access and error logs.

    Use it with ``gunicorn -c python:app.gunicorn_conf`` (or ``--logger-class
    app.logs.GunicornLogger``). Every access log field the format uses is passed through
    :func:`redact` (the request line ``%(r)s``, path ``%(U)s``, query ``%(q)s``, referer
    ``%(f)s``, headers and environment values), and credential headers are replaced with
    ``[redacted]``. Every record of the process, the error log's included, is redacted too
    (:func:`install`). Each access line is logged under the response's ``X-Request-Id``, and
    ``POINTPASS_LOG_FORMAT=json`` turns both logs (and the app's, :func:`configure`) into
    JSON lines, the access line's fields as members.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        chosen = log_format(os.environ.get("POINTPASS_LOG_FORMAT"))
        # Now rather than when a worker builds the app: its settings' warnings are formatted.
        configure(chosen)
        names = set(_ATOM_NAMES.findall(cfg.access_log_format or ""))
        self._json = chosen == JSON
        if self._json:
            names.update(_JSON_ACCESS_FIELDS.values())
            for handler in [*self.error_log.handlers, *self.access_log.handlers]:
                handler.setFormatter(JsonFormatter())
        # gunicorn looks up header and environment fields in lower case.
        self._format_atoms = frozenset(n.lower() if n.startswith("{") else n for n in names)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """gunicorn's access line, logged under the response's request id (so a JSON line
        carries it as ``request_id``), with the request's fields as members in JSON."""
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        extra = None
        if self._json:
            fields = {key: atoms.get(atom) for key, atom in _JSON_ACCESS_FIELDS.items()}
            fields["status"] = _number(fields["status"])
            fields["bytes"] = _number(fields["bytes"])
            fields["duration_ms"] = round(request_time.total_seconds() * 1000, 3)
            extra = {"pointpass_fields": fields}
        with requestid.bound(atoms.get(_REQUEST_ID_ATOM)):
            try:
                self.access_log.info(self.cfg.access_log_format,
                                     self.atoms_wrapper_class(atoms), extra=extra)
            except Exception:
                self.error(traceback.format_exc())

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        # Only the fields the format prints: a request has dozens.
        for name in self._format_atoms:
            value = atoms.get(name)
            if name in _CREDENTIAL_ATOMS:
                if value is not None:
                    atoms[name] = REDACTED
            elif isinstance(value, str):
                atoms[name] = redact(value)
        return atoms
