"""The images of a loyalty card, drawn with Pillow from the program's :class:`PassDesign`.

A store card takes ``icon.png``, ``logo.png`` and ``strip.png`` (no thumbnail or background),
each at @1x, @2x and @3x. Icon and logo depend only on the design and the strip only on design
plus reward progress, so :class:`ImageRenderer` caches finished files (bytes, SHA-1 and ZIP
record together): a pass whose images did not change costs no drawing, encoding or hashing.

Text is drawn with the bundled Noto fonts (SIL OFL, see ``fonts/OFL.txt``): each character goes
to the first font of a fallback chain that has a glyph for it (Latin, then Thai, then symbols),
and runs are shaped with libraqm when Pillow has it, which Thai vowels and tone marks need.
"""

from __future__ import annotations

import functools
import io
import threading
import unicodedata
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont, ImageOps, features

from passes.apple.archive import PassFile
from passes.apple.errors import PassValidationError
from passes.apple.parts import PROGRESS_STEPS, PassDesign, RewardProgress

FONT_DIR = Path(__file__).resolve().parent / "fonts"
SCALES: tuple[int, ...] = (1, 2, 3)

#: Point sizes: the icon is fixed, the logo at most this box, the strip fixed.
ICON_SIZE = (29, 29)
LOGO_MAX_SIZE = (160, 50)
STRIP_SIZE = (375, 123)

_BASE_NAMES = ("icon", "logo", "strip")
#: Every image file name a store card may carry.
ALLOWED_IMAGE_NAMES = frozenset(
    f"{base}{'' if scale == 1 else f'@{scale}x'}.png" for base in _BASE_NAMES for scale in SCALES
)

FONT_CHAINS: Mapping[str, tuple[Path, ...]] = {
    "bold": (
        FONT_DIR / "NotoSans-Bold.ttf",
        FONT_DIR / "NotoSansThai-Bold.ttf",
        FONT_DIR / "NotoSansSymbols-Regular.ttf",  # arrows; Noto Sans lacks U+2192
    ),
}

_LAYOUT = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
_PROBE_SIZE = 32
_NOTDEF_PROBE = "\U000f0000"  # a private-use code point no bundled font maps


@functools.lru_cache(maxsize=128)
def load_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    """Return the bundled font at ``path`` in pixel ``size`` (cached)."""
    return ImageFont.truetype(str(path), size, layout_engine=_LAYOUT)


def _probe(path: Path, char: str) -> bytes:
    image = Image.new("L", (3 * _PROBE_SIZE, 2 * _PROBE_SIZE))
    ImageDraw.Draw(image).text((8, 8), char, font=load_font(path, _PROBE_SIZE), fill=255)
    return image.tobytes()


@functools.lru_cache(maxsize=8)
def _notdef_mask(path: Path) -> bytes:
    return _probe(path, _NOTDEF_PROBE)


@functools.lru_cache(maxsize=8192)
def font_has_glyph(path: Path, char: str) -> bool:
    """Whether the font at ``path`` draws ``char`` as something other than its .notdef box."""
    # Pillow exposes no cmap lookup, so compare against the font's own missing-glyph shape.
    return _probe(path, char) != _notdef_mask(path)


def _joins_previous(char: str) -> bool:
    # Marks, spaces and joiners belong with the character before them, so a Thai tone mark
    # is shaped with its consonant and a space does not break a run.
    return char.isspace() or unicodedata.category(char) in ("Mn", "Mc", "Me", "Cf")


def text_runs(text: str, chain: tuple[Path, ...]) -> list[tuple[str, Path]]:
    """Split ``text`` into ``(run, font path)`` pieces, each drawn by the first font that can."""
    runs: list[tuple[str, Path]] = []
    for char in text:
        if runs and _joins_previous(char):
            runs[-1] = (runs[-1][0] + char, runs[-1][1])
            continue
        path = next((p for p in chain if font_has_glyph(p, char)), chain[0])
        if runs and runs[-1][1] == path:
            runs[-1] = (runs[-1][0] + char, path)
        else:
            runs.append((char, path))
    return runs


def text_width(text: str, chain: tuple[Path, ...], size: int) -> float:
    """Advance width in pixels of ``text`` drawn with ``chain`` at ``size``."""
    return sum(load_font(path, size).getlength(run) for run, path in text_runs(text, chain))


