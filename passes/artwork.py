"""A program's own artwork (logo, strip, icon): checked and normalized before anyone uses it.

:func:`normalize` takes what a business uploads and returns a plain PNG, or raises
:class:`ArtworkError` with a ``reason`` code and a sentence saying what is wrong. It never
decodes pixels before it has read the header's dimensions and found them within limits, so a
decompression bomb (a small file that unpacks to gigapixels) costs nothing: Pillow's own
bomb warning is an error here, and the pixel limit is lower than Pillow's.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

KINDS = ("logo", "strip", "icon")

#: The media types taken, and the Pillow format each must really be.
MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}

#: Largest number of pixels (width × height) read: 16.7 megapixels (4096 × 4096).
MAX_PIXELS = 4096 * 4096

#: Smallest artwork per kind, (width, height) in pixels: enough for the pass's @3x icon
#: (87 × 87), a logo 100 px high (Wallet shows it at most 50 pt high) and the strip at @2x.
MIN_SIZE = {"icon": (87, 87), "logo": (100, 100), "strip": (750, 246)}

#: The longest side kept: what the passes (@3x) and Google (a 660 px logo, a 1032 px hero
#: image) need, without storing a camera's 4000 px.
MAX_STORED_SIDE = 1200


class ArtworkError(ValueError):
    """Artwork refused: ``reason`` is a short code (``not-an-image``, ``wrong-format``,
    ``too-many-pixels``, ``too-small``, ``truncated``, ``blank``), ``message`` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Artwork:
    """Normalized artwork: PNG bytes, their SHA-256 (hex) and the size in pixels."""

    png: bytes
    sha256: str
    width: int
    height: int


def normalize(data: bytes, media_type: str, kind: str) -> Artwork:
    """Check ``data`` (``media_type`` as sent) as a ``kind`` of artwork and return it as an
    RGBA PNG, turned as its EXIF says, without metadata, its longest side at most
    :data:`MAX_STORED_SIDE`.

    Raises :class:`ArtworkError` for a type other than PNG or JPEG, content of another format
    than ``media_type`` says, more than :data:`MAX_PIXELS` pixels (checked from the header,
    before decoding), less than :data:`MIN_SIZE`, a truncated or corrupt file, or a fully
    transparent one.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of artwork {kind!r}")
    expected = MEDIA_TYPES.get(media_type)
    if expected is None:
        raise ArtworkError("wrong-format", "Artwork must be image/png or image/jpeg.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(MEDIA_TYPES.values()))
        except Image.DecompressionBombError as exc:
            raise ArtworkError("too-many-pixels", f"The image is a decompression bomb ({exc}).")\
                from None
        except Image.DecompressionBombWarning:
            raise _too_many_pixels() from None
        except Exception:
            raise ArtworkError("not-an-image", "The body is not a PNG or JPEG image.") from None
        with image:
            return _checked(image, expected, kind)


def _too_many_pixels(size: tuple[int, int] | None = None) -> ArtworkError:
    dimensions = f" ({size[0]} × {size[1]})" if size else ""
    return ArtworkError("too-many-pixels",
                        f"The image has too many pixels{dimensions}; at most {MAX_PIXELS:,} "
                        "(4096 × 4096) are taken.")


def _checked(image: Image.Image, expected: str, kind: str) -> Artwork:
    if image.format != expected:
        raise ArtworkError("wrong-format", f"The body is {image.format} data, but the "
                           f"Content-Type says {expected}.")
    width, height = image.size  # from the header: nothing is decoded yet
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(image.size)
    min_width, min_height = MIN_SIZE[kind]
    if width < min_width or height < min_height:
        raise ArtworkError("too-small", f"A {kind} must be at least {min_width} × {min_height} "
                           f"pixels; this image is {width} × {height}.")
    try:
        image.load()
        upright = ImageOps.exif_transpose(image).convert("RGBA")
    except Image.DecompressionBombWarning:
        raise _too_many_pixels(image.size) from None
    except Exception:
        raise ArtworkError("truncated", "The image is truncated or corrupt.") from None
    if upright.getchannel("A").getbbox() is None:
        raise ArtworkError("blank", "The image is completely transparent.")
    upright.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    upright.save(buffer, "PNG")
    png = buffer.getvalue()
    return Artwork(png, hashlib.sha256(png).hexdigest(), upright.width, upright.height)
