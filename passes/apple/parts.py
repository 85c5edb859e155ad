"""The pieces of an Apple Wallet loyalty card, as validated, immutable dataclasses.

:class:`PassDesign` (how the card looks), :class:`RewardProgress` (the strip's bar),
:class:`Barcode`, :class:`Location` and :class:`ActivityLine` (one line of the recent
activity on the back) each check themselves when constructed and raise
:class:`PassValidationError` naming the offending field; :mod:`passes.apple.model` assembles
them into a card. The ``check_*`` helpers are the validators both modules share.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from passes import checks
from passes.apple.errors import PassValidationError
from passes.checks import set_field
from passes.languages import FALLBACK_LANGUAGE, LANGUAGES
from passes.wording import Wording, translate

MAX_LOCATIONS = 10  # Wallet ignores every location past the tenth
MAX_ACTIVITY_LINES = 50
PROGRESS_STEPS = 20
BARCODE_FORMAT_QR = "PKBarcodeFormatQR"
BARCODE_MESSAGE_ENCODING = "iso-8859-1"

_HEX_COLOR = re.compile(r"#?(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def check_text(name: str, value: object, *, max_length: int, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    return checks.check_text(name, value, max_length=max_length, error=PassValidationError)


def check_integer(name: str, value: object, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PassValidationError(name, f"must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise PassValidationError(name, f"must be between {minimum} and {maximum}")
    return value


def check_number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PassValidationError(name, "must be a number")
    if not low <= value <= high:  # also rejects NaN
        raise PassValidationError(name, f"must be between {low:g} and {high:g}")
    return float(value)


def parse_hex_color(name: str, value: object) -> tuple[int, int, int]:
    """Return ``(r, g, b)`` for ``#RRGGBB`` or ``#RGB`` (``#`` optional); raise naming ``name``."""
    if not isinstance(value, str) or not _HEX_COLOR.fullmatch(value):
        raise PassValidationError(name, f"must be a hex colour like '#1A2B3C', got {value!r}")
    digits = value.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def css_rgb(rgb: tuple[int, int, int]) -> str:
    """Return the ``rgb(r, g, b)`` notation pass.json uses for colours."""
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


# Thai writes these vowels before the consonant they follow in speech; an initial is the
# consonant, so they are skipped.
_THAI_LEADING_VOWELS = frozenset("เแโใไ")


def _initials(name: str) -> str:
    letters = []
    for word in name.split():
        chars = [c for c in word if c.isalnum() and c not in _THAI_LEADING_VOWELS]
        if chars:
            letters.append(chars[0].upper())
        if len(letters) == 2:
            break
    return "".join(letters) or "?"


