"""How a program looks and reads on passes: its design and its word for points."""

from __future__ import annotations

from app.wording import pass_wording
from passes.apple.parts import PassDesign
from passes.wording import DEFAULT_POINTS_LABEL, LocalizedText, translations


def pass_design(program: object) -> PassDesign:
    """The design passes and logos are drawn with."""
    return PassDesign(
        program_name=program.name[:64],  # type: ignore[attr-defined]
        background_color=program.background_color,  # type: ignore[attr-defined]
        foreground_color=program.foreground_color,  # type: ignore[attr-defined]
        label_color=program.label_color,  # type: ignore[attr-defined]
        logo_text=program.organization_name[:64],  # type: ignore[attr-defined]
    )


def localized_points_label(program: object) -> LocalizedText:
    """The program's word for points on passes: the default word in each holder's language
    (from the catalogs), or a program's own label as written."""
    label: str = program.points_label  # type: ignore[attr-defined]
    if label == DEFAULT_POINTS_LABEL:  # the column's default: "Points"
        return translations(DEFAULT_POINTS_LABEL, pass_wording())
    return label


def points_label_in(program: object, language: str) -> str:
    """The program's word for points as a page in ``language`` shows it."""
    label = localized_points_label(program)
    if isinstance(label, str):
        return label
    return label.get(language) or label.get("en") or DEFAULT_POINTS_LABEL
