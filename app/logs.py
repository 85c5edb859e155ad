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
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from gunicorn import glogging

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
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


# Access log fields that are credentials whatever they hold.
_CREDENTIAL_ATOMS = frozenset({
    "{authorization}i", "{proxy-authorization}i", "{cookie}i", "{set-cookie}o",
    "{http_authorization}e", "{http_proxy_authorization}e", "{http_cookie}e",
})
_ATOM_NAMES = re.compile(r"%\(([^)]+)\)")


class GunicornLogger(glogging.Logger):  # type: ignore[misc] - gunicorn has no type hints
    """gunicorn's logger with secrets kept out of the access and error logs.

    Use it with ``gunicorn -c python:app.gunicorn_conf`` (or ``--logger-class
    app.logs.GunicornLogger``). Every access log field the format uses is passed through
    :func:`redact` (the request line ``%(r)s``, path ``%(U)s``, query ``%(q)s``, referer
    ``%(f)s``, headers and environment values), and credential headers are replaced with
    ``[redacted]``. Every record of the process, the error log's included, is redacted too
    (:func:`install`).
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        install()
        names = _ATOM_NAMES.findall(cfg.access_log_format or "")
        # gunicorn looks up header and environment fields in lower case.
        self._format_atoms = frozenset(n.lower() if n.startswith("{") else n for n in names)

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