@dataclass(frozen=True)
class PassDesign:
    """How a program looks: its name, colours and optional logo.

    ``logo_text`` is shown next to the logo (defaults to ``program_name``); ``initials`` are
    drawn on the icon and logo when there is no ``logo_image`` (default: from the name).
    ``logo_image``, ``strip_image`` and ``icon_image`` are the program's own artwork as PNG,
    JPEG or GIF bytes (checked beforehand, e.g. by :func:`passes.artwork.normalize`): each
    replaces the generated one, resized to Wallet's sizes.
    """

    program_name: str
    background_color: str = "#1F2937"
    foreground_color: str = "#FFFFFF"
    label_color: str = "#D1D5DB"
    logo_text: str | None = None
    logo_image: bytes | None = field(default=None, repr=False)
    initials: str | None = None
    strip_image: bytes | None = field(default=None, repr=False)
    icon_image: bytes | None = field(default=None, repr=False)
    background_rgb: tuple[int, int, int] = field(init=False, repr=False, compare=False)
    foreground_rgb: tuple[int, int, int] = field(init=False, repr=False, compare=False)
    label_rgb: tuple[int, int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_text("design.program_name", self.program_name, max_length=64)
        background = parse_hex_color("design.background_color", self.background_color)
        set_field(self, "background_rgb", background)
        foreground = parse_hex_color("design.foreground_color", self.foreground_color)
        set_field(self, "foreground_rgb", foreground)
        set_field(self, "label_rgb", parse_hex_color("design.label_color", self.label_color))
        check_text("design.logo_text", self.logo_text, max_length=64, optional=True)
        if self.initials is None:
            set_field(self, "initials", _initials(self.program_name))
        else:
            check_text("design.initials", self.initials, max_length=3)
        for name in ("logo_image", "strip_image", "icon_image"):
            data = getattr(self, name)
            if data is None:
                continue
            if not isinstance(data, bytes):
                raise PassValidationError(f"design.{name}", "must be bytes")
            if not data.startswith(_IMAGE_MAGIC):
                raise PassValidationError(f"design.{name}", "must be a PNG, JPEG or GIF image")

    @property
    def display_logo_text(self) -> str:
        """The text Wallet shows beside the logo."""
        return self.logo_text if self.logo_text is not None else self.program_name


@dataclass(frozen=True)
class RewardProgress:
    """Progress toward the next reward, drawn on the strip image as a bar and text.

    The strip shows progress in :data:`PROGRESS_STEPS` steps (5% each), not the exact points
    (the balance field shows those): a program then needs at most 21 strips per reward, which
    stay cached, instead of rendering a new strip for every balance.
    """

    points: int
    target: int
    reward_name: str
    #: The best reward the points pay for now, if any: the pass says it is ready.
    ready_reward: str | None = None

    def __post_init__(self) -> None:
        check_integer("progress.points", self.points, minimum=-(10**12), maximum=10**12)
        check_integer("progress.target", self.target, minimum=1, maximum=10**12)
        check_text("progress.reward_name", self.reward_name, max_length=60)
        check_text("progress.ready_reward", self.ready_reward, max_length=60, optional=True)

    @property
    def points_to_go(self) -> int:
        """Points still missing for ``reward_name`` (0 once reached)."""
        return max(self.target - self.points, 0)

    @property
    def fraction(self) -> float:
        """How far toward the reward, clamped to 0..1."""
        return min(max(self.points / self.target, 0.0), 1.0)

    @property
    def step(self) -> int:
        """Progress in whole steps of ``1 / PROGRESS_STEPS``, rounded down (0..PROGRESS_STEPS)."""
        return int(self.fraction * PROGRESS_STEPS)

    @property
    def drawn(self) -> tuple[int, int, str]:
        """What the strip depends on: two progresses with equal ``drawn`` share a strip."""
        return (self.step, self.target, self.reward_name)


@dataclass(frozen=True)
class Barcode:
    """The member's QR code. ``message`` must be ISO-8859-1 text (Wallet's encoding)."""

    message: str
    alt_text: str | None = None

    def __post_init__(self) -> None:
        check_text("barcode.message", self.message, max_length=2000)
        try:
            self.message.encode(BARCODE_MESSAGE_ENCODING)
        except UnicodeEncodeError:
            raise PassValidationError(
                "barcode.message", "must be encodable as ISO-8859-1 (Latin-1)"
            ) from None
        check_text("barcode.alt_text", self.alt_text, max_length=80, optional=True)

    def as_dict(self) -> dict[str, str]:
        """The barcode as a ``barcodes`` entry (also the legacy ``barcode`` value)."""
        entry = {
            "format": BARCODE_FORMAT_QR,
            "message": self.message,
            "messageEncoding": BARCODE_MESSAGE_ENCODING,
        }
        if self.alt_text is not None:
            entry["altText"] = self.alt_text
        return entry


@dataclass(frozen=True)
class Location:
    """A place where the pass appears on the lock screen, with optional ``relevant_text``."""

    latitude: float
    longitude: float
    relevant_text: str | None = None
    altitude: float | None = None

    def __post_init__(self) -> None:
        check_number("location.latitude", self.latitude, -90.0, 90.0)
        check_number("location.longitude", self.longitude, -180.0, 180.0)
        if self.altitude is not None:
            check_number("location.altitude", self.altitude, -1000.0, 100000.0)
        check_text("location.relevant_text", self.relevant_text, max_length=200, optional=True)

    def as_dict(self) -> dict[str, Any]:
        """The location as a ``locations`` entry."""
        entry: dict[str, Any] = {"latitude": self.latitude, "longitude": self.longitude}
        if self.altitude is not None:
            entry["altitude"] = self.altitude
        if self.relevant_text is not None:
            entry["relevantText"] = self.relevant_text
        return entry


@dataclass(frozen=True)
class ActivityLine:
    """One line of the member's recent activity: when, what, and signed points.

    ``description`` is fixed wording (an msgid of the catalogs, such as "Earned"), translated
    for each language; ``detail`` is the program's own text (a reason, a reward), shown as
    given after a colon.
    """

    when: dt.date
    description: str
    points: int
    detail: str | None = None
    line: str = field(init=False, repr=False, compare=False)
    _head: str = field(init=False, repr=False, compare=False)
    _word: str = field(init=False, repr=False, compare=False)
    _tail: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.when, dt.date):
            raise PassValidationError("activity.when", "must be a date or datetime")
        check_text("activity.description", self.description, max_length=120)
        check_integer("activity.points", self.points, minimum=-(10**12), maximum=10**12)
        check_text("activity.detail", self.detail, max_length=120, optional=True)
        day = self.when.date() if isinstance(self.when, dt.datetime) else self.when
        word = " ".join(self.description.split())
        detail = "" if self.detail is None else ": " + " ".join(self.detail.split())
        set_field(self, "_head", f"{day.isoformat()} · ")
        set_field(self, "_word", word)
        set_field(self, "_tail", f"{detail} · {self.points:+d}")
        set_field(self, "line", self._head + word + self._tail)

    def render(self, wording: Wording | None = None, language: str = FALLBACK_LANGUAGE) -> str:
        """The line on the back of the pass, e.g. ``2024-05-01 · Earned: Latte · +10``, with
        ``description`` in ``language`` when a ``wording`` is given."""
        if wording is None or language == FALLBACK_LANGUAGE:
            return self.line
        return self._head + translate(wording, language, self._word) + self._tail


