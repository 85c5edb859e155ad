"""RFC 9457 problem details for every error the service answers."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
from apiflask import APIFlask, HTTPError
from apiflask.fields import Integer, List, Nested, String
from apiflask.schemas import Schema
from flask import Response, current_app, json, render_template, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from app import requestid, schemacheck
from app.errors import DomainError

log = logging.getLogger("pointpass.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:pointpass:problem:"


class FieldErrorSchema(Schema):
    location = String(metadata={"description": "json, query, headers, path or form"})
    field = String(metadata={"description": "dotted path of the field at fault"})
    message = String()


class ProblemSchema(Schema):
    type = String(metadata={"example": "urn:pointpass:problem:insufficient-points"})
    title = String()
    status = Integer()
    detail = String()
    instance = String()
    errors = List(Nested(FieldErrorSchema))
    request_id = String(metadata={
        "description": "the request's id, as in its X-Request-Id response header: quote it "
        "when reporting a problem (the service's log lines carry it)",
        "example": "3f2c9a0d8e7b4c1a9f6e5d4c3b2a1908"})


def problem(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Build a ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code if code else "about:blank",
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    if errors:
        body["errors"] = errors
    body.update(extra)
    body["request_id"] = requestid.current()
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten(detail: Any, location: str, path: str = "") -> Iterator[dict[str, str]]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from _flatten(value, location, f"{path}.{key}" if path else str(key))
    elif isinstance(detail, list) and all(isinstance(m, str) for m in detail):
        for message in detail:
            yield {"location": location, "field": path or "_schema", "message": message}
    elif isinstance(detail, list):
        for item in detail:
            yield from _flatten(item, location, path)
    else:
        yield {"location": location, "field": path or "_schema", "message": str(detail)}


def _http_error(error: HTTPError) -> Response:
    headers = dict(error.headers or {})
    if error.status_code == 422 and isinstance(error.detail, dict):
        # Schema validation: ``{location: {field: [messages]}}``.
        errors = [e for loc, d in error.detail.items() for e in _flatten(d, loc)]
        return problem(422, code="validation", title="Validation failed",
                       detail="The request did not pass validation.", errors=errors,
                       headers=headers)
    title = HTTP_STATUS_CODES.get(error.status_code, "Error")
    detail = error.message if isinstance(error.message, str) and error.message != title else None
    return problem(error.status_code, title=title, detail=detail, headers=headers)


# How long a client should wait before retrying when the database cannot be reached.
DATABASE_RETRY_SECONDS = 5
# ... and when the schema is behind the code, until `pointpass db upgrade` has run.
SCHEMA_RETRY_SECONDS = 30


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database could not be reached or did not answer in time
    (down, restarting, connection dropped, pool exhausted, SQLite write lock not granted),
    as opposed to a bug in a statement."""
    if isinstance(error, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    original = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(original, psycopg.OperationalError):
        return True
    if isinstance(original, sqlite3.OperationalError):
        message = str(original)
        return "locked" in message or "unable to open" in message
    return False


def _wants_a_page() -> bool:
    """A browser asking for a page: HTML preferred to JSON, outside the API."""
    if request.path.startswith("/api/"):
        return False
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _refuse_nul_characters() -> Response | None:
    """A NUL character in the URL, the query or a form: 400 before any view runs (nothing
    can be stored with it, and PostgreSQL refuses it even in a lookup). JSON bodies are
    checked field by field by the input schemas."""
    where = None
    if "\x00" in request.path:
        where = "The URL path"
    elif any("\x00" in key or "\x00" in value for key, value in request.args.items(multi=True)):
        where = "The query string"
    elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data") and any(
            "\x00" in key or "\x00" in value for key, value in request.form.items(multi=True)):
        where = "The form"
    if where is None:
        return None
    return problem(400, code="nul-character", title="NUL character",
                   detail=f"{where} contains a NUL (U+0000) character.")


def init_app(app: APIFlask) -> None:
    """Route every error, from schemas, auth, Werkzeug and services, through problem JSON."""
    app.config["HTTP_ERROR_SCHEMA"] = ProblemSchema
    app.config["VALIDATION_ERROR_SCHEMA"] = ProblemSchema
    app.error_processor(_http_error)
    app.before_request(_refuse_nul_characters)

    @app.errorhandler(HTTPException)
    def _werkzeug_error(error: HTTPException) -> Response:
        if error.code == 404 and _wants_a_page():
            # A mistyped or truncated link opened in a browser: a page in the reader's
            # language, not JSON.
            return Response(render_template("404.html"), status=404, mimetype="text/html")
        # Replaces APIFlask's handler, which drops the description (e.g. why JSON failed).
        status = error.code or 500
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        code = None
        detail = error.description
        cause = getattr(error, "exc", None)  # webargs attaches the decoding error
        if isinstance(error, BadRequest) and (isinstance(cause, ValueError)
                                              or "JSON" in (detail or "")):
            code, detail = "malformed-json", "The request body is not valid JSON."
            if isinstance(cause, ValueError):
                detail = f"The request body is not valid JSON ({str(cause)[:200]})."
        return problem(status, code=code, detail=detail, headers=headers)

    @app.errorhandler(DomainError)
    def _domain_error(error: DomainError) -> Response:
        return problem(error.status, code=error.code, title=error.title, detail=error.detail,
                       headers=error.headers, **error.extra)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPError):
            return _http_error(error)
        if database_unavailable(error):
            # Expected during an outage: one line, not a traceback per request.
            log.error("database unavailable on %s %s: %s", request.method, request.path,
                      str(error).splitlines()[0] if str(error) else type(error).__name__)
            return problem(
                503, code="database-unavailable", title="Database unavailable",
                detail="The database could not be reached. Retry shortly with the same "
                "Idempotency-Key: a request that did go through is answered, not repeated.",
                headers={"Retry-After": str(DATABASE_RETRY_SECONDS)})
        if schemacheck.is_schema_error(error):
            outdated = schemacheck.behind_code(current_app._get_current_object())
            if outdated is not None:
                # Every request fails the same way until an operator acts: one line each.
                log.error("database schema out of date on %s %s: %s", request.method,
                          request.path, outdated.detail)
                return problem(
                    503, code="schema-outdated", title="Database schema out of date",
                    detail="The database schema is older than this version of Pointpass: "
                    "an operator must run `pointpass db upgrade`.",
                    headers={"Retry-After": str(SCHEMA_RETRY_SECONDS)})
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, detail="An unexpected error occurred; it has been logged.")
