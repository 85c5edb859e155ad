"""Signs test callbacks the way Google Wallet does (``ECv2SigningOnly``).

A :class:`CallbackSigner` holds a P-256 root key (published through :meth:`keys_json`, like
``https://pay.google.com/gp/m/issuer/keys``) and an intermediate key it vouches for; it
signs messages into callback bodies as Google POSTs them::

    signer = CallbackSigner()
    body = signer.callback(message(ISSUER, "save"), recipient_id=ISSUER)
    verify_callback(body, signer.keys_json(), recipient_id=ISSUER)
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from passes.google.callbacks import PROTOCOL_VERSION, SENDER_ID, length_value

DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def _spki_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def message(issuer_id: str, event_type: str = "save", *, serial: str = "CARD1",
            program: str = "kopi-test", expires_ms: int | None = None,
            nonce: str | None = None) -> dict[str, Any]:
    """A callback message for object ``<issuer>.<serial>`` of class ``<issuer>.<program>``."""
    return {
        "classId": f"{issuer_id}.{program}",
        "objectId": f"{issuer_id}.{serial}",
        "expTimeMillis": str(now_ms() + 60_000 if expires_ms is None else expires_ms),
        "eventType": event_type,
        "nonce": nonce or secrets.token_hex(16),
    }


class CallbackSigner:
    """A root key and an intermediate key, signing callbacks like Google."""

    def __init__(self, *, root_expires_ms: int | None = None,
                 intermediate_expires_ms: int | None = None) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self.root_expires_ms = root_expires_ms or now_ms() + 7 * DAY_MS
        self.intermediate_expires_ms = intermediate_expires_ms or now_ms() + DAY_MS

    def keys_json(self, protocol_version: str = PROTOCOL_VERSION) -> dict[str, Any]:
        """The root keys document listing this signer's root key."""
        return {"keys": [{"keyValue": _spki_b64(self.root_key),
                          "protocolVersion": protocol_version,
                          "keyExpiration": str(self.root_expires_ms)}]}

    def callback(self, payload: dict[str, Any] | str, *, recipient_id: str,
                 sender_id: str = SENDER_ID) -> dict[str, Any]:
        """The callback body Google would POST for ``payload`` (a message dict or its JSON)."""
        signed_key = json.dumps({"keyValue": _spki_b64(self.intermediate_key),
                                 "keyExpiration": str(self.intermediate_expires_ms)})
        signed_message = payload if isinstance(payload, str) else json.dumps(payload)
        key_signature = _sign(self.root_key,
                              length_value(sender_id, PROTOCOL_VERSION, signed_key))
        signature = _sign(self.intermediate_key,
                          length_value(sender_id, recipient_id, PROTOCOL_VERSION, signed_message))
        return {
            "signature": signature,
            "intermediateSigningKey": {"signedKey": signed_key, "signatures": [key_signature]},
            "protocolVersion": PROTOCOL_VERSION,
            "signedMessage": signed_message,
        }
