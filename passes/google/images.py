"""The program logo Google Wallet shows on a loyalty card (a square it crops to a circle)."""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image

from passes.apple.images import FONT_CHAINS, _centered_text, _decode_logo, _fit_logo
from passes.apple.parts import PassDesign

LOGO_SIZE = 660  # Google's recommended program logo size, in pixels


def program_logo_png(design: PassDesign, size: int = LOGO_SIZE) -> bytes:
    """A ``size``×``size`` PNG: the design's logo image, or its initials, on its colour."""
    return _render(design.background_rgb, design.foreground_rgb, design.initials or "?",
                   design.logo_image, size)


@lru_cache(maxsize=64)
def _render(background: tuple[int, int, int], foreground: tuple[int, int, int], initials: str,
            logo: bytes | None, size: int) -> bytes:
    image = Image.new("RGB", (size, size), background)
    # Google crops to a circle: keep the content within the inscribed square's middle.
    inset = size * 0.22
    box = (inset, inset, size - inset, size - inset)
    if logo is not None:
        fitted = _fit_logo(_decode_logo(logo), (int(box[2] - box[0]), int(box[3] - box[1])))
        image.paste(fitted, (int((size - fitted.width) / 2), int((size - fitted.height) / 2)),
                    fitted if fitted.mode == "RGBA" else None)
    else:
        _centered_text(image, initials, box, foreground, FONT_CHAINS["bold"])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
