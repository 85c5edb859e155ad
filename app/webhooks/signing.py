"""Standard Webhooks signatures: ``whsec_`` secrets and ``webhook-signature`` values.

A signature is ``v1,`` and the base64 HMAC-SHA256, keyed with the secret's bytes, of
``<webhook-id>.<webhook-timestamp>.<body>``. While a rotated secret's predecessor is still
valid, a delivery carries both signatures, separated by a space (as the specification allows),
so a receiver holding either secret accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64 random bytes


def new_secret() -> str:
    """A new endpoint secret: ``whsec_`` and 32 random bytes in base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``v1,<base64>`` signature of one message with ``secret``."""
    digest = hmac.new(_key(secret), f"{message_id}.{timestamp}.{body}".encode(),
                      hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: list[str], message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: one signature per valid secret, space-separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets_)
