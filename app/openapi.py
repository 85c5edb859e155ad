"""What the OpenAPI document adds to APIFlask's: the service's own rules and answers."""

from __future__ import annotations

import copy
from typing import Any

from apiflask import APIFlask
from flask import Response, request

from app import requestid
from app.problems import PROBLEM_MEDIA_TYPE
from app.schemas import MAX_ID, input_schemas

# JSON Schema keywords that an empty object fails, so a request needs a body.
_NEEDS_A_BODY = ("required", "oneOf", "allOf", "minProperties")
# A card's serial in a path: what a stored serial (String(32)) and a card code can both hold.
# Issued serials are 20 of these characters (app.enrollment.service.new_serial_number); any
# other text names no card (404).
SERIAL_PATTERN = r"^[0-9A-Z]{1,32}$"


#: Request bodies that are not JSON (an image upload): ``(method, OpenAPI path)`` -> the
#: operation's ``requestBody``, filled in by :func:`raw_body`.
RAW_BODIES: dict[tuple[str, str], dict[str, Any]] = {}


def raw_body(method: str, path: str, media_types: list[str], description: str) -> None:
    """Say in the document that ``method path`` takes a body of ``media_types`` read as bytes
    (APIFlask describes only the bodies of input schemas)."""
    RAW_BODIES[(method.lower(), path)] = {
        "required": True, "description": description,
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}
                    for media_type in media_types}}


#: Path parameters that take a fixed set of words (Werkzeug's ``any`` converter, which
#: APIFlask describes as any string): name -> the words.
PATH_WORDS: dict[str, tuple[str, ...]] = {}


def document(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what the API takes and answers: the rules input schemas
    check across fields (``InputSchema.openapi_rules``), errors as problem details
    (``application/problem+json``), 400 for a malformed body or a NUL in the URL, 413 for
    an oversized body, a JSON body required where its schema refuses an empty object, path
    ids within the database's range and serials in their format."""
    schemas = spec.get("components", {}).get("schemas", {})
    for schema_class in input_schemas():
        if schema_class.openapi_rules and schema_class.__name__ in schemas:
            _merge(schemas[schema_class.__name__], schema_class.openapi_rules)
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if (method, path) in RAW_BODIES:
                operation["requestBody"] = copy.deepcopy(RAW_BODIES[(method, path)])
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["schema"].get("type") == "integer":
                    parameter["schema"].update(minimum=1, maximum=MAX_ID)
                elif parameter.get("in") == "path" and parameter.get("name") == "serial":
                    parameter["schema"]["pattern"] = SERIAL_PATTERN
                elif parameter.get("in") == "path" and parameter.get("name") in PATH_WORDS:
                    parameter["schema"]["enum"] = list(PATH_WORDS[parameter["name"]])
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                reference = body.get("schema", {}).get("$ref", "")
                component = schemas.get(reference.rsplit("/", 1)[-1], {})
                if any(rule in component for rule in _NEEDS_A_BODY):
                    operation["requestBody"]["required"] = True
            operation["responses"].setdefault("400", {
                "description": "The URL holds a NUL character (`nul-character`)" if body is None
                else "The body is not valid JSON (`malformed-json`: also a key twice in one "
                "object, nesting deeper than 64 levels, an integer of more than 4,300 digits, "
                "an unpaired surrogate), or the URL holds a NUL character (`nul-character`)",
                "content": {PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/ProblemSchema"}}},
            })
            if body is not None:
                operation["responses"].setdefault("413", {
                    "description": "The body is larger than `POINTPASS_MAX_CONTENT_LENGTH`",
                    "content": {PROBLEM_MEDIA_TYPE: {
                        "schema": {"$ref": "#/components/schemas/ProblemSchema"}}},
                })
            for status, response in operation["responses"].items():
                response.setdefault("headers", {})[requestid.HEADER] = {
                    "$ref": f"#/components/headers/{requestid.HEADER}"}
                content = response.get("content", {})
                if int(status) >= 400 and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    spec.setdefault("components", {}).setdefault("headers", {})[requestid.HEADER] = {
        "description": "The request's id: the `X-Request-Id` the request sent when it is "
        f"printable ASCII without spaces of at most {requestid.MAX_LENGTH} characters, else "
        "one the service made. Also the `request_id` of a problem body and of the service's "
        "log lines.",
        "schema": {"type": "string", "maxLength": requestid.MAX_LENGTH}}
    return spec


def _merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


# Swagger UI for /api/docs, vendored (app/static/vendor/README.md): the page loads nothing
# from other servers, so it works offline and tells no CDN who reads the docs.
SWAGGER_UI_FILES = {
    "SWAGGER_UI_BUNDLE_JS": "swagger-ui-bundle.js",
    "SWAGGER_UI_STANDALONE_PRESET_JS": "swagger-ui-standalone-preset.js",
    "SWAGGER_UI_CSS": "swagger-ui.css",
    "DOCS_FAVICON": "swagger-ui-favicon-32x32.png",
}
# Only this server: also no validator badge, which Swagger UI fetches from swagger.io.
DOCS_CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline'",  # APIFlask's page starts Swagger UI inline
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])


def _docs_headers(response: Response) -> Response:
    if request.endpoint == "openapi.docs":
        response.headers.setdefault("Content-Security-Policy", DOCS_CONTENT_SECURITY_POLICY)
    return response


def init_app(app: APIFlask) -> None:
    # APIFlask hands the processor the spec as a dict (its type allows text too).
    app.spec_processor(document)  # type: ignore[arg-type]
    for setting, name in SWAGGER_UI_FILES.items():
        app.config[setting] = f"{app.static_url_path}/vendor/{name}"
    app.config["SWAGGER_UI_CONFIG"] = {"validatorUrl": None}
    app.after_request(_docs_headers)
