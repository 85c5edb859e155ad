"""How a program looks on passes: its brand and its word for points."""

from __future__ import annotations

from passes.apple.model import Brand
from passes.labels import DEFAULT_POINTS_LABEL, LocalizedText

DEFAULT_LABEL = "Points"


def pass_brand(program: object) -> Brand:
    """The brand passes and logos are drawn with."""
    return Brand(
        program_name=program.name[:64],  # type: ignore[attr-defined]
        background_color=program.background_color,  # type: ignore[attr-defined]
        foreground_color=program.foreground_color,  # type: ignore[attr-defined]
        label_color=program.label_color,  # type: ignore[attr-defined]
        logo_text=program.organization_name[:64],  # type: ignore[attr-defined]
    )


def points_label(program: object) -> LocalizedText:
    """The default label reads in each holder's language; a program's own label as written."""
    label = program.points_label  # type: ignore[attr-defined]
    return dict(DEFAULT_POINTS_LABEL) if label == DEFAULT_LABEL else label
