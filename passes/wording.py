"""The fixed wording of passes, translated through a caller's catalogs.

The library writes its fixed words in English and marks them with :func:`N_`, so ``pybabel
extract -k N_`` collects them into the service's Babel catalogs. It never loads a catalog
itself: whoever builds a pass hands in a :data:`Wording`, a ``(language, msgid) -> text``
callable, typically a :class:`CatalogWording` over one ``gettext``-style catalog per language.
Without one, :func:`english` leaves every text in English.

Texts that belong to a program (its word for points, its terms, reward names) are not
translated here: the program supplies them per language.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol

from passes.languages import FALLBACK_LANGUAGE, LANGUAGES

#: ``wording(language, msgid)``: ``msgid`` (English) in ``language``; the msgid if untranslated.
Wording = Callable[[str, str], str]

#: A text for every language (``str``) or per language code (``en`` required).
LocalizedText = str | Mapping[str, str]

#: Every msgid marked with :func:`N_`, so tests can check each one is translated.
MARKED: set[str] = set()


def N_(msgid: str) -> str:
    """Mark ``msgid`` for extraction (``pybabel extract -k N_``); return it unchanged."""
    MARKED.add(msgid)
    return msgid


def english(language: str, msgid: str) -> str:
    """The default :data:`Wording`: every text in English, whatever the language."""
    return msgid


class Catalog(Protocol):
    """What :class:`CatalogWording` needs of a catalog (``gettext`` or Babel translations)."""

    def gettext(self, message: str) -> str: ...


class CatalogWording:
    """A :data:`Wording` over one loaded catalog per language (English needs none).

    Build it once per process and reuse it: results derived from it (texts, ``pass.strings``
    files) are cached per wording object.
    """

    def __init__(self, catalogs: Mapping[str, Catalog]) -> None:
        self._catalogs = dict(catalogs)

    def __call__(self, language: str, msgid: str) -> str:
        catalog = self._catalogs.get(language)
        if catalog is None or language == FALLBACK_LANGUAGE:
            return msgid
        return catalog.gettext(msgid) or msgid


def translate(wording: Wording, language: str, msgid: str) -> str:
    """``msgid`` in ``language``: English as written, else the wording's text (the msgid when
    it has none)."""
    return msgid if language == FALLBACK_LANGUAGE else wording(language, msgid) or msgid


@functools.lru_cache(maxsize=1024)
def translations(msgid: str, wording: Wording = english) -> Mapping[str, str]:
    """``msgid`` in every language of :data:`LANGUAGES`, English as written."""
    return MappingProxyType({lang: translate(wording, lang, msgid) for lang in LANGUAGES})


#: A program's word for points when it has none of its own (translated by the wording).
DEFAULT_POINTS_LABEL = N_("Points")
