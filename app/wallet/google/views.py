"""Google Wallet's public endpoints: program logos and save/delete callbacks."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from app.errors import NotFound
from app.loyalty import artwork, branding, programs
from app.problems import problem
from app.wallet.google import sync as google_sync
from app.wallet.google.setup import google_wallet
from passes.google.callbacks import CallbackError
from passes.google.images import program_logo_png

bp = Blueprint("google_wallet", __name__, url_prefix="/wallet/google")
log = logging.getLogger("pointpass.google.callbacks")


@bp.get("/logo/<slug>.png")
def logo(slug: str) -> Response:
    """The program's logo at Google's size, for its loyalty class."""
    program = programs.get_by_slug(slug)
    response = Response(program_logo_png(
        branding.pass_design(program, artwork.images_of(program.id))), mimetype="image/png")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.post("/callback")
def callback() -> Response:
    """Google tells us a card was saved to or deleted from a wallet (signed ECv2SigningOnly)."""
    wallet = google_wallet()
    if wallet is None:
        raise NotFound("Google Wallet is not configured.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return problem(400, code="malformed-json", detail="The body must be a JSON object.")
    try:
        event = wallet.callback_keys.verify(body, recipient_id=wallet.issuer_id,
                                            sender_id=wallet.callback_sender_id)
    except CallbackError as exc:
        log.warning("refused a Google callback: %s", exc)
        return problem(400, code="bad-callback", detail=str(exc))

    google_sync.record_callback(wallet, event)
    return Response(status=200)
