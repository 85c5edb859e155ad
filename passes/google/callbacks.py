"""Verification of Google Wallet save/delete callbacks (protocol ``ECv2SigningOnly``).

Google POSTs a JSON envelope to the class's ``callbackOptions.url`` when a member saves or
deletes a pass::

    {"signature": "<base64 DER ECDSA>", "protocolVersion": "ECv2SigningOnly",
     "intermediateSigningKey": {"signedKey": "<JSON string>", "signatures": ["<base64>"]},
     "signedMessage": "<JSON string>"}

:func:`verify_callback` checks it the way Tink's ``PaymentMethodTokenRecipient`` does:

1. ``signedKey`` is signed by one of Google's non-expired ``ECv2SigningOnly`` root keys, over
   the length-prefixed concatenation of sender id, protocol version and ``signedKey``;
2. the intermediate key itself (``signedKey.keyExpiration``) has not expired;
3. ``signature`` verifies with the intermediate key over sender id, recipient id (the issuer
   id), protocol version and ``signedMessage``;
4. the message (``classId``, ``objectId``, ``expTimeMillis``, ``eventType``, ``nonce``) is
   well formed, for this issuer, and not expired.

Each length prefix is the UTF-8 byte length as 4 bytes little-endian; all signatures are
ECDSA P-256 SHA-256 in DER. :class:`RootKeyCache` fetches and caches Google's root keys.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

logger = logging.getLogger("pointpass.passes.google.callbacks")

GOOGLE_ROOT_KEYS_URL = "https://pay.google.com/gp/m/issuer/keys"
SENDER_ID = "GooglePayPasses"
PROTOCOL_VERSION = "ECv2SigningOnly"
EVENT_TYPES = ("save", "del")
MAX_CALLBACK_BYTES = 64 * 1024

EventType = Literal["save", "del"]

_ECDSA = ec.ECDSA(hashes.SHA256())
_ISSUER_ID = re.compile(r"[0-9]{1,30}")
_RESOURCE_ID = re.compile(r"([0-9]{1,30})\.[A-Za-z0-9._-]{1,200}")


class CallbackError(ValueError):
    """The callback is not a genuine, current Google Wallet callback; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RootKey:
    """One of Google's root signing keys."""

    public_key: ec.EllipticCurvePublicKey
    protocol_version: str
    expires_at_ms: int