def draw_text(
    draw: ImageDraw.ImageDraw,
    origin: tuple[float, float],
    text: str,
    chain: tuple[Path, ...],
    size: int,
    fill: tuple[int, ...],
) -> tuple[float, float, float, float]:
    """Draw ``text`` with its left end of baseline at ``origin``; return the ink bbox."""
    x, baseline = origin
    box = [float("inf"), float("inf"), float("-inf"), float("-inf")]
    for run, path in text_runs(text, chain):
        font = load_font(path, size)
        draw.text((x, baseline), run, font=font, fill=fill, anchor="ls")
        left, top, right, bottom = draw.textbbox((x, baseline), run, font=font, anchor="ls")
        box = [min(box[0], left), min(box[1], top), max(box[2], right), max(box[3], bottom)]
        x += font.getlength(run)
    return (box[0], box[1], box[2], box[3])


def ink_bbox(text: str, chain: tuple[Path, ...], size: int) -> tuple[float, float, float, float]:
    """Ink bounding box of ``text`` relative to a baseline origin at (0, 0)."""
    scratch = ImageDraw.Draw(Image.new("L", (1, 1)))
    x = 0.0
    box = [float("inf"), float("inf"), float("-inf"), float("-inf")]
    for run, path in text_runs(text, chain):
        font = load_font(path, size)
        left, top, right, bottom = scratch.textbbox((x, 0), run, font=font, anchor="ls")
        box = [min(box[0], left), min(box[1], top), max(box[2], right), max(box[3], bottom)]
        x += font.getlength(run)
    return (box[0], box[1], box[2], box[3])


def fit_text(
    text: str, chain: tuple[Path, ...], max_width: float, size: int, min_size: int
) -> tuple[str, int]:
    """Shrink ``size`` (not below ``min_size``), then ellipsize, until ``text`` fits."""
    while size > min_size and text_width(text, chain, size) > max_width:
        size -= 1
    if text_width(text, chain, size) <= max_width:
        return text, size
    while len(text) > 1 and text_width(text + "…", chain, size) > max_width:
        text = text[:-1]
    return text.rstrip() + "…", size


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Flat artwork compresses well at the default level; optimize=True tries every filter
    # and costs several times the rendering for a few percent.
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _file_name(base: str, scale: int) -> str:
    return f"{base}.png" if scale == 1 else f"{base}@{scale}x.png"


def _decode_logo(data: bytes, field: str = "design.logo_image") -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                logo = image.convert("RGBA")
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PassValidationError(field, "could not be decoded as an image") from None
    if logo.getbbox() is None:
        raise PassValidationError(field, "is completely transparent")
    return logo.crop(logo.getbbox())


