"""Images: sizes, logos, caching, and Thai text that renders as glyphs rather than tofu."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from passes.apple import ImageRenderer, ImageSet, PassDesign, PassValidationError, RewardProgress
from passes.apple import images as images_module
from passes.apple.images import (
    FONT_CHAINS,
    FONT_DIR,
    _Look,
    draw_text,
    font_has_glyph,
    render_strip,
    text_runs,
)
from passes.contrast import contrast_ratio

THAI = "กาแฟฟรี 1 แก้ว"
# Base letters only: a lone vowel or tone mark is drawn over a placeholder circle, not alone.
THAI_LETTERS = [
    c for c in THAI if "\u0e00" <= c <= "\u0e7f" and not unicodedata.category(c).startswith("M")
]
LATIN_FONT = FONT_DIR / "NotoSans-Bold.ttf"
THAI_FONT = FONT_DIR / "NotoSansThai-Bold.ttf"


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _render_alone(text: str, chain: tuple[Path, ...], size: int = 40) -> Image.Image:
    image = Image.new("L", (24 * size, 2 * size))
    draw_text(ImageDraw.Draw(image), (10, int(1.4 * size)), text, chain, size, (255,))
    return image


def test_bundled_fonts_and_license_exist() -> None:
    for chain in FONT_CHAINS.values():
        for path in chain:
            assert path.is_file(), path
    assert "SIL Open Font License" in (FONT_DIR / "OFL.txt").read_text()


def test_thai_goes_to_the_thai_font_and_latin_to_latin() -> None:
    runs = text_runs("120 → กาแฟ", FONT_CHAINS["bold"])
    assert [Path(p).name for _, p in runs] == [
        "NotoSans-Bold.ttf",
        "NotoSansSymbols-Regular.ttf",
        "NotoSansThai-Bold.ttf",
    ]
    assert "".join(r for r, _ in runs) == "120 → กาแฟ"
    # A tone mark stays in the run of the consonant it sits on.
    assert text_runs("ก้", FONT_CHAINS["bold"]) == [("ก้", THAI_FONT)]


def test_thai_glyphs_differ_from_tofu() -> None:
    assert all(font_has_glyph(THAI_FONT, c) for c in THAI_LETTERS)
    assert not any(font_has_glyph(LATIN_FONT, c) for c in THAI_LETTERS)  # Latin font: tofu

    notdef = _render_alone("\U000f0000", (THAI_FONT,))
    shapes = set()
    for letter in THAI_LETTERS:
        glyph = _render_alone(letter, FONT_CHAINS["bold"])
        assert glyph.getbbox() is not None, letter
        assert glyph.tobytes() != notdef.tobytes(), letter
        shapes.add(glyph.tobytes())
    assert len(shapes) == len(set(THAI_LETTERS))  # distinct letters, distinct shapes

    ours = _render_alone(THAI, FONT_CHAINS["bold"])
    tofu = _render_alone(THAI, (LATIN_FONT,))
    assert ours.getbbox() is not None
    assert ImageChops.difference(ours, tofu).getbbox() is not None


def test_generated_strip_fills_its_top_half_and_keeps_the_text_over_it_readable() -> None:
    look = _Look((31, 41, 55), (255, 255, 255), "K", None)
    strip = render_strip(look, 2, RewardProgress(80, 100, "Croissant"))
    top = strip.crop((0, 0, strip.width, strip.height // 2))
    colours = top.getcolors(maxcolors=100_000)
    assert colours is not None
    background_share = max(count for count, rgb in colours if rgb == (31, 41, 55))
    assert background_share < 0.8 * top.width * top.height  # artwork, not an empty band
    # Wallet draws the primary field in the foreground colour over the top-left.
    field_area = strip.crop((0, 0, strip.width // 2, strip.height // 2))
    assert min(contrast_ratio((255, 255, 255), rgb)
               for _, rgb in field_area.getcolors(maxcolors=100_000)) >= 4.5


def test_uploaded_strip_and_icon_replace_the_generated_ones() -> None:
    strip, icon = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (1500, 400), (0, 128, 0)).save(strip, "PNG")
    Image.new("RGB", (200, 200), (0, 0, 200)).save(icon, "PNG")
    design = PassDesign("Kopi", strip_image=strip.getvalue(), icon_image=icon.getvalue())
    image_set = ImageRenderer().render(design, RewardProgress(10, 100, "Coffee"))
    for scale, suffix in ((1, ""), (2, "@2x"), (3, "@3x")):
        strip_png = _png(image_set[f"strip{suffix}.png"].data)
        assert strip_png.size == (375 * scale, 123 * scale)
        assert strip_png.convert("RGB").getpixel((strip_png.width // 2, 5)) == (0, 128, 0)
        icon_png = _png(image_set[f"icon{suffix}.png"].data)
        assert icon_png.size == (29 * scale, 29 * scale)
        assert icon_png.convert("RGB").getpixel((0, 0)) == (0, 0, 200)


def test_logo_image_is_fitted_and_trimmed() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (300, 100), (200, 30, 30, 255)).save(buffer, "PNG")
    image_set = ImageRenderer().render(PassDesign("Wide Co", logo_image=buffer.getvalue()))
    assert _png(image_set["logo.png"].data).size == (150, 50)
    assert _png(image_set["logo@3x.png"].data).size == (450, 150)
    assert _png(image_set["icon@2x.png"].data).size == (58, 58)
    assert "strip.png" not in image_set.names  # no progress, no strip


def test_very_wide_logo_is_capped_at_160pt() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1000, 50), (0, 0, 255)).save(buffer, "PNG")
    image_set = ImageRenderer().render(PassDesign("Wider", logo_image=buffer.getvalue()))
    assert _png(image_set["logo@2x.png"].data).size == (320, 100)


def test_undecodable_logo_is_a_validation_error() -> None:
    with pytest.raises(PassValidationError) as info:
        ImageRenderer().render(PassDesign("Broken", logo_image=b"\x89PNG\r\n\x1a\n garbage"))
    assert info.value.field == "design.logo_image"


def test_image_set_from_bytes_rejects_what_store_cards_cannot_take() -> None:
    png = ImageRenderer().render(PassDesign("Kopi"))["icon.png"].data
    assert ImageSet.from_bytes({"icon.png": png}).names == ("icon.png",)
    with pytest.raises(PassValidationError, match="thumbnail"):
        ImageSet.from_bytes({"icon.png": png, "thumbnail.png": png})
    with pytest.raises(PassValidationError, match="PNG"):
        ImageSet.from_bytes({"icon.png": b"GIF89a"})
    with pytest.raises(PassValidationError, match=r"icon\.png"):
        ImageSet.from_bytes({"logo.png": png})


def test_cache_evicts_least_recently_used() -> None:
    renderer = ImageRenderer(max_entries=2)
    renderer.render(PassDesign("A"))
    renderer.render(PassDesign("B"))
    renderer.render(PassDesign("A"))
    renderer.render(PassDesign("C"))  # evicts B
    assert renderer.cache_info()["entries"] == 2
    misses = renderer.cache_info()["misses"]
    renderer.render(PassDesign("A"))
    assert renderer.cache_info()["misses"] == misses
    renderer.render(PassDesign("B"))
    assert renderer.cache_info()["misses"] == misses + 1


def test_module_level_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_module, "_default_renderer", ImageRenderer())
    first = images_module.render_images(PassDesign("Kopi"), RewardProgress(1, 2, "x"))
    second = images_module.render_images(PassDesign("Kopi"), RewardProgress(1, 2, "x"))
    assert first.files == second.files
