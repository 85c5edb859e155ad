"""The artwork API: upload, read and remove a program's logo, strip and icon."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, fields
from apiflask.schemas import FileSchema, Schema
from flask import Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from app import openapi
from app.auth.security import ALL_ROLES, auth
from app.errors import ImageTooLarge, NotFound
from app.loyalty import artwork, programs
from app.loyalty.models import ProgramImage
from passes.artwork import KINDS, MEDIA_TYPES, MIN_SIZE

bp = APIBlueprint("program_images", __name__, url_prefix="/api/v1", tag="Loyalty")

# <kind> is any word in the URL, so every route walker can fill it in; _kind() answers 404
# for one that is not logo, strip or icon.
PATH = "/programs/<int:program_id>/images/<kind>"
_SIZES = ", ".join(f"{kind} {w} × {h}" for kind, (w, h) in MIN_SIZE.items())
openapi.PATH_WORDS["kind"] = KINDS
openapi.raw_body(
    "put", "/api/v1/programs/{program_id}/images/{kind}", sorted(MEDIA_TYPES),
    f"The image itself as the body (PNG or JPEG, as `Content-Type` says), at most "
    f"`POINTPASS_MAX_IMAGE_BYTES` bytes (default {artwork.DEFAULT_MAX_BYTES:,}) and 4096 × 4096 "
    f"pixels, at least {_SIZES} pixels.")


class ImageOut(Schema):
    kind = fields.String(metadata={"enum": list(KINDS)})
    width = fields.Integer(metadata={"description": "pixels, as stored (longest side ≤ 1200)"})
    height = fields.Integer()
    sha256 = fields.String(metadata={"description": "of the stored PNG"})
    url = fields.String(metadata={
        "description": "public, content-addressed URL of the stored PNG (cached for a year)"})


def _image_body(program_id: int, image: ProgramImage) -> dict[str, Any]:
    return {"kind": image.kind, "width": image.width, "height": image.height,
            "sha256": image.sha256,
            "url": current_app.config["BASE_URL"]
            + artwork.public_path(program_id, image.kind, image.sha256)}


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise NotFound(f"No kind of image {kind!r}.")
    return kind


@bp.put(PATH)
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.output(ImageOut)
@bp.doc(summary="Upload a program's logo, strip or icon; every card's passes follow",
        description="The body is the image (`Content-Type: image/png` or `image/jpeg`). "
        "It is checked (format as the `Content-Type` says, size in bytes and pixels, "
        "decompression bombs, truncated files, the smallest size per kind) and stored as a "
        "PNG; passes use it at @1x, @2x and @3x, Google Wallet and the join page at its "
        "public URL. 415 `unsupported-media-type` for another type, 413 `image-too-large`, "
        "422 `invalid-image` with a `reason`: `not-an-image`, `wrong-format`, "
        "`too-many-pixels`, `too-small`, `truncated`, `blank`.",
        responses=[401, 403, 404, 413, 415, 422])
def put_image(program_id: int, kind: str) -> dict[str, Any]:
    program = programs.get(program_id)
    kind = _kind(kind)
    media_type = artwork.check_media_type(request.mimetype)
    request.max_content_length = artwork.max_bytes()
    try:
        data = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise ImageTooLarge(f"The image is larger than the {artwork.max_bytes():,} bytes "
                            "taken.", reason="too-many-bytes") from None
    return _image_body(program.id, artwork.put(program, kind, data, media_type))


@bp.get(PATH)
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.output(FileSchema(type="string", format="binary"), content_type="image/png")
@bp.doc(summary="Get a program's uploaded logo, strip or icon (PNG)", responses=[401, 404])
def get_image(program_id: int, kind: str) -> Response:
    image = artwork.get(programs.get(program_id), _kind(kind))
    return Response(image.data, mimetype="image/png", headers={"ETag": f'"{image.sha256}"'})


@bp.delete(PATH)
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.output({}, status_code=204)
@bp.doc(summary="Remove an uploaded logo, strip or icon: passes go back to the generated "
        "artwork", description="Idempotent: removing an image that is not there answers 204 "
        "too.", responses=[401, 403, 404])
def delete_image(program_id: int, kind: str) -> tuple[str, int]:
    artwork.delete(programs.get(program_id), _kind(kind))
    return "", 204