def activity_texts(lines: Sequence[ActivityLine], wording: Wording) -> tuple[str, ...]:
    """The recent activity (one line each, newest first) in every language of
    :data:`LANGUAGES`."""
    texts = []
    for language in LANGUAGES:
        if language == FALLBACK_LANGUAGE:
            texts.append("\n".join([line.line for line in lines]))
            continue
        words: dict[str, str] = {}  # lines repeat a handful of words: translate each once
        rendered = []
        for line in lines:
            word = words.get(line._word)
            if word is None:
                word = words[line._word] = translate(wording, language, line._word)
            rendered.append(line._head + word + line._tail)
        texts.append("\n".join(rendered))
    return tuple(texts)


def check_activity(value: object) -> tuple[ActivityLine, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise PassValidationError("activity", "must be a sequence of activity lines")
    if len(value) > MAX_ACTIVITY_LINES:
        raise PassValidationError("activity", f"has more than {MAX_ACTIVITY_LINES} lines")
    lines = []
    for i, item in enumerate(value):
        if isinstance(item, ActivityLine):
            lines.append(item)
        elif isinstance(item, tuple) and len(item) in (3, 4):
            try:
                lines.append(ActivityLine(*item))
            except PassValidationError as exc:
                raise PassValidationError(
                    exc.field.replace("activity", f"activity[{i}]", 1), exc.problem
                ) from None
        else:
            raise PassValidationError(
                f"activity[{i}]",
                "must be an ActivityLine or a (date, description, points[, detail]) tuple",
            )
    return tuple(lines)


def check_locations(value: object) -> tuple[Location, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise PassValidationError("locations", "must be a sequence of Location")
    if len(value) > MAX_LOCATIONS:
        raise PassValidationError(
            "locations", f"has {len(value)} entries; Wallet allows at most {MAX_LOCATIONS}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, Location):
            raise PassValidationError(f"locations[{i}]", "must be a Location")
    return tuple(value)
