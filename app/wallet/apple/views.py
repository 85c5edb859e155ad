"""Downloading a card's Apple pass."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, request

from app.wallet.apple import pass_files
from passes.apple import PKPASS_MIME_TYPE

bp = Blueprint("apple_passes", __name__)


@bp.get("/wallet/apple/<serial>/<token>.pkpass")
def download(serial: str, token: str) -> Response:
    signed = pass_files.signed_pass(serial, token)
    response = Response(signed.data, mimetype=PKPASS_MIME_TYPE)
    response.last_modified = datetime.fromtimestamp(signed.last_modified, UTC)
    response.headers["Content-Disposition"] = f'attachment; filename="{serial}.pkpass"'
    response.headers["Cache-Control"] = "no-cache, private"
    return response.make_conditional(request)
