"""A local Google Wallet look-alike for tests: a real HTTP server on 127.0.0.1.

It speaks:

* ``POST /token``: the OAuth 2.0 JWT-bearer token exchange. The assertion's RS256 signature
  is verified with the public key of the service account (derived from the service-account
  JSON the test wrote), ``aud`` must be the token URL (this server's, or Google's
  ``https://oauth2.googleapis.com/token``, which google-auth always uses), ``iss`` the
  account's email and
  ``scope`` the wallet scope. The answer is ``access_token``, ``expires_in``, ``token_type``.
* ``/walletobjects/v1/loyaltyClass`` and ``/walletobjects/v1/loyaltyObject``: ``insert``
  (POST), ``get`` (GET), ``patch`` (PATCH), ``update`` (PUT) and ``addMessage`` (POST
  ``<id>/addMessage``), answering like Google: 401 without a valid bearer token, 400 for a
  malformed id or body, 403 for another issuer's ids, 404 for unknown ids (and for objects
  of unknown classes), 409 for duplicate inserts, 403 ``quotaExceeded`` past three
  ``TEXT_AND_NOTIFY`` messages per object per day. Errors use Google's format
  ``{"error": {"code", "message", "status", "errors": [{"message", "domain", "reason"}]}}``.
* ``GET /gp/m/issuer/keys``: :attr:`GoogleWalletTestServer.root_keys` (for callback key
  caches), counted in :attr:`GoogleWalletTestServer.key_fetches`.

Every request body is validated against the ``walletobjects`` v1 schema of the discovery
document shipped with google-api-python-client (:class:`WalletSchema`): ``$ref``s resolved,
types checked (int64/uint64 as string or integer, per Google's JSON mapping), enums, arrays
and nested objects, unknown fields rejected, and the fields Google documents as required
enforced. A PATCH body is checked without required fields, merged like Google merges (objects
recursively, lists replaced, ``null`` deletes), and the result is checked in full.

Resources are kept in :attr:`~GoogleWalletTestServer.classes` and
:attr:`~GoogleWalletTestServer.objects`; every request is in
:attr:`~GoogleWalletTestServer.requests` with its arrival time and the order in which the
server acted on it (``applied``). Requests can take ``latency`` seconds, and one can be kept
waiting with :meth:`~GoogleWalletTestServer.hold` (a slow Google). Failures are scripted with
:meth:`~GoogleWalletTestServer.fail`::

    with GoogleWalletTestServer(service_account_file, issuer_id="3388000000012345678") as gw:
        gw.fail("addMessage", object_id, 403, "quotaExceeded", times=1)
        ...
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import google.auth.exceptions
import google.auth.jwt
import googleapiclient
from cryptography.hazmat.primitives import serialization

DISCOVERY_DOCUMENT = (Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
                      / "walletobjects.v1.json")
WALLET_SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always addresses its assertion to Google's token endpoint (whatever the key
# file's token_uri), and Google accepts that; this server also accepts its own URL.
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
API_PREFIX = "/walletobjects/v1/"
NOTIFY_LIMIT_PER_DAY = 3

# Required fields the discovery document states in prose rather than with "Required.".
EXTRA_REQUIRED: Mapping[str, frozenset[str]] = {
    "LoyaltyClass": frozenset({"id", "issuerName", "reviewStatus", "programName", "programLogo"}),
    "LoyaltyObject": frozenset({"id", "classId", "state"}),
    "LoyaltyPoints": frozenset({"balance"}),  # "a required field of loyaltyPoints"
    "AddMessageRequest": frozenset({"message"}),
}
# "Exactly one of" groups the discovery document describes in prose.
EXACTLY_ONE: Mapping[str, tuple[str, ...]] = {
    "Image": ("sourceUri", "privateImageId"),
    "LoyaltyPointsBalance": ("string", "int", "double", "money"),
}
_RESOURCE_ID = re.compile(r"([0-9]{1,30})\.([A-Za-z0-9._-]{1,200})")
_INTEGER_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_STATUS_WORDS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
}
# Issuers may only set these review states; Google sets the others.
_SETTABLE_REVIEW = {"DRAFT": "DRAFT", "draft": "DRAFT", "UNDER_REVIEW": "UNDER_REVIEW",
                    "underReview": "UNDER_REVIEW"}


@functools.cache
def _discovery_document() -> Mapping[str, Any]:
    return json.loads(DISCOVERY_DOCUMENT.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@functools.cache
def _public_key_pem(private_key_pem: str) -> bytes:
    key = serialization.load_pem_private_key(private_key_pem.encode(), None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


class WalletSchema:
    """The ``walletobjects`` v1 request schemas, from the discovery document."""

    def __init__(self, document: Mapping[str, Any] | None = None) -> None:
        if document is None:
            document = _discovery_document()
        self.schemas: Mapping[str, Any] = document["schemas"]
        self.required: dict[str, frozenset[str]] = {}
        for name, schema in self.schemas.items():
            marked = {prop for prop, spec in schema.get("properties", {}).items()
                      if spec.get("description", "").lstrip().startswith("Required.")}
            self.required[name] = frozenset(marked | EXTRA_REQUIRED.get(name, frozenset()))

    def errors(self, schema_name: str, value: Any, *, partial: bool = False) -> list[str]:
        """Everything wrong with ``value`` as a ``schema_name``; ``partial`` (a PATCH body)
        skips required fields and allows ``null`` (delete)."""
        found: list[str] = []
        self._check({"$ref": schema_name}, value, "", partial, found)
        return found

    def _check(self, spec: Mapping[str, Any], value: Any, path: str, partial: bool,
               found: list[str]) -> None:
        where = path or "body"
        if "$ref" in spec:
            self._check_object(spec["$ref"], value, path, partial, found)
            return
        kind = spec.get("type")
        if kind == "object":
            if not isinstance(value, dict):
                found.append(f"{where}: expected an object")
            elif "additionalProperties" in spec:
                for key, item in value.items():
                    self._check(spec["additionalProperties"], item, f"{path}.{key}", partial,
                                found)
            return
        if kind == "array":
            if not isinstance(value, list):
                found.append(f"{where}: expected an array")
                return
            for i, item in enumerate(value):
                if item is None:
                    found.append(f"{where}[{i}]: null in an array")
                else:
                    self._check(spec.get("items", {}), item, f"{path}[{i}]", partial, found)
            return
        if kind == "string":
            self._check_string(spec, value, where, found)
        elif kind == "integer":
            self._check_integer(spec.get("format", "int32"), value, where, found)
        elif kind == "number":
            ok = (not isinstance(value, bool) and isinstance(value, int | float)) or (
                isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"))
            if not ok:
                found.append(f"{where}: expected a number")
        elif kind == "boolean":
            if not isinstance(value, bool):
                found.append(f"{where}: expected true or false")
        elif kind not in (None, "any"):
            found.append(f"{where}: unsupported schema type {kind}")

    def _check_string(self, spec: Mapping[str, Any], value: Any, where: str,
                      found: list[str]) -> None:
        fmt = spec.get("format")
        if fmt in _INTEGER_RANGES:
            self._check_integer(fmt, value, where, found)
            return
        if not isinstance(value, str):
            found.append(f"{where}: expected a string")
            return
        if fmt == "byte":
            try:
                base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
            except ValueError:
                found.append(f"{where}: expected base64")
        if "enum" in spec and value not in spec["enum"]:
            found.append(f"{where}: {value!r} is not one of {spec['enum']}")

    @staticmethod
    def _check_integer(fmt: str, value: Any, where: str, found: list[str]) -> None:
        # Google's JSON mapping: 64-bit integers are strings; parsers accept numbers as well.
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            found.append(f"{where}: expected an integer ({fmt})")
            return
        low, high = _INTEGER_RANGES.get(fmt, _INTEGER_RANGES["int32"])
        if not low <= number <= high:
            found.append(f"{where}: {number} is out of range for {fmt}")

    def _check_object(self, name: str, value: Any, path: str, partial: bool,
                      found: list[str]) -> None:
        where = path or "body"
        schema = self.schemas.get(name)
        if schema is None:
            found.append(f"{where}: unknown schema {name}")
            return
        if not isinstance(value, dict):
            found.append(f"{where}: expected a {name} object")
            return
        properties = schema.get("properties", {})
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if key not in properties:
                found.append(f"{child}: unknown field in {name}")
            elif item is None:
                if not partial:
                    found.append(f"{child}: null is only allowed in a PATCH")
            else:
                self._check(properties[key], item, child, partial, found)
        if partial:
            return
        for key in sorted(self.required.get(name, ())):
            if value.get(key) is None:
                found.append(f"{path + '.' if path else ''}{key}: required in {name}")
        group = EXACTLY_ONE.get(name)
        if group and sum(value.get(k) is not None for k in group) != 1:
            found.append(f"{where}: exactly one of {', '.join(group)} must be set")


def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` updated with ``patch`` as Google merges a PATCH: objects recursively,
    everything else (lists included) replaced, ``null`` deletes the field."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, and how it answered."""

    time: float  # time.monotonic() when the request line and headers had arrived
    method: str  # HTTP method
    path: str
    operation: str  # "token", "keys", "insert", "get", "patch", "update", "addMessage", ...
    resource_id: str | None
    body: Any
    status: int
    authorized: bool
    # 1, 2, ...: the order in which the server acted on wallet API requests (0: refused first)
    applied: int = 0


