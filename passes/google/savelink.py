"""The "Add to Google Wallet" link: ``https://pay.google.com/gp/v/save/<signed JWT>``.

The JWT is signed RS256 with the service account's key and carries the ``kid`` of that key.
Its payload only names objects (and optionally classes) that were already created through the
REST API, by id, so the link stays short (a few hundred characters) whatever the card holds;
Google refuses links much past 1,800 characters in some browsers and apps.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict, Unpack
from urllib.parse import urlsplit

import google.auth.crypt
import google.auth.jwt

SAVE_URL_PREFIX = "https://pay.google.com/gp/v/save/"
MAX_SAVE_URL_LENGTH = 1800

_RESOURCE_ID = re.compile(r"[0-9]{1,30}\.[A-Za-z0-9._-]{1,200}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class SaveLinkError(ValueError):
    """The save link cannot be made from these arguments (the message says why)."""


def signer_from_service_account(
    info: Mapping[str, Any] | str | Path,
) -> tuple[google.auth.crypt.RSASigner, str]:
    """``(signer, client_email)`` from a service-account JSON file path or its parsed content.

    The signer carries the key's ``private_key_id``, which becomes the JWT's ``kid``.
    """
    if not isinstance(info, Mapping):
        info = json.loads(Path(info).read_text(encoding="utf-8"))
    email = info.get("client_email")
    if not isinstance(email, str) or not _EMAIL.fullmatch(email):
        raise SaveLinkError("the service-account JSON has no valid client_email")
    return google.auth.crypt.RSASigner.from_service_account_info(info), email


def _origin(value: object) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise SaveLinkError(f"origin {value!r} must be like 'https://example.com'")
    return f"{parts.scheme}://{parts.netloc}"


def _ids(kind: str, values: Sequence[str]) -> list[dict[str, str]]:
    if isinstance(values, str):
        raise SaveLinkError(f"{kind} must be a sequence of ids, not one string")
    out = []
    for value in values:
        if not isinstance(value, str) or not _RESOURCE_ID.fullmatch(value):
            raise SaveLinkError(f"{kind}: {value!r} is not a '<issuer id>.<suffix>' id")
        out.append({"id": value})
    return out


class SaveClaims(TypedDict):
    """The keyword arguments of :func:`save_jwt`, which :func:`save_url` passes on."""

    service_account_email: str
    object_ids: Sequence[str]
    class_ids: NotRequired[Sequence[str]]
    origins: Sequence[str]
    issued_at: NotRequired[int | None]
    expires_in: NotRequired[int | None]


def save_jwt(
    signer: google.auth.crypt.Signer,
    *,
    service_account_email: str,
    object_ids: Sequence[str],
    class_ids: Sequence[str] = (),
    origins: Sequence[str],
    issued_at: int | None = None,
    expires_in: int | None = None,
) -> str:
    """The signed ``savetowallet`` JWT naming ``object_ids`` (loyalty objects) by id.

    Claims: ``iss`` (the service-account email), ``aud`` ``google``, ``typ`` ``savetowallet``,
    ``iat``, ``origins`` (the sites that may show the button) and ``payload`` with
    ``loyaltyObjects`` (and ``loyaltyClasses`` if ``class_ids`` is given). ``exp`` is only
    added when ``expires_in`` (seconds) is given; Google's JWT reference does not define it.
    The header has ``alg`` RS256 and ``kid`` (the signer's key id, which must be set).
    """
    if not isinstance(service_account_email, str) or not _EMAIL.fullmatch(service_account_email):
        raise SaveLinkError("service_account_email must be the service account's email")
    if getattr(signer, "key_id", None) is None:
        raise SaveLinkError("the signer has no key id (the service account's private_key_id)")
    objects = _ids("object_ids", object_ids)
    if not objects:
        raise SaveLinkError("object_ids must name at least one object")
    if isinstance(origins, str):
        raise SaveLinkError("origins must be a sequence of origins, not one string")
    payload: dict[str, Any] = {"loyaltyObjects": objects}
    classes = _ids("class_ids", class_ids)
    if classes:
        payload["loyaltyClasses"] = classes
    iat = int(time.time()) if issued_at is None else int(issued_at)
    claims: dict[str, Any] = {
        "iss": service_account_email,
        "aud": "google",
        "typ": "savetowallet",
        "iat": iat,
        "origins": [_origin(o) for o in origins],
        "payload": payload,
    }
    if expires_in is not None:
        if expires_in <= 0:
            raise SaveLinkError("expires_in must be a positive number of seconds")
        claims["exp"] = iat + int(expires_in)
    token = google.auth.jwt.encode(signer, claims)
    return token.decode("ascii") if isinstance(token, bytes) else str(token)


def save_url(signer: google.auth.crypt.Signer, **claims: Unpack[SaveClaims]) -> str:
    """``https://pay.google.com/gp/v/save/<jwt>`` for :func:`save_jwt` with these arguments.

    Raises :class:`SaveLinkError` if the link would reach :data:`MAX_SAVE_URL_LENGTH`.
    """
    url = SAVE_URL_PREFIX + save_jwt(signer, **claims)
    if len(url) >= MAX_SAVE_URL_LENGTH:
        raise SaveLinkError(f"the save link is {len(url)} characters; name fewer objects")
    return url
