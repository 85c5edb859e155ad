"""Words shared by Apple and Google passes, in every supported language."""

from __future__ import annotations

from collections.abc import Mapping

#: A text for every language (``str``) or per language code (``en`` required).
LocalizedText = str | Mapping[str, str]

DEFAULT_POINTS_LABEL: Mapping[str, str] = {
    "en": "Points",
    "id": "Poin",
    "th": "แต้ม",
    "ms": "Mata",
}
