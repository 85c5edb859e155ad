"""WCAG contrast maths, against the W3C's worked values."""

from __future__ import annotations

import pytest

from passes.apple.errors import PassValidationError
from passes.contrast import contrast_ratio, format_ratio, relative_luminance


def test_black_on_white_is_21_and_a_colour_on_itself_is_1() -> None:
    assert contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast_ratio("#FFF", "#000") == pytest.approx(21.0)  # either order, short form
    assert contrast_ratio("#FACC15", "#facc15") == pytest.approx(1.0)


@pytest.mark.parametrize(("first", "second", "ratio"), [
    ("#FFFFFF", "#FACC15", 1.53),  # white on yellow: the unreadable join banner
    ("#767676", "#FFFFFF", 4.54),  # the lightest grey that passes AA on white
    ("#777777", "#FFFFFF", 4.48),  # and one step lighter, which does not
    ("#FFFFFF", "#1F2937", 14.68),  # the defaults
])
def test_known_ratios(first: str, second: str, ratio: float) -> None:
    assert contrast_ratio(first, second) == pytest.approx(ratio, abs=0.01)


def test_luminance_uses_the_srgb_curve() -> None:
    assert relative_luminance((0, 0, 0)) == 0
    assert relative_luminance((255, 255, 255)) == pytest.approx(1.0)
    assert relative_luminance((10, 10, 10)) == pytest.approx(10 / 255 / 12.92)  # linear part


def test_ratio_is_shown_rounded_down_so_a_failing_pair_never_reads_as_passing() -> None:
    assert format_ratio(4.4999) == "4.4:1"
    assert format_ratio(1.53) == "1.5:1"
    assert format_ratio(21.0) == "21.0:1"


def test_bad_colour_is_refused() -> None:
    with pytest.raises(PassValidationError):
        contrast_ratio("yellow", "#000000")