def _cover(artwork: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``artwork`` scaled to cover ``size`` and cut to it around its centre."""
    return ImageOps.fit(artwork, size, Image.Resampling.LANCZOS)


class _Look(NamedTuple):
    """The parts of a :class:`PassDesign` that images depend on (a cache key)."""

    background: tuple[int, int, int]
    foreground: tuple[int, int, int]
    initials: str
    logo_image: bytes | None
    strip_image: bytes | None = None
    icon_image: bytes | None = None

    @classmethod
    def of(cls, design: PassDesign) -> _Look:
        return cls(
            design.background_rgb, design.foreground_rgb, design.initials or "?",
            design.logo_image, design.strip_image, design.icon_image,
        )


def _centered_text(
    image: Image.Image,
    text: str,
    box: tuple[float, float, float, float],
    fill: tuple[int, ...],
    chain: tuple[Path, ...],
) -> None:
    left, top, right, bottom = box
    size = max(int(bottom - top), 4)
    while size > 4:
        ink = ink_bbox(text, chain, size)
        if ink[2] - ink[0] <= right - left and ink[3] - ink[1] <= bottom - top:
            break
        size -= 1
    ink = ink_bbox(text, chain, size)
    x = left + (right - left - (ink[2] - ink[0])) / 2 - ink[0]
    y = top + (bottom - top - (ink[3] - ink[1])) / 2 - ink[1]
    draw_text(ImageDraw.Draw(image), (x, y), text, chain, size, fill)


def _fit_logo(logo: Image.Image, box: tuple[int, int]) -> Image.Image:
    ratio = min(box[0] / logo.width, box[1] / logo.height)
    size = (max(1, round(logo.width * ratio)), max(1, round(logo.height * ratio)))
    return logo.resize(size, Image.Resampling.LANCZOS)


def render_icon(
    look: _Look, scale: int, logo: Image.Image | None, icon: Image.Image | None = None
) -> Image.Image:
    """The notification/lock-screen icon: the program's icon, else the logo or initials on the
    brand background."""
    side = ICON_SIZE[0] * scale
    image = Image.new("RGB", (side, side), look.background)
    if icon is not None:
        fitted = _cover(icon, (side, side))
        image.paste(fitted, (0, 0), fitted)
    elif logo is not None:
        fitted = _fit_logo(logo, (round(side * 0.8), round(side * 0.8)))
        image.paste(fitted, ((side - fitted.width) // 2, (side - fitted.height) // 2), fitted)
    else:
        pad = side * 0.2
        _centered_text(
            image,
            look.initials,
            (pad, pad, side - pad, side - pad),
            look.foreground,
            FONT_CHAINS["bold"],
        )
    return image


def render_logo(look: _Look, scale: int, logo: Image.Image | None) -> Image.Image:
    """The top-left logo, transparent around it.

    As wide as its content (at most 160 pt) because Wallet places ``logoText`` right after the
    image's width; without a logo image it is a 50 pt badge with the initials.
    """
    height = LOGO_MAX_SIZE[1] * scale
    if logo is not None:
        width_pt = min(LOGO_MAX_SIZE[0], max(1, round(LOGO_MAX_SIZE[1] * logo.width / logo.height)))
        image = Image.new("RGBA", (width_pt * scale, height), (0, 0, 0, 0))
        fitted = _fit_logo(logo, image.size)
        image.paste(fitted, (0, (height - fitted.height) // 2), fitted)
        return image
    image = Image.new("RGBA", (height, height), (0, 0, 0, 0))
    inset = 3 * scale
    ImageDraw.Draw(image).ellipse(
        (inset, inset, height - inset - 1, height - inset - 1), fill=(*look.foreground, 255)
    )
    pad = height * 0.28
    _centered_text(
        image,
        look.initials,
        (pad, pad, height - pad, height - pad),
        (*look.background, 255),
        FONT_CHAINS["bold"],
    )
    return image


def progress_text(progress: RewardProgress) -> str:
    """A short caption of the progress, e.g. ``20% → Free coffee`` (in 5% steps, rounded
    down). The pass states it in words, translated, in a field over the strip."""
    return f"{progress.step * 100 // PROGRESS_STEPS}% → {progress.reward_name}"


def _generated_artwork(look: _Look, image: Image.Image, scale: int) -> None:
    """Fill the strip with the brand's colours: soft overlapping circles toward the right, a
    tint of the foreground strong enough to see and faint enough that the field text Wallet
    draws over the strip keeps its contrast."""
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for cx, cy, radius, tint in ((0.86, 0.15, 0.62, 0.10), (0.70, 1.05, 0.55, 0.07),
                                 (1.02, 0.75, 0.40, 0.13), (0.48, -0.30, 0.45, 0.05)):
        r = radius * height * 1.6
        x, y = cx * width, cy * height
        draw.ellipse((x - r, y - r, x + r, y + r),
                     fill=_mix(look.background, look.foreground, tint))
    step = 14 * scale  # a fine dot grid over the left part, under the field text
    dots = _mix(look.background, look.foreground, 0.06)
    for y in range(step // 2, height - 30 * scale, step):
        for x in range(step // 2, width // 2, step):
            draw.ellipse((x - scale, y - scale, x + scale, y + scale), fill=dots)


def render_strip(
    look: _Look, scale: int, progress: RewardProgress, artwork: Image.Image | None = None
) -> Image.Image:
    """The strip: the program's strip artwork (or generated artwork in its colours) with a
    progress bar toward the next reward along the bottom.

    Wallet lays the primary field (what the member can do now) over the strip's top-left,
    so the artwork fills the whole strip and the bar keeps to the bottom.
    """
    width, height = STRIP_SIZE[0] * scale, STRIP_SIZE[1] * scale
    image = Image.new("RGB", (width, height), look.background)
    if artwork is not None:
        fitted = _cover(artwork, (width, height))
        image.paste(fitted, (0, 0), fitted)
    else:
        _generated_artwork(look, image, scale)
    draw = ImageDraw.Draw(image)
    margin = 16 * scale
    bar_height = 8 * scale
    bar_bottom = height - 12 * scale
    bar_top = bar_bottom - bar_height
    track = _mix(look.background, look.foreground, 0.25)
    draw.rounded_rectangle(
        (margin, bar_top, width - margin, bar_bottom), radius=bar_height // 2, fill=track
    )
    filled = (width - 2 * margin) * progress.step // PROGRESS_STEPS
    if filled > 0:
        draw.rounded_rectangle(
            (margin, bar_top, margin + max(filled, bar_height), bar_bottom),
            radius=bar_height // 2,
            fill=look.foreground,
        )
    return image


@dataclass(frozen=True)
class ImageSet:
    """The image files of one pass, already encoded and hashed."""

    files: tuple[PassFile, ...]

    @classmethod
    def from_bytes(cls, images: Mapping[str, bytes]) -> ImageSet:
        """Wrap pre-rendered PNGs (``{"icon.png": b"...", ...}``); hashes each once.

        Raises :class:`PassValidationError` for names a store card cannot carry, non-PNG data
        or a missing ``icon.png``.
        """
        files = []
        for name, data in sorted(images.items()):
            if name not in ALLOWED_IMAGE_NAMES:
                raise PassValidationError(
                    f"images[{name!r}]",
                    "a store card takes only icon, logo and strip at @1x/@2x/@3x",
                )
            if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                raise PassValidationError(f"images[{name!r}]", "must be PNG data")
            files.append(PassFile.create(name, data))
        image_set = cls(tuple(files))
        if "icon.png" not in image_set.names:
            raise PassValidationError("images", "icon.png is required by Wallet")
        return image_set

    @property
    def names(self) -> tuple[str, ...]:
        """File names in the set."""
        return tuple(f.name for f in self.files)

    def __iter__(self) -> Iterator[PassFile]:
        return iter(self.files)

    def __getitem__(self, name: str) -> PassFile:
        for pass_file in self.files:
            if pass_file.name == name:
                return pass_file
        raise KeyError(name)


class ImageRenderer:
    """Renders and caches the image files of store cards.

    Keep one per process. Icon and logo are cached per brand look, the strip per brand look
    and progress; the least recently used entries are dropped past ``max_entries``.
    Thread-safe; two threads missing the same entry at once may both render it.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self._max_entries = max_entries
        self._cache: OrderedDict[object, tuple[PassFile, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def render(self, design: PassDesign, progress: RewardProgress | None = None) -> ImageSet:
        """Return icon, logo and (with ``progress``) strip at @1x/@2x/@3x for ``design``.

        Raises :class:`PassValidationError` if ``design.logo_image`` cannot be decoded.
        """
        look = _Look.of(design)
        if progress is None:
            return ImageSet(self._cached(("brand", look), lambda: self._render_brand(look)))
        # The combined tuple is cached too: the builder recognises an unchanged image set by
        # the identity of its files tuple.
        return ImageSet(
            self._cached(
                ("card", look, progress.drawn),
                lambda: (
                    self._cached(("brand", look), lambda: self._render_brand(look))
                    + self._render_strip(look, progress)
                ),
            )
        )

    def cache_info(self) -> dict[str, int]:
        """Hit and miss counters and the current number of cached entries."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "entries": len(self._cache)}

    def clear(self) -> None:
        """Drop every cached file."""
        with self._lock:
            self._cache.clear()

    def _cached(
        self, key: object, render: Callable[[], tuple[PassFile, ...]]
    ) -> tuple[PassFile, ...]:
        with self._lock:
            files = self._cache.get(key)
            if files is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return files
            self.misses += 1
        files = render()
        with self._lock:
            self._cache[key] = files
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return files

    @staticmethod
    def _render_brand(look: _Look) -> tuple[PassFile, ...]:
        logo = _decode_logo(look.logo_image) if look.logo_image is not None else None
        icon = (_decode_logo(look.icon_image, "design.icon_image")
                if look.icon_image is not None else None)
        files = []
        for scale in SCALES:
            files.append(PassFile.create(
                _file_name("icon", scale), _png(render_icon(look, scale, logo, icon))
            ))
        for scale in SCALES:
            files.append(
                PassFile.create(_file_name("logo", scale), _png(render_logo(look, scale, logo)))
            )
        return tuple(files)

    @staticmethod
    def _render_strip(look: _Look, progress: RewardProgress) -> tuple[PassFile, ...]:
        artwork = (_decode_logo(look.strip_image, "design.strip_image")
                   if look.strip_image is not None else None)
        return tuple(
            PassFile.create(
                _file_name("strip", scale), _png(render_strip(look, scale, progress, artwork))
            )
            for scale in SCALES
        )


_default_renderer = ImageRenderer()


def render_images(design: PassDesign, progress: RewardProgress | None = None) -> ImageSet:
    """Render (or fetch from the process-wide cache) the images for ``design``/``progress``."""
    return _default_renderer.render(design, progress)
