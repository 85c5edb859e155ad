"""A program's own artwork: upload, replace, remove, read, and its public URLs.

Uploads are checked and normalized by :mod:`passes.artwork` and stored in ``program_images``
(one row per program and kind), so every instance of the service draws passes and serves
pages from the same bytes. A change is a design change: the design version goes up and every
card's passes are rebuilt and their devices told, as for a change of colours.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from flask import current_app
from sqlalchemy import select

from app import audit, dbutil
from app.errors import ImageTooLarge, InvalidImage, NotFound, UnsupportedMediaType
from app.extensions import db
from app.loyalty import programs
from app.loyalty.models import Program, ProgramImage
from app.timeutil import utcnow
from passes.artwork import KINDS, MEDIA_TYPES, ArtworkError, normalize

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
#: The square logo made for Google Wallet from the uploaded logo (a public path's kind).
GOOGLE_LOGO = "google-logo"
#: How many hex digits of the SHA-256 name an image in its public URL.
URL_HASH_LENGTH = 8


def max_bytes() -> int:
    """The largest upload taken (``POINTPASS_MAX_IMAGE_BYTES``)."""
    return int(current_app.config.get("MAX_IMAGE_BYTES", DEFAULT_MAX_BYTES))


def check_media_type(media_type: str | None) -> str:
    """The upload's media type if it is one taken, else ``UnsupportedMediaType`` (415)."""
    media_type = (media_type or "").split(";", 1)[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Send the image as the body with Content-Type image/png or image/jpeg, not "
            f"{media_type or 'no Content-Type'!r}.")
    return media_type


def put(program: Program, kind: str, data: bytes, media_type: str) -> ProgramImage:
    """Store ``data`` as the program's ``kind`` of artwork (replacing any) and commit; recorded
    in the audit trail (``program.image.upload``).

    Raises ``UnsupportedMediaType`` (415), ``ImageTooLarge`` (413) or ``InvalidImage`` (422,
    ``reason`` saying why) and then writes nothing.
    """
    media_type = check_media_type(media_type)
    limit = max_bytes()
    if len(data) > limit:
        raise ImageTooLarge(f"The image is {len(data):,} bytes; at most {limit:,} are taken.",
                            reason="too-many-bytes")
    if not data:
        raise InvalidImage("The body is empty: send the image as the request body.",
                           reason="not-an-image")
    try:
        artwork = normalize(data, media_type, kind)
    except ArtworkError as exc:
        raise InvalidImage(exc.message, reason=exc.reason) from None
    # One statement, so two uploads of the same kind at once cannot both insert.
    dbutil.upsert(ProgramImage, {"program_id": program.id, "kind": kind},
                  {"data": artwork.png, "sha256": artwork.sha256, "width": artwork.width,
                   "height": artwork.height, "created_at": utcnow()})
    programs.design_changed(program, {kind})
    audit.record("program.image.upload", program_id=program.id, target=f"program:{program.id}",
                 details={"kind": kind})
    db.session.commit()
    return get(program, kind)


def delete(program: Program, kind: str) -> bool:
    """Go back to the generated artwork for ``kind``; ``False`` if none was uploaded."""
    image = _stored(program.id, kind)
    if image is None:
        return False
    db.session.delete(image)
    programs.design_changed(program, {kind})
    audit.record("program.image.remove", program_id=program.id, target=f"program:{program.id}",
                 details={"kind": kind})
    db.session.commit()
    return True


def get(program: Program, kind: str) -> ProgramImage:
    """The program's uploaded ``kind`` of artwork, or ``NotFound``."""
    image = _stored(program.id, kind)
    if image is None:
        raise NotFound(f"The program has no uploaded {kind}.")
    return image


def images_of(program_id: int) -> dict[str, bytes]:
    """The program's uploaded artwork, PNG bytes by kind (only the kinds uploaded).

    Every pass build asks, so the bytes are remembered by their SHA-256 in the process: a
    build reads only the hashes (a new upload has a new hash, so nothing stale is served),
    and the same bytes object each time, whose hash the image cache's key reuses.
    """
    hashes = hashes_of(program_id)
    with _bytes_lock:
        missing = [sha for sha in hashes.values() if sha not in _bytes_by_hash]
    if missing:
        rows = db.session.execute(select(ProgramImage.sha256, ProgramImage.data).where(
            ProgramImage.program_id == program_id, ProgramImage.sha256.in_(missing)))
        with _bytes_lock:
            for sha, data in rows:
                _bytes_by_hash[sha] = data
                while len(_bytes_by_hash) > _BYTES_CACHED:
                    _bytes_by_hash.popitem(last=False)
    with _bytes_lock:
        found = {kind: _bytes_by_hash.get(sha) for kind, sha in hashes.items()}
        for sha in hashes.values():
            if sha in _bytes_by_hash:
                _bytes_by_hash.move_to_end(sha)
    # A row replaced between the two reads is left out (the next build has it).
    return {kind: data for kind, data in found.items() if data is not None}


_BYTES_CACHED = 48  # images: a few MB at most
_bytes_by_hash: OrderedDict[str, bytes] = OrderedDict()
_bytes_lock = threading.Lock()


def hashes_of(program_id: int) -> dict[str, str]:
    """The SHA-256 of each uploaded kind of the program's artwork (no image bytes read)."""
    rows = db.session.execute(
        select(ProgramImage.kind, ProgramImage.sha256).where(
            ProgramImage.program_id == program_id))
    return {kind: sha256 for kind, sha256 in rows}


def public_path(program_id: int, kind: str, sha256: str) -> str:
    """The image's content-addressed path: a new image gets a new path, so it may be cached
    for ever."""
    return f"/images/programs/{program_id}/{kind}-{sha256[:URL_HASH_LENGTH]}.png"


def public_url(program: Program, kind: str) -> str | None:
    """The absolute public URL of the program's uploaded ``kind``, or ``None``."""
    sha256 = hashes_of(program.id).get(kind)
    if sha256 is None:
        return None
    return current_app.config["BASE_URL"] + public_path(program.id, kind, sha256)


def google_logo_url(program: Program) -> str | None:
    """The absolute URL of the square logo Google Wallet shows (made from the uploaded
    logo), or ``None`` without one."""
    sha256 = hashes_of(program.id).get("logo")
    if sha256 is None:
        return None
    return current_app.config["BASE_URL"] + public_path(program.id, GOOGLE_LOGO, sha256)


def by_public_name(program_id: int, kind: str, short_hash: str) -> ProgramImage:
    """The image a public path names, if it is still the program's current one."""
    image = _stored(program_id, kind) if kind in KINDS else None
    if image is None or image.sha256[:URL_HASH_LENGTH] != short_hash.lower():
        raise NotFound("No such image.")
    return image


def _stored(program_id: int, kind: str) -> ProgramImage | None:
    return db.session.scalar(select(ProgramImage).where(
        ProgramImage.program_id == program_id, ProgramImage.kind == kind))
