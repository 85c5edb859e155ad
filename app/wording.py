"""The service's one set of Babel catalogs, for pages and for the wording on passes.

Pages read them through Flask-Babel (``app.web.pagekit``); passes through :func:`pass_wording`,
which loads each language's catalog once per process and hands the ``passes`` library a
:class:`~passes.wording.Wording` (the library stays free of Flask and of file loading).
"""

from __future__ import annotations

import functools
from pathlib import Path

from babel.support import Translations

from passes.languages import FALLBACK_LANGUAGE, LANGUAGES
from passes.wording import CatalogWording

TRANSLATIONS = Path(__file__).resolve().parent / "translations"


@functools.cache
def pass_wording() -> CatalogWording:
    """The fixed wording of passes in every language, from the compiled catalogs (cached)."""
    return CatalogWording({
        lang: Translations.load(str(TRANSLATIONS), [lang])
        for lang in LANGUAGES
        if lang != FALLBACK_LANGUAGE
    })
