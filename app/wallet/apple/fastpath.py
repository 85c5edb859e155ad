"""The two requests every device makes after each push, answered without Flask's machinery.

After a push, Wallet asks which of the device's passes changed
(``GET /passkit/v1/devices/<device>/registrations/<pass type>?passesUpdatedSince=<tag>``),
then fetches each (``GET /passkit/v1/passes/<pass type>/<serial>`` with its token and
``If-Modified-Since``). A design change of a million cards makes a million of each, so their
usual answers cost one or two indexed queries on a plain connection here, not a Flask
request, an ORM session and its teardown:

- the list: the device's changed serials and the next tag (200), or nothing changed (204);
- the pass: 304 when unchanged since ``If-Modified-Since``, or 200 with the signed version
  the pass store holds (a delivery pre-built it, or another device fetched it first).

Everything else goes to the Flask views (:mod:`app.wallet.apple.webservice`), which stay the
reference: a malformed identifier or tag, an unknown pass type or serial, a wrong token, an
erased member's card, ``HEAD``, a version the store lacks (the view builds and signs it), or
any error here. The answers are the views' own: the same status, headers and content.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
from flask import Flask
from sqlalchemy import bindparam, func, select
from werkzeug.http import http_date, parse_date

from app.auth.security import tokens_match
from app.dbutil import DriverStatement
from app.extensions import db
from app.loyalty import changes
from app.loyalty.models import Card
from app.metrics import ROUTE
from app.wallet.apple import pass_files, registrations
from app.wallet.apple.setup import AppleWallet
from passes.apple import PKPASS_MIME_TYPE

log = logging.getLogger("pointpass.apple.webservice")

EXTENSION = "pointpass.apple.fastpath"

PREFIX = "/passkit/v1/"
_PASS = re.compile(r"/passkit/v1/passes/([^/]+)/([^/]+)")
_SERIALS = re.compile(r"/passkit/v1/devices/([A-Za-z0-9._-]{1,128})/registrations/([^/]+)")
# The URL rules of the views these stand for: the request metrics count them alike.
FETCH_RULE = "/passkit/v1/passes/<pass_type_id>/<serial_number>"
SERIALS_RULE = "/passkit/v1/devices/<device_id>/registrations/<pass_type_id>"

# Compiled once and run on the driver (app.dbutil): SQLAlchemy's execution layer would cost
# as much again as the read itself.
_CARD = DriverStatement(lambda _dialect: select(
    Card.authentication_token, Card.version, Card.last_modified, Card.erased_at
).where(Card.serial_number == bindparam("serial")))

def _tag_and_serials(record: bool) -> Callable[[str], Any]:
    """The tag and the changed serials in one statement: one snapshot, so every change below
    the tag (the snapshot's oldest running transaction) is committed, and visible to the
    serials. With ``record``, the same statement records the tag as the device's
    ``listed_through``, committed without waiting for the disk (``synchronous_commit`` off
    for it alone): a crash that loses it costs a push a later drain might have skipped."""
    def build(_dialect: str) -> Any:
        tag = changes.PG_HORIZON.scalar_subquery()
        columns = [tag, func.array(registrations.CHANGED_SERIALS.scalar_subquery())]
        if not record:
            return select(*columns)
        return (select(*columns, func.set_config("synchronous_commit", "off", True))
                .add_cte(registrations.listed(tag).cte("listed")))
    return build


_TAG_AND_SERIALS = DriverStatement(_tag_and_serials(record=True))
_TAG_AND_SERIALS_UNRECORDED = DriverStatement(_tag_and_serials(record=False))
# In an environ given to PassKitFastPath.answer: answer a list request without recording it
# as the device's (pacing's sample times a real device's requests; the device asked nothing).
UNRECORDED = "pointpass.unrecorded"


Answer = tuple[str, list[tuple[str, str]], bytes]


class PassKitFastPath:
    """WSGI middleware: answer the usual list and pass requests directly (see the module's
    docstring), hand everything else to ``wsgi_app``. Only on PostgreSQL (SQLite's tag is
    a counter the views keep)."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Any]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self._engine: Any = None
        self.enabled = bool(app.config.get("PASSKIT_FAST_PATH", True))  # env: 0 / false

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if (not self.enabled or environ.get("REQUEST_METHOD") != "GET"
                or not path.startswith(PREFIX)):
            return self.wsgi_app(environ, start_response)
        try:
            answer = self.answer(path, environ)
        except Exception:  # the view answers it, and reports what went wrong
            log.debug("fast path declined %s", path, exc_info=True)
            answer = None
        if answer is None:
            return self.wsgi_app(environ, start_response)
        status, headers, body = answer
        if body:
            headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    def answer(self, path: str, environ: dict[str, Any]) -> Answer | None:
        """The answer to a GET of ``path`` under :data:`PREFIX` (``environ`` as WSGI gives
        it), or ``None`` when the views must answer it."""
        wallet: AppleWallet | None = self.app.extensions.get("pointpass.apple")
        if wallet is None:
            return None
        if self._engine is None:
            with self.app.app_context():
                self._engine = db.engine
        if self._engine.dialect.name != "postgresql":
            return None
        match = _PASS.fullmatch(path)
        if match is not None:
            if match.group(1) != wallet.pass_type_id:
                return None
            environ[ROUTE] = FETCH_RULE
            return self._pass(wallet, match.group(2), environ)
        match = _SERIALS.fullmatch(path)
        if match is not None:
            if match.group(2) != wallet.pass_type_id:
                return None
            environ[ROUTE] = SERIALS_RULE
            return self._serials(match.group(1), environ.get("QUERY_STRING", ""),
                                 record=not environ.get(UNRECORDED))
        return None

    def _first(self, statement: DriverStatement, **params: Any) -> tuple[Any, ...] | None:
        """The statement's first row, read on a connection of the app's pool in autocommit
        while the fast path holds it (no BEGIN and ROLLBACK around its one read)."""
        pooled = self._engine.raw_connection()
        try:
            connection = pooled.driver_connection
            connection.autocommit = True
            try:
                return statement(self._engine.dialect).first(connection.cursor(), params)
            finally:
                connection.autocommit = False
        except psycopg.OperationalError:
            pooled.invalidate()  # not back to the pool: the view gets a sound one
            raise
        finally:
            pooled.close()

    def _pass(self, wallet: AppleWallet, serial: str, environ: dict[str, Any]) -> Answer | None:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme != "ApplePass":
            return None
        row = self._first(_CARD, serial=serial)
        if row is None:
            return None
        authentication_token, version, modified, erased_at = row
        if erased_at is not None or not tokens_match(token.strip(), authentication_token):
            return None
        last_modified = datetime.fromtimestamp(modified, UTC)
        since = parse_date(environ.get("HTTP_IF_MODIFIED_SINCE"))
        if since is not None and last_modified <= since:
            return "304 NOT MODIFIED", [], b""  # as werkzeug sends it: no entity headers
        data = wallet.store.get(pass_files.store_key(serial, version, wallet))
        if data is None:
            return None  # the view builds and signs it
        return "200 OK", [("Content-Type", PKPASS_MIME_TYPE),
                          ("Last-Modified", http_date(last_modified)),
                          ("Cache-Control", "no-cache, private")], data

    def _serials(self, device: str, query: str, record: bool) -> Answer | None:
        since = 0
        if query:
            name, _, value = query.partition("=")
            if name != "passesUpdatedSince" or "&" in value or not value.isdigit() \
                    or len(value) > 20:
                return None
            since = int(value)
        row = self._first(_TAG_AND_SERIALS if record else _TAG_AND_SERIALS_UNRECORDED,
                          device=device, since=since)
        assert row is not None
        tag, serials = row[:2]
        if not serials:
            return "204 NO CONTENT", [], b""
        return "200 OK", [("Content-Type", "application/json")], _json(serials, tag)


def _json(serials: Iterable[str], tag: int) -> bytes:
    # As the view's flask.json writes it: keys sorted.
    return json.dumps({"serialNumbers": list(serials), "lastUpdated": str(tag)},
                      sort_keys=True).encode()


def init_app(app: Flask) -> None:
    """Put the fast path in front of ``app``'s views (inside the request-id and metrics
    middlewares, which wrap it afterwards)."""
    fast = PassKitFastPath(app, app.wsgi_app)
    app.extensions[EXTENSION] = fast  # pacing "auto" times its answers (app.wallet.apple.push)
    app.wsgi_app = fast  # type: ignore[method-assign]