@dataclass(frozen=True)
class WalletCallback:
    """A verified save (``event_type == "save"``) or delete (``"del"``) of one pass.

    ``nonce`` is unique per event: Google may deliver the same event more than once.
    """

    class_id: str
    object_id: str
    event_type: EventType
    nonce: str
    expires_at_ms: int
    message: Mapping[str, Any]

    @property
    def expires_at(self) -> dt.datetime:
        """``expires_at_ms`` as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.expires_at_ms / 1000, tz=dt.UTC)


def _now_ms() -> int:
    return int(time.time() * 1000)


def length_value(*chunks: str) -> bytes:
    """Each chunk as its UTF-8 byte length (4 bytes little-endian) followed by the bytes."""
    out = bytearray()
    for chunk in chunks:
        data = chunk.encode("utf-8")
        out += len(data).to_bytes(4, "little")
        out += data
    return bytes(out)


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise CallbackError(f"{what} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackError(f"{what} is not valid base64") from None


def _p256_key(value: object, what: str) -> ec.EllipticCurvePublicKey:
    try:
        key = load_der_public_key(_b64(value, what))
    except ValueError:
        raise CallbackError(f"{what} is not a DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CallbackError(f"{what} is not a P-256 public key")
    return key


def _millis(value: object, what: str) -> int:
    # Google writes milliseconds as JSON strings; accept numbers too.
    if isinstance(value, bool):
        raise CallbackError(f"{what} is not a number of milliseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise CallbackError(f"{what} is not a number of milliseconds")


def _json_object(value: object, what: str) -> dict[str, Any]:
    if isinstance(value, bytes | bytearray):
        if len(value) > MAX_CALLBACK_BYTES:
            raise CallbackError(f"{what} is too large")
        value = bytes(value).decode("utf-8", errors="strict")
    if isinstance(value, str):
        if len(value) > MAX_CALLBACK_BYTES:
            raise CallbackError(f"{what} is too large")
        try:
            value = json.loads(value)
        except ValueError:
            raise CallbackError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise CallbackError(f"{what} is not a JSON object")
    return value


def parse_root_keys(keys_json: Mapping[str, Any] | str | bytes) -> tuple[RootKey, ...]:
    """Google's root keys (``{"keys": [{"keyValue", "protocolVersion", "keyExpiration"}]}``).

    Keys of other protocol versions, or without a usable value or expiry, are skipped: a
    verifier must never trust a key it cannot bound in time.
    """
    document = _json_object(keys_json, "the root keys document")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise CallbackError("the root keys document has no 'keys' list")
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("protocolVersion") != PROTOCOL_VERSION:
            continue
        try:
            keys.append(RootKey(
                public_key=_p256_key(entry.get("keyValue"), "root keyValue"),
                protocol_version=PROTOCOL_VERSION,
                expires_at_ms=_millis(entry.get("keyExpiration"), "root keyExpiration"),
            ))
        except CallbackError as exc:
            logger.warning("skipping an unusable Google root key: %s", exc.reason)
    return tuple(keys)


def _verify(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data, _ECDSA)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_callback(
    callback: Mapping[str, Any] | str | bytes,
    root_keys: Iterable[RootKey] | Mapping[str, Any] | str | bytes,
    *,
    recipient_id: str,
    sender_id: str = SENDER_ID,
    now_ms: int | None = None,
) -> WalletCallback:
    """Verify a callback body and return its event; raise :class:`CallbackError` otherwise.

    ``root_keys`` is Google's keys document (parsed or raw) or :class:`RootKey` objects.
    ``recipient_id`` is the issuer id the callback must be addressed to.
    """
    if not isinstance(recipient_id, str) or not _ISSUER_ID.fullmatch(recipient_id):
        raise CallbackError("recipient_id must be the decimal issuer id")
    now = _now_ms() if now_ms is None else now_ms
    if isinstance(root_keys, Mapping | str | bytes):
        root_keys = parse_root_keys(root_keys)
    trusted = [k for k in root_keys
               if k.protocol_version == PROTOCOL_VERSION and k.expires_at_ms > now]
    if not trusted:
        raise CallbackError("no non-expired ECv2SigningOnly root key is available")

    envelope = _json_object(callback, "the callback body")
    protocol = envelope.get("protocolVersion")
    if protocol != PROTOCOL_VERSION:
        raise CallbackError(f"unsupported protocolVersion {protocol!r}")
    intermediate = envelope.get("intermediateSigningKey")
    if not isinstance(intermediate, dict):
        raise CallbackError("intermediateSigningKey is missing")
    signed_key = intermediate.get("signedKey")
    if not isinstance(signed_key, str):
        raise CallbackError("intermediateSigningKey.signedKey is missing")
    signatures = intermediate.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise CallbackError("intermediateSigningKey.signatures is missing")

    key_data = length_value(sender_id, PROTOCOL_VERSION, signed_key)
    decoded = [_b64(s, "an intermediate key signature") for s in signatures]
    if not any(_verify(root.public_key, sig, key_data) for root in trusted for sig in decoded):
        raise CallbackError("the intermediate signing key is not signed by a trusted root key")

    key_fields = _json_object(signed_key, "signedKey")
    if _millis(key_fields.get("keyExpiration"), "signedKey.keyExpiration") <= now:
        raise CallbackError("the intermediate signing key has expired")
    intermediate_key = _p256_key(key_fields.get("keyValue"), "signedKey.keyValue")

    signed_message = envelope.get("signedMessage")
    if not isinstance(signed_message, str):
        raise CallbackError("signedMessage is missing")
    message_data = length_value(sender_id, recipient_id, PROTOCOL_VERSION, signed_message)
    if not _verify(intermediate_key, _b64(envelope.get("signature"), "signature"), message_data):
        raise CallbackError("the message signature does not verify")

    return _parse_message(signed_message, recipient_id, now)


def _parse_message(signed_message: str, recipient_id: str, now: int) -> WalletCallback:
    message = _json_object(signed_message, "signedMessage")
    ids = {}
    for name in ("classId", "objectId"):
        value = message.get(name)
        match = _RESOURCE_ID.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise CallbackError(f"signedMessage.{name} is missing or malformed")
        if match.group(1) != recipient_id:
            raise CallbackError(f"signedMessage.{name} belongs to another issuer")
        ids[name] = value
    event_type = message.get("eventType")
    if event_type not in EVENT_TYPES:
        raise CallbackError(f"signedMessage.eventType {event_type!r} is not save or del")
    nonce = message.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise CallbackError("signedMessage.nonce is missing")
    expires = _millis(message.get("expTimeMillis"), "signedMessage.expTimeMillis")
    if expires <= now:
        raise CallbackError("the message has expired")
    return WalletCallback(class_id=ids["classId"], object_id=ids["objectId"],
                          event_type=event_type, nonce=nonce, expires_at_ms=expires,
                          message=message)


class RootKeyCache:
    """Google's root signing keys, fetched with ``requests`` and cached; thread-safe.

    Keys are kept until the earliest key expiry, ``max_age`` seconds, or the response's
    ``Cache-Control: max-age``, whichever comes first. If a refresh fails while the cached
    keys have not yet expired, they stay in use (and the failure is logged).
    """

    def __init__(
        self,
        url: str = GOOGLE_ROOT_KEYS_URL,
        *,
        max_age: float = 3600.0,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        min_refetch_interval: float = 60.0,
    ) -> None:
        self.url = url
        self.max_age = max_age
        self.timeout = timeout
        self.session = session or requests.Session()
        self.clock = clock
        self.min_refetch_interval = min_refetch_interval
        self.fetches = 0
        self._lock = threading.Lock()
        self._keys: tuple[RootKey, ...] = ()
        self._fresh_until = 0.0
        self._fetched_at: float | None = None

    def keys(self, *, force: bool = False) -> tuple[RootKey, ...]:
        """The current root keys, fetched first if the cache is stale (or ``force``)."""
        with self._lock:
            now = self.clock()
            if force or now >= self._fresh_until:
                self._refresh(now)
            usable = tuple(k for k in self._keys if k.expires_at_ms > now * 1000)
            if not usable:
                raise CallbackError("no non-expired Google root key is available")
            return usable

    def _refresh(self, now: float) -> None:
        try:
            response = self.session.get(self.url, timeout=self.timeout)
            response.raise_for_status()
            keys = parse_root_keys(response.content)
        except (requests.RequestException, CallbackError) as exc:
            # Keep serving keys that are still valid; retry a little later, not on every call.
            logger.warning("fetching Google root keys from %s failed: %s", self.url, exc)
            self._fresh_until = now + min(self.min_refetch_interval, self.max_age)
            return
        finally:
            self.fetches += 1
        lifetime = self.max_age
        cache_control = response.headers.get("Cache-Control", "")
        match = re.search(r"max-age=(\d+)", cache_control)
        if match:
            lifetime = min(lifetime, float(match.group(1)))
        if keys:
            lifetime = min(lifetime, min(k.expires_at_ms for k in keys) / 1000 - now)
        self._keys = keys
        self._fetched_at = now
        self._fresh_until = now + max(lifetime, 0.0)

    def verify(
        self,
        callback: Mapping[str, Any] | str | bytes,
        *,
        recipient_id: str,
        sender_id: str = SENDER_ID,
    ) -> WalletCallback:
        """:func:`verify_callback` with the cached keys.

        If no cached root key vouches for the intermediate key, the keys are fetched again once
        (Google may have rotated them), at most every ``min_refetch_interval`` seconds.
        """
        try:
            return verify_callback(callback, self.keys(), recipient_id=recipient_id,
                                   sender_id=sender_id)
        except CallbackError as exc:
            if "not signed by a trusted root key" not in exc.reason:
                raise
            with self._lock:
                recent = (self._fetched_at is not None
                          and self.clock() - self._fetched_at < self.min_refetch_interval)
            if recent:
                raise
            return verify_callback(callback, self.keys(force=True), recipient_id=recipient_id,
                                   sender_id=sender_id)
