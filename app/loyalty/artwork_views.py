"""Public, content-addressed URLs of a program's artwork, for Google Wallet and the pages.

A path names the image's hash (``/images/programs/7/logo-1a2b3c4d.png``): a new upload gets a
new path, so an answer may be cached for a year, and an old path answers 404.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response

from app.loyalty import artwork, branding, programs
from app.loyalty.models import Program
from passes.google.images import program_logo_png

bp = Blueprint("program_artwork", __name__)

CACHE_FOREVER = "public, max-age=31536000, immutable"
#: The square logo Google Wallet crops to a circle, made from the uploaded logo.
GOOGLE_LOGO = artwork.GOOGLE_LOGO


@bp.get("/images/programs/<int:program_id>/<any(logo, strip, icon, 'google-logo'):kind>"
        "-<string(length=8):short_hash>.png")
def image(program_id: int, kind: str, short_hash: str) -> Response:
    """The program's current artwork of ``kind`` (PNG), if ``short_hash`` is its hash."""
    if kind == GOOGLE_LOGO:
        artwork.by_public_name(program_id, "logo", short_hash)
        program = programs.get(program_id)
        data = program_logo_png(branding.pass_design(program, artwork.images_of(program.id)))
    else:
        data = artwork.by_public_name(program_id, kind, short_hash).data
    return Response(data, mimetype="image/png", headers={"Cache-Control": CACHE_FOREVER})


def program_image_url(program: Program, kind: str) -> str | None:
    """The path of the program's uploaded ``kind`` of artwork, or ``None``."""
    sha256 = artwork.hashes_of(program.id).get(kind)
    return None if sha256 is None else artwork.public_path(program.id, kind, sha256)


def init_app(app: Flask) -> None:
    """Serve the images."""
    app.register_blueprint(bp)
