"""How a program looks and reads on passes: its design and its word for points."""

from __future__ import annotations

from collections.abc import Mapping

from app.errors import LowContrast
from app.wording import pass_wording
from passes.apple.parts import PassDesign
from passes.contrast import AA_NORMAL_TEXT, contrast_ratio, format_ratio
from passes.wording import DEFAULT_POINTS_LABEL, LocalizedText, translations


def pass_design(program: object, images: Mapping[str, bytes] | None = None) -> PassDesign:
    """The design passes and logos are drawn with; ``images`` is the program's uploaded
    artwork by kind (``app.loyalty.artwork.images_of``)."""
    images = images or {}
    return PassDesign(
        program_name=program.name[:64],  # type: ignore[attr-defined]
        background_color=program.background_color,  # type: ignore[attr-defined]
        foreground_color=program.foreground_color,  # type: ignore[attr-defined]
        label_color=program.label_color,  # type: ignore[attr-defined]
        logo_text=program.organization_name[:64],  # type: ignore[attr-defined]
        logo_image=images.get("logo"),
        strip_image=images.get("strip"),
        icon_image=images.get("icon"),
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


#: The colour pairs a design must keep readable, each as (text, background): what pass labels,
#: values and the join and card pages draw in one colour on the other. Labels are small text
#: on passes (Wallet draws them at about 11 pt) and on the pages (the organisation's name
#: above the banner's heading), so no pair counts as large text: each needs 4.5:1.
CONTRAST_PAIRS = (("foreground_color", "background_color"), ("label_color", "background_color"))


def check_contrast(colours: Mapping[str, str]) -> None:
    """Refuse (422 ``low-contrast``) a design whose text colours are below WCAG AA (4.5:1) on
    its background. ``colours`` holds ``background_color``, ``foreground_color`` and
    ``label_color`` as ``#RRGGBB``."""
    errors = []
    for text, background in CONTRAST_PAIRS:
        ratio = contrast_ratio(colours[text], colours[background])
        if ratio < AA_NORMAL_TEXT:
            errors.append({
                "location": "json", "field": text,
                "message": f"{text} {colours[text]} on {background} {colours[background]} has "
                f"contrast {format_ratio(ratio)}; at least {AA_NORMAL_TEXT:g}:1 is needed"})
    if errors:
        raise LowContrast(" ".join(e["message"] + "." for e in errors), errors=errors)
