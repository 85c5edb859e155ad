"""WCAG 2.x colour contrast: relative luminance and contrast ratio of two sRGB colours.

Pure maths, no Flask: the service refuses designs whose text would be hard to read, and
anything drawing text over a colour can ask the same question.
"""

from __future__ import annotations

import math

from passes.apple.parts import parse_hex_color

#: WCAG 2.1 level AA: normal text needs 4.5:1 (1.4.3); large text (18 pt, or 14 pt bold) 3:1.
AA_NORMAL_TEXT = 4.5
AA_LARGE_TEXT = 3.0


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG relative luminance of an sRGB colour (0 for black, 1 for white)."""
    r, g, b = (_channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str | tuple[int, int, int], second: str | tuple[int, int, int]) -> float:
    """The contrast ratio (1 to 21) of two colours, given as ``#RRGGBB``/``#RGB`` or RGB."""
    a = relative_luminance(_rgb(first))
    b = relative_luminance(_rgb(second))
    lighter, darker = max(a, b), min(a, b)
    return (lighter + 0.05) / (darker + 0.05)


def format_ratio(ratio: float) -> str:
    """``ratio`` as people write it, rounded *down* to one decimal (``4.49`` is ``4.4:1``, so
    a ratio shown as enough is enough)."""
    return f"{math.floor(ratio * 10) / 10:.1f}:1"


def _rgb(colour: str | tuple[int, int, int]) -> tuple[int, int, int]:
    return parse_hex_color("colour", colour) if isinstance(colour, str) else colour
