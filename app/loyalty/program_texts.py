"""A program's own wording in each language: its terms and its description.

Stored on the program as ``texts``: ``{"th": {"terms": "...", "description": "..."}, ...}``.
Pages and passes ask for one kind of text in one language and get it in that language, else
in the program's default language, else the program's single-language ``terms`` (kept from
before there were languages), else in any language the program wrote it in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from passes.languages import LANGUAGES

KINDS = ("terms", "description")
MAX_LENGTHS = {"terms": 5000, "description": 1000}


@dataclass(frozen=True)
class ProgramText:
    """One of a program's texts and the language it is written in."""

    text: str
    language: str


def chosen(program: Any, kind: str, language: str) -> ProgramText | None:
    """The program's ``kind`` text ("terms" or "description") for a reader of ``language``,
    with the language it is in (the single-language ``terms`` count as the default
    language's)."""
    texts: Mapping[str, Mapping[str, str]] = program.texts or {}
    for choice in (language, program.default_language):
        found = texts.get(choice, {}).get(kind)
        if found:
            return ProgramText(found, choice)
    if kind == "terms" and program.terms:
        return ProgramText(str(program.terms), program.default_language)
    for choice in LANGUAGES:
        found = texts.get(choice, {}).get(kind)
        if found:
            return ProgramText(found, choice)
    return None


def text_in(program: Any, kind: str, language: str) -> str | None:
    """The text :func:`chosen` picks, without its language."""
    found = chosen(program, kind, language)
    return found.text if found else None


def localized(program: Any, kind: str) -> dict[str, str] | None:
    """The ``kind`` text for every language (as :func:`text_in` picks it), or ``None`` when the
    program has none: a pass's ``LocalizedText``."""
    chosen = {language: text_in(program, kind, language) for language in LANGUAGES}
    if not any(chosen.values()):
        return None
    return {language: text for language, text in chosen.items() if text}


def merged(current: Mapping[str, Mapping[str, str]] | None,
           changes: Mapping[str, Mapping[str, str] | None]) -> dict[str, dict[str, str]]:
    """``current`` with ``changes`` applied: each language given replaces that language's
    texts; a language given as ``None`` (or with no text left) is removed."""
    result = {language: dict(texts) for language, texts in (current or {}).items()}
    for language, texts in changes.items():
        kept = {kind: text for kind, text in (texts or {}).items() if text}
        if kept:
            result[language] = kept
        else:
            result.pop(language, None)
    return result
