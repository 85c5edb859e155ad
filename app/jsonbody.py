"""Every JSON request body the service reads is parsed here, strictly.

Python's ``json`` module takes what a hostile client sends and fails badly on some of it:
nesting thousands of levels deep raises ``RecursionError`` (a 500), an integer of more than
4,300 digits raises a bare ``ValueError`` (Python's int-string conversion limit; a 500), and
a key given twice silently keeps the last value (``{"points": 1, "points": 1000000}`` was
credited 1,000,000). :func:`loads` refuses all three with :class:`MalformedJSON`, and also the
``NaN`` and ``Infinity`` literals, which are not JSON, and unpaired surrogate escapes
(``"\\ud800"``), which name no character and cannot be stored (a 500 in the database
driver).

:func:`init_app` makes it the parser of every body: the app's JSON provider (``request.json``
and ``request.get_json()``, used by the PassKit, Google and staff page endpoints) and the
``json`` location of the API's input schemas (APIFlask's webargs parser, which would otherwise
call ``json.loads`` itself). A body it refuses is a 400 ``malformed-json`` problem that says
why (see :func:`app.problems.init_app`).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from apiflask import APIFlask
from apiflask.schema_adapters.marshmallow import parser as input_parser
from flask import Request as FlaskRequest
from flask.json.provider import DefaultJSONProvider
from marshmallow import missing
from werkzeug.exceptions import BadRequest

# Deepest nesting of arrays and objects a body may have. The deepest body the API takes is
# three levels (a program's tiers); 64 leaves room for clients that wrap bodies, and keeps
# the recursive code that later walks a body (schema loading) far from Python's limit.
MAX_DEPTH = 64


class MalformedJSON(ValueError):
    """The text is JSON that the service refuses to read (too deep, a duplicate key, a number
    too long to convert, or a literal JSON does not have). A ``ValueError``, as a syntax error
    is, so every caller that handles one handles the other."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedJSON(f"the key {json.dumps(key)[:80]} appears more than once "
                                    "in an object")
            seen.add(key)
    return obj


def _not_json(literal: str) -> Any:
    raise MalformedJSON(f"{literal} is not a JSON value")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels (no recursion)."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        level = [child for container in level
                 for child in (container.values() if isinstance(container, dict) else container)
                 if isinstance(child, dict | list)]
        if not level:
            return False
    return True


# A \u escape of a UTF-16 surrogate: a pair is one character once parsed, a lone one stays.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any) -> bool:
    """Whether a string (or key) anywhere in ``value`` holds an unpaired surrogate."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


# One decoder, built once: json.loads with hooks would build one per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_not_json)


def loads(data: str | bytes | bytearray) -> Any:
    """Parse a JSON text (bytes in UTF-8, -16 or -32, as ``json.loads`` detects them).

    Raises ``json.JSONDecodeError`` or ``UnicodeDecodeError`` for text that is not JSON, and
    :class:`MalformedJSON` for JSON nested deeper than :data:`MAX_DEPTH`, with a key twice in
    one object, with an integer longer than Python converts, with ``NaN``/``Infinity`` or
    with an unpaired surrogate. All three are ``ValueError``; nothing else is raised.
    """
    # Decoded strictly: json.loads lets encoded surrogates through ("surrogatepass").
    text = data if isinstance(data, str) else bytes(data).decode(json.detect_encoding(data))
    if text.startswith("\ufeff"):  # as json.loads refuses it
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        # The parser recurses per level: it gave up near Python's recursion limit.
        raise MalformedJSON(f"it is nested more than {MAX_DEPTH} levels deep") from None
    except (json.JSONDecodeError, MalformedJSON):
        raise
    except ValueError:
        # The only other ValueError: an integer literal over sys.get_int_max_str_digits().
        raise MalformedJSON(f"a number in it has more than {sys.get_int_max_str_digits()} "
                            "digits") from None
    # Each level needs a bracket, so ordinary bodies skip the walk: str.count is a fast scan.
    if text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise MalformedJSON(f"it is nested more than {MAX_DEPTH} levels deep")
    if (_SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text)) and _lone_surrogate(value):
        raise MalformedJSON("a string in it holds an unpaired surrogate, which is no character")
    return value


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, reading with :func:`loads`; writing is unchanged."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if kwargs:  # a caller asking for other decoding gets the standard parser
            return super().loads(s, **kwargs)
        return loads(s)


def malformed(error: ValueError) -> BadRequest:
    """The 400 for a body that is not valid JSON; the problem handler names the reason."""
    exception = BadRequest(f"The request body is not valid JSON ({error}).")
    exception.exc = error  # type: ignore[attr-defined]  # as webargs attaches it
    return exception


class Request(FlaskRequest):
    """Flask's request, whose JSON failures say why (Flask's own 400 says nothing)."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:  # not a JSON content type: Werkzeug's 415
            return super().on_json_loading_failed(e)
        raise malformed(e)


@input_parser.location_loader("json")
def _load_json(request: FlaskRequest, schema: Any) -> Any:
    """The API schemas' ``json`` location, as webargs reads it (nothing for another content
    type or an empty body), parsed by the app's provider."""
    if not request.is_json or not request.get_data(cache=True):
        return missing
    return request.get_json()


def init_app(app: APIFlask) -> None:
    """Parse every JSON body the app reads with :func:`loads`."""
    app.json = JSONProvider(app)
    app.request_class = Request
