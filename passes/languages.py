"""The languages Pointpass speaks: one list for passes, pages, forms and the API.

Every pass carries every language; pages and the member's language choice use the same list.
Adding a language: add it here (and its own name to :data:`LANGUAGE_NAMES`), then create its
Babel catalog (see ``app/translations/README.md``).
"""

from __future__ import annotations

from collections.abc import Mapping

#: Language codes, English (the source language) first.
LANGUAGES: tuple[str, ...] = ("en", "id", "th", "ms")
#: The language every text is written in first, and the one a missing translation falls back to.
FALLBACK_LANGUAGE = "en"
#: Each language named in itself (for language switchers and selects).
LANGUAGE_NAMES: Mapping[str, str] = {
    "en": "English",
    "id": "Bahasa Indonesia",
    "th": "ไทย",
    "ms": "Bahasa Melayu",
}