@dataclass
class _Failure:
    operation: str
    resource_id: str | None
    status: int
    reason: str
    remaining: int | None


@dataclass
class Hold:
    """A request the server keeps waiting (see :meth:`GoogleWalletTestServer.hold`)."""

    operation: str
    resource_id: str | None
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    taken: bool = False

    def release(self) -> None:
        """Let the held request go on (it is then handled like any other)."""
        self.released.set()


@dataclass
class _Outcome:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class WalletApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def google_error(status: int, reason: str, message: str) -> dict[str, Any]:
    """An error body in Google's format."""
    return {"error": {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": "walletobjects", "reason": reason}],
        "status": _STATUS_WORDS.get(status, HTTPStatus(status).name),
    }}


class GoogleWalletTestServer:
    """The Google Wallet API and OAuth token endpoint on ``127.0.0.1:<port>``, in a thread.

    ``service_account_file`` is the JSON key the client uses; the token endpoint trusts only
    that account. Ids must belong to ``issuer_id``. ``token_lifetime`` is the ``expires_in``
    of issued tokens.
    """

    def __init__(self, service_account_file: str | Path, *, issuer_id: str,
                 port: int = 0, token_lifetime: int = 3600,
                 notify_limit: int = NOTIFY_LIMIT_PER_DAY) -> None:
        info = json.loads(Path(service_account_file).read_text(encoding="utf-8"))
        self.public_key_pem = _public_key_pem(info["private_key"])
        self.client_email: str = info["client_email"]
        self.issuer_id = issuer_id
        self.token_lifetime = token_lifetime
        self.notify_limit = notify_limit
        self.latency = 0.0  # seconds each wallet API request takes (Google takes 0.1-0.3)
        self.schema = WalletSchema()
        self.classes: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self.tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.token_requests = 0
        self.root_keys: dict[str, Any] = {"keys": []}
        self.root_keys_max_age: int | None = None
        self.key_fetches = 0
        self._notifications: dict[str, list[float]] = {}
        self._failures: list[_Failure] = []
        self._holds: list[Hold] = []
        self._applied = 0
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/walletobjects/v1"

    @property
    def keys_url(self) -> str:
        return f"{self.base_url}/gp/m/issuer/keys"

    def start(self) -> GoogleWalletTestServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"google-wallet-test-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for hold in self._holds:
                hold.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GoogleWalletTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting and inspection ---

    def fail(self, method: str, object_id: str | None, status: int, reason: str,
             times: int | None = 1) -> None:
        """Answer the next ``times`` (``None``: all) ``method`` calls (``insert``, ``get``,
        ``patch``, ``update``, ``addMessage``, or ``*``) on ``object_id`` (a class or object
        id; ``None``: any) with ``status`` and Google's error body for ``reason``."""
        with self._lock:
            self._failures.append(_Failure(method, object_id, status, reason, times))

    def clear_failures(self) -> None:
        """Forget the failures scripted with :meth:`fail` that have not been used up."""
        with self._lock:
            self._failures.clear()

    def hold(self, method: str, object_id: str | None) -> Hold:
        """Keep the next ``method`` call on ``object_id`` (``None``: any) waiting, before the
        server acts on it, until :meth:`Hold.release` (or 30 s); ``Hold.arrived`` is set when
        it arrives. Requests after it are served meanwhile, as Google would."""
        hold = Hold(method, object_id)
        with self._lock:
            self._holds.append(hold)
        return hold

    def revoke_tokens(self) -> None:
        """Forget every issued access token (the next API call gets 401)."""
        with self._lock:
            self.tokens.clear()

    def api_requests(self, operation: str | None = None) -> list[RecordedRequest]:
        """Recorded wallet API requests (not token or key fetches), optionally of one kind."""
        with self._lock:
            return [r for r in self.requests if r.operation not in ("token", "keys")
                    and (operation is None or r.operation == operation)]

    def max_in_window(self, window: float = 1.0, since: int = 0) -> int:
        """The most wallet API requests that arrived within any ``window`` seconds (from the
        ``since``-th request on)."""
        times = sorted(r.time for r in self.api_requests()[since:])
        best = 0
        start = 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    # --- HTTP plumbing ---

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                outcome, record = server._dispatch(self.command, self.path, dict(self.headers),
                                                   raw, arrived)
                # Recorded before the answer is sent: a client that has its answer finds
                # its request in ``requests``.
                with server._lock:
                    server.requests.append(record)
                data = b"" if outcome.body is None else json.dumps(outcome.body).encode()
                self.send_response(outcome.status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in outcome.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        return Handler

    def _dispatch(self, method: str, raw_path: str, headers: Mapping[str, str], raw: bytes,
                  arrived: float) -> tuple[_Outcome, RecordedRequest]:
        path = urlsplit(raw_path).path
        operation, resource_id, authorized, applied = "unknown", None, False, 0
        body: Any = None
        try:
            if path == "/token":
                operation = "token"
                outcome = self._token(method, headers, raw)
            elif path == "/gp/m/issuer/keys":
                operation = "keys"
                outcome = self._keys(method)
            elif path.startswith(API_PREFIX):
                kind, operation, resource_id = self._route(method, path[len(API_PREFIX):])
                authorized = self._authorized(headers)
                if not authorized:
                    raise WalletApiError(401, "authError", "Request had invalid authentication "
                                         "credentials. Expected OAuth 2 access token.")
                body = self._json_body(method, headers, raw)
                if operation == "insert" and isinstance(body, dict):
                    resource_id = body.get("id")
                self._wait_if_held(operation, resource_id)
                if self.latency:
                    time.sleep(self.latency)
                self._scripted_failure(operation, resource_id)
                with self._lock:  # one at a time, so ``applied`` is the order of acting
                    self._applied += 1
                    applied = self._applied
                    outcome = self._wallet(kind, operation, resource_id, body)
            else:
                outcome = _Outcome(404, google_error(404, "notFound", f"No route for {path}"))
        except WalletApiError as exc:
            extra = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'} \
                if exc.status == 401 else {}
            outcome = _Outcome(exc.status, google_error(exc.status, exc.reason, exc.message),
                               extra)
        record = RecordedRequest(time=arrived, method=method, path=path, operation=operation,
                                 resource_id=resource_id, body=body, status=outcome.status,
                                 authorized=authorized, applied=applied)
        return outcome, record

    # --- OAuth ---

    def _token(self, method: str, headers: Mapping[str, str], raw: bytes) -> _Outcome:
        with self._lock:
            self.token_requests += 1
        if method != "POST":
            return _Outcome(405, {"error": "invalid_request"})
        form = parse_qs(raw.decode("utf-8", "replace"))
        if form.get("grant_type") != [JWT_BEARER] or len(form.get("assertion", [])) != 1:
            return _Outcome(400, {"error": "unsupported_grant_type",
                                  "error_description": "expected a JWT-bearer assertion"})
        try:
            claims = google.auth.jwt.decode(form["assertion"][0], certs=self.public_key_pem,
                                            audience=[self.token_url, GOOGLE_TOKEN_URL])
        except (google.auth.exceptions.GoogleAuthError, ValueError) as exc:
            return _Outcome(400, {"error": "invalid_grant", "error_description": str(exc)})
        if claims.get("iss") != self.client_email:
            return _Outcome(400, {"error": "invalid_grant", "error_description": "unknown iss"})
        if WALLET_SCOPE not in str(claims.get("scope", "")).split():
            return _Outcome(400, {"error": "invalid_scope", "error_description": "no scope"})
        token = "ya29.test-" + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
        return _Outcome(200, {"access_token": token, "expires_in": self.token_lifetime,
                              "token_type": "Bearer"})

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with self._lock:
            expiry = self.tokens.get(token.strip())
        return expiry is not None and expiry > time.monotonic()

    def _keys(self, method: str) -> _Outcome:
        with self._lock:
            self.key_fetches += 1
            headers = ({"Cache-Control": f"public, max-age={self.root_keys_max_age}"}
                       if self.root_keys_max_age is not None else {})
            return _Outcome(200, copy.deepcopy(self.root_keys), headers)

    # --- Wallet API ---

    @staticmethod
    def _route(method: str, rest: str) -> tuple[str, str, str | None]:
        parts = rest.split("/")
        kind = parts[0]
        if kind not in ("loyaltyClass", "loyaltyObject"):
            raise WalletApiError(404, "notFound", f"Unknown resource type {kind}")
        if len(parts) == 1 and method == "POST":
            return kind, "insert", None
        if len(parts) == 2 and parts[1]:
            operation = {"GET": "get", "PATCH": "patch", "PUT": "update"}.get(method)
            if operation:
                return kind, operation, unquote(parts[1])
        if len(parts) == 3 and parts[2] == "addMessage" and method == "POST":
            return kind, "addMessage", unquote(parts[1])
        raise WalletApiError(404, "notFound", f"No {method} method for /{rest}")

    def _wait_if_held(self, operation: str, resource_id: str | None) -> None:
        with self._lock:
            hold = next((h for h in self._holds if not h.taken and h.operation == operation
                         and h.resource_id in (None, resource_id)), None)
            if hold is None:
                return
            hold.taken = True
        hold.arrived.set()
        hold.released.wait(30)

    def _scripted_failure(self, operation: str, resource_id: str | None) -> None:
        with self._lock:
            for rule in self._failures:
                if rule.operation not in (operation, "*") or rule.remaining == 0:
                    continue
                if rule.resource_id is not None and rule.resource_id != resource_id:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                raise WalletApiError(rule.status, rule.reason,
                                     f"Scripted failure: {rule.reason}")

    @staticmethod
    def _json_body(method: str, headers: Mapping[str, str], raw: bytes) -> Any:
        if method in ("GET", "DELETE"):
            return None
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if not content_type.startswith("application/json"):
            raise WalletApiError(400, "badContent", "Content-Type must be application/json")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise WalletApiError(400, "parseError", "Invalid JSON payload received.") from None

    def _check_id(self, resource_id: Any, what: str) -> str:
        match = _RESOURCE_ID.fullmatch(resource_id) if isinstance(resource_id, str) else None
        if match is None:
            raise WalletApiError(400, "invalidResource", f"Invalid resource ID: {resource_id}")
        if match.group(1) != self.issuer_id:
            raise WalletApiError(403, "permissionDenied",
                                 f"The caller does not have permission for {what} {resource_id}")
        return resource_id

    def _validate(self, schema: str, body: Any, *, partial: bool = False) -> None:
        problems = self.schema.errors(schema, body, partial=partial)
        if problems:
            raise WalletApiError(400, "invalidArgument",
                                 "Request contains an invalid argument: " + "; ".join(problems))

    def _wallet(self, kind: str, operation: str, resource_id: str | None,
                body: Any) -> _Outcome:
        is_class = kind == "loyaltyClass"
        schema = "LoyaltyClass" if is_class else "LoyaltyObject"
        store = self.classes if is_class else self.objects
        label = "Wallet Object Class" if is_class else "Wallet Object"
        with self._lock:
            if operation == "insert":
                self._validate(schema, body)
                new_id = self._check_id(body["id"], label)
                if new_id in store:
                    raise WalletApiError(409, "duplicate", f"{label} {new_id} already exists.")
                resource = self._accept(kind, body, None)
                store[new_id] = resource
                return _Outcome(200, copy.deepcopy(resource))
            assert resource_id is not None
            self._check_id(resource_id, label)
            existing = store.get(resource_id)
            if existing is None:
                raise WalletApiError(404, "resourceNotFound", f"{label} {resource_id} not found.")
            if operation == "get":
                return _Outcome(200, copy.deepcopy(existing))
            if operation == "addMessage":
                return self._add_message(resource_id, existing, body, store)
            if operation == "update":
                self._validate(schema, body)
                merged = body
            else:
                self._validate(schema, body, partial=True)
                merged = merge_patch(existing, body)
                self._validate(schema, merged)
            if merged.get("id") != resource_id:
                raise WalletApiError(400, "invalidResource",
                                     f"The id in the body does not match {resource_id}")
            resource = self._accept(kind, merged, existing)
            store[resource_id] = resource
            return _Outcome(200, copy.deepcopy(resource))

    def _accept(self, kind: str, resource: dict[str, Any],
                existing: dict[str, Any] | None) -> dict[str, Any]:
        resource = copy.deepcopy(resource)
        # notifyPreference is ephemeral: it applies to one request and is not stored.
        resource.pop("notifyPreference", None)
        if kind == "loyaltyClass":
            if existing is not None and resource["reviewStatus"] == existing["reviewStatus"]:
                return resource  # a PATCH that leaves the review status alone
            status = _SETTABLE_REVIEW.get(resource["reviewStatus"])
            if status is None:
                raise WalletApiError(400, "invalidArgument",
                                     "reviewStatus can only be set to DRAFT or UNDER_REVIEW")
            if status == "DRAFT" and existing is not None and existing["reviewStatus"] != "DRAFT":
                raise WalletApiError(400, "invalidArgument",
                                     "reviewStatus cannot go back to DRAFT")
            # Google approves a class under review at once.
            resource["reviewStatus"] = "APPROVED" if status == "UNDER_REVIEW" else "DRAFT"
        else:
            class_id = self._check_id(resource["classId"], "Wallet Object Class")
            parent = self.classes.get(class_id)
            if parent is None:
                raise WalletApiError(404, "classNotFound",
                                     f"Wallet Object Class {class_id} not found.")
            if parent["reviewStatus"] == "DRAFT":
                raise WalletApiError(400, "invalidArgument",
                                     f"Wallet Object Class {class_id} is a draft")
            if existing is not None and existing["classId"] != class_id:
                raise WalletApiError(400, "invalidArgument", "classId cannot change")
        return resource

    def _add_message(self, resource_id: str, existing: dict[str, Any], body: Any,
                     store: dict[str, dict[str, Any]]) -> _Outcome:
        self._validate("AddMessageRequest", body)
        message = body["message"]
        if message.get("messageType") == "TEXT_AND_NOTIFY":
            now = time.time()
            sent = [t for t in self._notifications.get(resource_id, []) if t > now - 86400]
            if len(sent) >= self.notify_limit:
                raise WalletApiError(403, "quotaExceeded",
                                     "Quota exceeded for TEXT_AND_NOTIFY messages.")
            self._notifications[resource_id] = [*sent, now]
        resource = copy.deepcopy(existing)
        resource["messages"] = [*resource.get("messages", []), copy.deepcopy(message)]
        store[resource_id] = resource
        return _Outcome(200, {"resource": copy.deepcopy(resource)})

    def notifications(self, resource_id: str) -> int:
        """How many TEXT_AND_NOTIFY messages the object received in the last day."""
        with self._lock:
            return len(self._notifications.get(resource_id, []))

    def iter_messages(self, resource_id: str) -> Iterator[dict[str, Any]]:
        """The messages stored on an object, oldest first."""
        with self._lock:
            messages = copy.deepcopy(self.objects.get(resource_id, {}).get("messages", []))
        yield from messages
