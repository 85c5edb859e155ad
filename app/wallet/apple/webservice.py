"""Apple's PassKit web service: the endpoints Wallet calls under the pass's webServiceURL.

Paths, methods, headers and status codes follow Apple's web service reference exactly; each
detail below silently stops updates on real phones when it is wrong:

- the serial-number list carries no ``Authorization`` header, so it is never answered 401;
- ``lastUpdated`` is a JSON string, and the list holds *every* serial changed since the tag;
- registering again answers 200 and stores the new push token; unregistering answers 200;
- Wallet also sends ``HEAD`` for the pass; ``Last-Modified`` is a real HTTP date that
  increases with every version.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, json, request
from sqlalchemy import select

from app.auth.security import tokens_match
from app.errors import CardErased, DomainError, NotFound, Unauthorized
from app.extensions import db
from app.loyalty.models import Card
from app.problems import problem
from app.ratelimit import by_address, limit
from app.wallet.apple import pass_files, registrations
from app.wallet.apple.setup import apple_wallet
from passes.apple import PKPASS_MIME_TYPE

bp = Blueprint("passkit", __name__, url_prefix="/passkit/v1")
log = logging.getLogger("pointpass.apple.webservice")
device_log = logging.getLogger("pointpass.apple.device_log")

_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_PUSH_TOKEN = re.compile(r"[0-9A-Fa-f]{16,200}")
# What one request may add to the log: Wallet reports a few short lines at a time, and the
# endpoint needs no authentication, so anything more is someone filling the disk.
MAX_LOG_MESSAGES = 20
MAX_LOG_MESSAGE_CHARS = 1000


def loggable(message: str) -> str:
    """At most ``MAX_LOG_MESSAGE_CHARS`` of ``message`` (a marker says how much was cut).
    Control, separator and bidi characters are escaped for every log line (app.logs)."""
    cut = len(message) - MAX_LOG_MESSAGE_CHARS
    text = message[:MAX_LOG_MESSAGE_CHARS]
    return f"{text}... [{cut} more characters]" if cut > 0 else text


def _pass_type(pass_type_id: str) -> None:
    wallet = apple_wallet()
    if wallet is None or pass_type_id != wallet.pass_type_id:
        raise NotFound("This server issues no passes of that type.", code="unknown-pass-type")


def _authorized_card(serial_number: str) -> Card:
    card = db.session.scalar(select(Card).where(Card.serial_number == serial_number))
    if card is None:
        raise NotFound("No pass with that serial.", code="unknown-pass")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme != "ApplePass" or not tokens_match(token.strip(), card.authentication_token):
        raise Unauthorized("Authorization must be 'ApplePass <token>'.",
                           headers={"WWW-Authenticate": "ApplePass"})
    return card


def _not_erased(card: Card) -> None:
    """410 Gone for the card of an erased member (after its token was checked, so a guess
    learns nothing): the pass is not served, and no device may register for it again."""
    if card.erased_at is not None:
        raise CardErased("This pass was removed at its holder's request.")


def _device_id(device_id: str) -> str:
    if not _DEVICE_ID.fullmatch(device_id):
        raise DomainError("Malformed device identifier.", code="bad-device")
    return device_id


def _json_object() -> dict[str, Any]:
    # Invalid JSON is a 400 `malformed-json` that says why (app.jsonbody).
    body = request.get_json() if request.is_json else None
    if not isinstance(body, dict):
        raise DomainError("The body must be a JSON object.", code="malformed-json")
    return body


@bp.post("/devices/<device_id>/registrations/<pass_type_id>/<serial_number>")
def register(device_id: str, pass_type_id: str, serial_number: str) -> Response:
    """Register a device to receive pushes for a pass: 201 new, 200 already registered."""
    _device_id(device_id)
    _pass_type(pass_type_id)
    card = _authorized_card(serial_number)
    _not_erased(card)
    push_token = _json_object().get("pushToken")
    if not isinstance(push_token, str) or not _PUSH_TOKEN.fullmatch(push_token):
        return problem(400, code="bad-push-token",
                       detail="pushToken must be the device's hexadecimal push token.")
    created = registrations.register(device_id, card, push_token)
    return Response(status=201 if created else 200)


@bp.delete("/devices/<device_id>/registrations/<pass_type_id>/<serial_number>")
def unregister(device_id: str, pass_type_id: str, serial_number: str) -> Response:
    """Stop pushes for a pass on a device: 200, whether or not it was registered."""
    _device_id(device_id)
    _pass_type(pass_type_id)
    card = _authorized_card(serial_number)
    registrations.unregister(device_id, card)
    return Response(status=200)


@bp.get("/devices/<device_id>/registrations/<pass_type_id>")
def updated_serials(device_id: str, pass_type_id: str) -> Response:
    """Serials of the device's passes changed since ``passesUpdatedSince``: 200, or 204.

    No Authorization header comes with this request, so none is checked.
    """
    _device_id(device_id)
    _pass_type(pass_type_id)
    since_text = request.args.get("passesUpdatedSince")
    since = None
    if since_text:
        if not since_text.isdigit() or len(since_text) > 20:
            return problem(400, code="bad-tag",
                           detail="passesUpdatedSince must be a tag this server gave.")
        since = int(since_text)
    serials, tag = registrations.updated_serials(device_id, since)
    if not serials:
        return Response(status=204)
    return _json({"serialNumbers": serials, "lastUpdated": str(tag)})


@bp.get("/passes/<pass_type_id>/<serial_number>")
def latest_pass(pass_type_id: str, serial_number: str) -> Response:
    """The latest version of a pass: 200 with Last-Modified, 304 if unchanged (also HEAD)."""
    _pass_type(pass_type_id)
    card = _authorized_card(serial_number)
    _not_erased(card)
    wallet = apple_wallet()
    assert wallet is not None
    last_modified = datetime.fromtimestamp(card.last_modified, UTC)
    since = request.if_modified_since
    if since is not None and last_modified <= since:
        response = Response(status=304)
        response.last_modified = last_modified
        return response
    signed = pass_files.pass_for(card, wallet)
    response = Response(signed.data, mimetype=PKPASS_MIME_TYPE)
    response.last_modified = datetime.fromtimestamp(signed.last_modified, UTC)
    response.headers["Cache-Control"] = "no-cache, private"
    return response


@bp.post("/log")
@limit("DEVICE_LOG_RATE_LIMIT", key=by_address)
def device_logs() -> Response:
    """Messages Wallet reports about our passes (problems it met), written to our log: the
    first ``MAX_LOG_MESSAGES`` of a request, each made inert by :func:`loggable`. Anyone can
    call it, so it is rate-limited per address (429 past the limit; Wallet ignores answers)."""
    logs = _json_object().get("logs")
    if not isinstance(logs, list) or not all(isinstance(m, str) for m in logs):
        return problem(400, code="bad-logs", detail="logs must be a list of strings.")
    for message in logs[:MAX_LOG_MESSAGES]:
        device_log.warning("Wallet: %s", loggable(message))
    if len(logs) > MAX_LOG_MESSAGES:
        device_log.warning("Wallet: ... %d more messages not logged",
                           len(logs) - MAX_LOG_MESSAGES)
    return Response(status=200)


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=200, mimetype="application/json")
