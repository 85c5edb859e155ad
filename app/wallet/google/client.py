"""A Google Wallet REST client for loyalty classes and objects.

:class:`GoogleWalletClient` authenticates as a service account (scope
``wallet_object.issuer``; the token exchange goes to the key file's ``token_uri``), and:

* converges instead of failing on the races Google reports: an insert of something that
  exists becomes a patch, a patch of something missing becomes an insert;
* retries 429, 5xx, 403 ``rateLimitExceeded`` and network errors with jittered exponential
  backoff, and never retries any other 4xx (:class:`GoogleWalletError` carries Google's
  status and reason);
* waits for its :class:`RateLimiter` before every API request, so all workers of an issuer
  together stay under Google's 20 requests per second (:class:`RedisRateLimiter`), or one
  process does (:class:`LocalRateLimiter`);
* counts outcomes (:meth:`GoogleWalletClient.stats`).

It never logs request bodies, the private key or bearer tokens. The threads of one process
may share a client (its limiter and counters are thread-safe).
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import google.auth.exceptions
import google.auth.transport.requests
import redis
import requests
from google.oauth2 import service_account

logger = logging.getLogger("pointpass.google.client")

WALLET_SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
DEFAULT_API_URL = "https://walletobjects.googleapis.com/walletobjects/v1"
GOOGLE_RATE_LIMIT = 20  # requests per second per issuer, across all workers

RETRYABLE_403_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_random = random.SystemRandom()


# --- rate limiting ------------------------------------------------------------------------


class RateLimiter(Protocol):
    """Something to wait on before each request."""

    def acquire(self) -> None:
        """Block until one more request may be sent now."""


class LocalRateLimiter:
    """At most ``rate`` requests in any ``period`` (+ ``guard``) seconds within this process.

    ``clock`` and ``sleep`` default to :func:`time.monotonic` and :func:`time.sleep` (tests
    pass a fake clock whose sleep advances it)."""

    def __init__(self, rate: int = GOOGLE_RATE_LIMIT, period: float = 1.0,
                 guard: float = 0.05, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate < 1 or period <= 0 or guard < 0:
            raise ValueError("rate must be >= 1, period > 0 and guard >= 0")
        self.rate = rate
        self.window = period + guard
        self._sent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        """Block until fewer than ``rate`` requests were granted in the last window."""
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) < self.rate:
                    self._sent.append(now)
                    return
                wait = self._sent[0] + self.window - now
            self._sleep(max(wait, 0.001))


# A sliding log in a sorted set, scored by the Redis server's clock (one clock for every
# worker). Atomic: the check and the grant happen in one script. Returns {granted, wait µs}.
_SLIDING_WINDOW_LUA = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local member = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1000)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""


class RedisRateLimiter:
    """At most ``rate`` requests in any ``period`` (+ ``guard``) seconds across all processes
    sharing ``key`` on one Redis.

    ``guard`` widens the window a little so that network jitter between here and Google cannot
    squeeze ``rate + 1`` requests into one of Google's seconds.
    """

    def __init__(self, redis_client: redis.Redis, key: str, rate: int = GOOGLE_RATE_LIMIT,
                 period: float = 1.0, guard: float = 0.05,
                 max_wait: float | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate < 1 or period <= 0 or guard < 0:
            raise ValueError("rate must be >= 1, period > 0 and guard >= 0")
        self.redis = redis_client
        self.key = key
        self.rate = rate
        self.window_us = int((period + guard) * 1_000_000)
        self.max_wait = max_wait
        self._script = redis_client.register_script(_SLIDING_WINDOW_LUA)
        self._prefix = f"{os.getpid()}:{uuid.uuid4().hex}:"
        self._counter = itertools.count()
        self._clock = clock  # for max_wait only: the window runs on the Redis server's clock
        self._sleep = sleep

    def acquire(self) -> None:
        """Block until the shared window has room; raise ``TimeoutError`` after ``max_wait``."""
        deadline = None if self.max_wait is None else self._clock() + self.max_wait
        while True:
            member = f"{self._prefix}{next(self._counter)}"
            granted, wait_us = self._script(keys=[self.key],
                                            args=[self.rate, self.window_us, member])
            if int(granted) == 1:
                return
            wait = max(int(wait_us), 1000) / 1_000_000
            if deadline is not None and self._clock() + wait > deadline:
                raise TimeoutError(f"rate limiter {self.key!r} stayed full")
            self._sleep(wait)


# --- errors and results -------------------------------------------------------------------


class GoogleWalletError(Exception):
    """Google answered with an error (or could not be reached) and retrying will not help.

    ``status`` is the HTTP status (0 when no answer came), ``reason`` Google's first
    ``errors[].reason`` (or its ``status`` word), ``message`` Google's message.
    """

    def __init__(self, status: int, reason: str | None, message: str, *, method: str = "",
                 path: str = "") -> None:
        super().__init__(f"{method} {path}: {status} {reason or ''} {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path


def _error_details(response: requests.Response) -> tuple[str | None, str]:
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return None, response.text[:200]
    if not isinstance(error, dict):
        return None, str(error)[:200]
    reason = None
    errors = error.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        reason = errors[0].get("reason")
    return reason or error.get("status"), str(error.get("message", ""))[:500]


# --- the client ---------------------------------------------------------------------------


class GoogleWalletClient:
    """Loyalty classes and objects on Google Wallet (``walletobjects`` v1)."""

    def __init__(
        self,
        api_url: str,
        service_account_file: str | Path,
        rate_limiter: RateLimiter,
        retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        timeout: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.rate_limiter = rate_limiter
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self._sleep = sleep
        self._credentials = service_account.Credentials.from_service_account_file(
            str(service_account_file), scopes=[WALLET_SCOPE]
        )
        # 401s are handled in _request so that the repeated request also waits for the limiter.
        self._session = google.auth.transport.requests.AuthorizedSession(
            self._credentials, refresh_status_codes=()
        )
        self._stats: collections.Counter[str] = collections.Counter()
        self._stats_lock = threading.Lock()

    # --- bookkeeping ---

    def _count(self, outcome: str) -> None:
        with self._stats_lock:
            self._stats[outcome] += 1

    def stats(self) -> dict[str, int]:
        """Counts so far: ``requests``, ``ok``, ``retried``, ``failed``, ``inserted``,
        ``patched``, ``conflict_patched``, ``missing_inserted``, ``unchanged``,
        ``messages``, ``notify_fallback``, ``token_refreshed``."""
        with self._stats_lock:
            return dict(self._stats)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    # --- transport ---

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2**attempt))
        delay = _random.uniform(delay / 2, delay)
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), self.backoff_max))
        return delay

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                 *, allow: tuple[int, ...] = ()) -> requests.Response:
        """Send one API call with limiter, retries and token refresh.

        Returns the response if it succeeded or its status is in ``allow``; raises
        :class:`GoogleWalletError` otherwise.
        """
        url = f"{self.api_url}/{path}"
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"} if data else {}
        refreshed = False
        attempt = 0
        while True:
            self.rate_limiter.acquire()
            self._count("requests")
            try:
                response = self._session.request(method, url, data=data, headers=dict(headers),
                                                  timeout=self.timeout)
            except google.auth.exceptions.RefreshError as exc:
                # The token exchange itself was refused: a key or account problem.
                self._count("failed")
                raise GoogleWalletError(401, "tokenExchangeFailed", str(exc)[:300],
                                        method=method, path=path) from exc
            except (requests.RequestException, google.auth.exceptions.TransportError) as exc:
                if attempt >= self.retries:
                    self._count("failed")
                    raise GoogleWalletError(0, "networkError", type(exc).__name__,
                                            method=method, path=path) from exc
                logger.warning("Google Wallet %s %s: %s, retrying", method, path,
                               type(exc).__name__)
                self._count("retried")
                self._sleep(self._backoff(attempt, None))
                attempt += 1
                continue
            status = response.status_code
            if status < 400 or status in allow:
                self._count("ok")
                return response
            reason, message = _error_details(response)
            if status == 401 and not refreshed:
                # The token was revoked or expired early: get a new one, once.
                refreshed = True
                self._count("token_refreshed")
                try:
                    self._credentials.refresh(google.auth.transport.requests.Request())
                except google.auth.exceptions.GoogleAuthError as exc:
                    self._count("failed")
                    raise GoogleWalletError(401, "tokenExchangeFailed", str(exc)[:300],
                                            method=method, path=path) from exc
                continue
            retryable = status == 429 or status >= 500 or (
                status == 403 and reason in RETRYABLE_403_REASONS)
            if retryable and attempt < self.retries:
                logger.info("Google Wallet %s %s: %s %s, retrying", method, path, status, reason)
                self._count("retried")
                self._sleep(self._backoff(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            logger.warning("Google Wallet %s %s failed: %s %s", method, path, status, reason)
            self._count("failed")
            raise GoogleWalletError(status, reason, message, method=method, path=path)

    @staticmethod
    def _path(kind: str, resource_id: str, suffix: str = "") -> str:
        return f"{kind}/{quote(resource_id, safe='')}{suffix}"

    # --- classes ---

    def upsert_class(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the loyalty class, or patch it with ``body`` if it exists; return it."""
        response = self._request("POST", "loyaltyClass", body, allow=(409,))
        if response.status_code != 409:
            self._count("inserted")
            return dict(response.json())
        self._count("conflict_patched")
        patched = self._request("PATCH", self._path("loyaltyClass", body["id"]), body)
        return dict(patched.json())

    def patch_class(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Patch the loyalty class Google is known to have with ``body`` (one request), or
        create it if Google says it has none; return it."""
        response = self._request("PATCH", self._path("loyaltyClass", body["id"]), body,
                                 allow=(404,))
        if response.status_code != 404:
            return dict(response.json())
        self._count("missing_inserted")
        return dict(self._request("POST", "loyaltyClass", body).json())

    def get_class(self, class_id: str) -> dict[str, Any] | None:
        """The loyalty class, or ``None`` if Google does not know it."""
        response = self._request("GET", self._path("loyaltyClass", class_id), allow=(404,))
        return None if response.status_code == 404 else dict(response.json())

    # --- objects ---

    def get_object(self, object_id: str) -> dict[str, Any] | None:
        """The loyalty object, or ``None`` if Google does not know it."""
        response = self._request("GET", self._path("loyaltyObject", object_id), allow=(404,))
        return None if response.status_code == 404 else dict(response.json())

    def insert_object(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the loyalty object; if it exists, bring it up to ``body``; return it.

        On 409 the existing object is read first and only the top-level fields that differ
        are patched (nothing is sent if none differ), so repeating an insert is cheap and
        triggers no notification of its own.
        """
        response = self._request("POST", "loyaltyObject", body, allow=(409,))
        if response.status_code != 409:
            self._count("inserted")
            return dict(response.json())
        existing = self.get_object(body["id"])
        if existing is None:  # deleted between the two calls
            response = self._request("POST", "loyaltyObject", body)
            self._count("inserted")
            return dict(response.json())
        changes = {k: v for k, v in body.items()
                   if k != "notifyPreference" and existing.get(k) != v}
        if not changes:
            self._count("unchanged")
            return existing
        if "notifyPreference" in body:
            changes["notifyPreference"] = body["notifyPreference"]
        self._count("conflict_patched")
        patched = self._request("PATCH", self._path("loyaltyObject", body["id"]), changes)
        return dict(patched.json())

    def patch_object(
        self,
        object_id: str,
        body: Mapping[str, Any],
        full_body: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Patch the loyalty object with ``body``; return it.

        If Google does not know the object (404) and ``full_body`` is given (the body, or a
        function building it), the full object is inserted instead; otherwise the 404 is
        raised as :class:`GoogleWalletError`.
        """
        response = self._request("PATCH", self._path("loyaltyObject", object_id), body,
                                 allow=(404,) if full_body is not None else ())
        if response.status_code != 404:
            self._count("patched")
            return dict(response.json())
        assert full_body is not None
        full = full_body() if callable(full_body) else full_body
        if full.get("id") != object_id:
            raise ValueError("full_body describes another object")
        self._count("missing_inserted")
        return self.insert_object(full)

    def add_message(self, object_id: str, message: Mapping[str, Any],
                    notify: bool, *, kind: str = "loyaltyObject") -> dict[str, Any]:
        """Add ``message`` (header, body, ...) to the object (or, with ``kind``
        ``"loyaltyClass"``, to the class: every holder of its passes sees it); return the
        updated resource.

        With ``notify`` the message type is ``TEXT_AND_NOTIFY`` (a push notification); when
        Google refuses that with 403 ``quotaExceeded`` (3 notifications per pass per 24 h) the
        message is added as plain ``TEXT`` instead.
        """
        if kind not in ("loyaltyObject", "loyaltyClass"):
            raise ValueError(f"no messages on {kind!r}")
        message_type = "TEXT_AND_NOTIFY" if notify else "TEXT"
        path = self._path(kind, object_id, "/addMessage")
        try:
            response = self._request("POST", path,
                                     {"message": {**message, "messageType": message_type}})
        except GoogleWalletError as exc:
            if not (notify and exc.status == 403 and exc.reason == "quotaExceeded"):
                raise
            self._count("notify_fallback")
            response = self._request("POST", path, {"message": {**message, "messageType": "TEXT"}})
        self._count("messages")
        result = response.json()
        resource = result.get("resource") if isinstance(result, dict) else None
        return dict(resource) if isinstance(resource, dict) else dict(result)

    def sync_object(self, full_body: Mapping[str, Any],
                    patch_body: Mapping[str, Any]) -> dict[str, Any]:
        """Bring the object up to date: patch with ``patch_body``, insert ``full_body`` if
        Google does not have it yet. Return the object."""
        return self.patch_object(full_body["id"], patch_body, full_body=full_body)
