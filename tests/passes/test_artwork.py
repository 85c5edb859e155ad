"""Checking uploaded artwork: formats, limits, bombs and broken files are refused."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from passes.artwork import MAX_PIXELS, ArtworkError, normalize
from tests.images import bomb_png, image_bytes


def reason(data: bytes, media_type: str = "image/png", kind: str = "logo") -> str:
    with pytest.raises(ArtworkError) as caught:
        normalize(data, media_type, kind)
    return caught.value.reason


def test_png_and_jpeg_come_out_as_png_with_their_size_and_hash() -> None:
    for fmt, media_type in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
        artwork = normalize(image_bytes((400, 200), fmt), media_type, "logo")
        assert artwork.png.startswith(b"\x89PNG")
        assert (artwork.width, artwork.height) == (400, 200)
        assert len(artwork.sha256) == 64


def test_large_artwork_is_scaled_down_to_what_passes_and_google_need() -> None:
    artwork = normalize(image_bytes((3000, 1000)), "image/png", "strip")
    assert (artwork.width, artwork.height) == (1200, 400)


def test_refusals_name_their_reason() -> None:
    assert reason(b"not an image at all") == "not-an-image"
    assert reason(image_bytes((400, 200), "JPEG")) == "wrong-format"  # said PNG, is JPEG
    assert reason(image_bytes((400, 200)), "image/gif") == "wrong-format"
    assert reason(image_bytes((80, 80)), kind="icon") == "too-small"
    assert reason(image_bytes((1000, 200)), kind="strip") == "too-small"
    whole = image_bytes((400, 400))
    assert reason(whole[: len(whole) // 2]) == "truncated"
    assert reason(image_bytes((400, 400), mode="RGBA", colour=(0, 0, 0, 0))) == "blank"


def test_bombs_and_huge_images_are_refused_from_their_header() -> None:
    assert reason(bomb_png(4097, 4096)) == "too-many-pixels"  # just over our limit
    assert reason(bomb_png(20000, 20000)) == "too-many-pixels"  # over Pillow's warning
    assert reason(bomb_png(100000, 100000)) == "too-many-pixels"  # over Pillow's error
    assert MAX_PIXELS == 4096 * 4096


def test_exif_rotation_is_applied() -> None:
    image = Image.new("RGB", (400, 200), (10, 20, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    artwork = normalize(buffer.getvalue(), "image/jpeg", "logo")
    assert (artwork.width, artwork.height) == (200, 400)
