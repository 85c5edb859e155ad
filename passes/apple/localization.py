"""``pass.strings`` files, so a pass reads in the phone's language.

Wallet replaces any label, value or change message in ``pass.json`` that is a key of the
``<lang>.lproj/pass.strings`` matching the phone's language. Fixed words ("Tier", "Recent
activity") therefore appear in ``pass.json`` as keys such as ``tier_label``; the program's own
words (its name for points, its terms) are supplied per language by the caller.

Every pass carries every supported language, each ``pass.strings`` holds every key, and a text
missing in one language falls back to English: a phone must never show a bare key.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping

from passes.apple.archive import PassFile
from passes.apple.errors import PassValidationError
from passes.labels import DEFAULT_POINTS_LABEL as DEFAULT_POINTS_LABEL
from passes.labels import LocalizedText as LocalizedText

#: Languages every pass is localized into, in the order texts are normalized to.
SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "id", "th", "ms")
FALLBACK_LANGUAGE = "en"

#: A text that is the same in every language (``str``) or differs by language code.

#: One text per :data:`SUPPORTED_LANGUAGES` entry, in that order.
Texts = tuple[str, ...]

#: The program-specific part of the localization: ``(key, texts)`` pairs, sorted by key.
ProgramStrings = tuple[tuple[str, Texts], ...]

# Keys of the fixed words; pass.json refers to them, pass.strings translates them.
POINTS_LABEL = "points_label"
BALANCE_LABEL = "balance_label"
BALANCE_CHANGE = "balance_change"
MEMBER_LABEL = "member_label"
TIER_LABEL = "tier_label"
TERMS_LABEL = "terms_label"
REDEEM_LABEL = "redeem_label"
HISTORY_LABEL = "history_label"
HISTORY_EMPTY = "history_empty"
SUPPORT_LABEL = "support_label"
MESSAGE_LABEL = "message_label"
MESSAGE_CHANGE = "message_change"

FIXED_STRINGS: Mapping[str, Mapping[str, str]] = {
    BALANCE_LABEL: {"en": "Balance", "id": "Saldo", "th": "ยอดคงเหลือ", "ms": "Baki"},
    MEMBER_LABEL: {"en": "Member", "id": "Anggota", "th": "สมาชิก", "ms": "Ahli"},
    TIER_LABEL: {"en": "Tier", "id": "Tingkat", "th": "ระดับ", "ms": "Tahap"},
    TERMS_LABEL: {
        "en": "Terms and conditions",
        "id": "Syarat dan ketentuan",
        "th": "ข้อกำหนดและเงื่อนไข",
        "ms": "Terma dan syarat",
    },
    REDEEM_LABEL: {
        "en": "How to redeem",
        "id": "Cara menukarkan",
        "th": "วิธีแลกรับรางวัล",
        "ms": "Cara menebus",
    },
    HISTORY_LABEL: {
        "en": "Recent activity",
        "id": "Aktivitas terbaru",
        "th": "กิจกรรมล่าสุด",
        "ms": "Aktiviti terkini",
    },
    HISTORY_EMPTY: {
        "en": "No activity yet.",
        "id": "Belum ada aktivitas.",
        "th": "ยังไม่มีกิจกรรม",
        "ms": "Belum ada aktiviti.",
    },
    SUPPORT_LABEL: {
        "en": "Customer support",
        "id": "Layanan pelanggan",
        "th": "ฝ่ายบริการลูกค้า",
        "ms": "Khidmat pelanggan",
    },
    MESSAGE_LABEL: {"en": "Message", "id": "Pesan", "th": "ข้อความ", "ms": "Mesej"},
    # The notification shows the new message itself.
    MESSAGE_CHANGE: {"en": "%@", "id": "%@", "th": "%@", "ms": "%@"},
}


# {points} is the program's own word for points; %@ is where Wallet puts the new balance.
_BALANCE_CHANGE_TEMPLATES: Mapping[str, str] = {
    "en": "You now have %@ {points}.",
    "id": "Anda sekarang memiliki %@ {points}.",
    "th": "ตอนนี้คุณมี %@ {points}",
    "ms": "Anda kini mempunyai %@ {points}.",
}

_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def localize(field: str, value: LocalizedText, *, max_length: int = 4000) -> Texts:
    """Return ``value`` as one non-empty text per supported language.

    A ``str`` is used for every language; a mapping must have an ``en`` entry, which stands in
    for any language it lacks. Unknown language codes, empty or over-long texts raise
    :class:`PassValidationError` naming ``field``.
    """
    if isinstance(value, str):
        return _localize(field, value, max_length)
    if isinstance(value, Mapping):
        # Every member of a program repeats the same texts, so validated results are cached.
        items = tuple(value.items())
        try:
            return _localize(field, items, max_length)
        except TypeError:  # an unhashable value; the uncached path names the problem
            return _localize.__wrapped__(field, items, max_length)
    raise PassValidationError(field, "must be a string or a mapping of language to string")


@functools.lru_cache(maxsize=1024)
def _localize(field: str, value: str | tuple[tuple[str, str], ...], max_length: int) -> Texts:
    if isinstance(value, str):
        texts = dict.fromkeys(SUPPORTED_LANGUAGES, value)
    else:
        given = dict(value)
        unknown = sorted(str(lang) for lang in given if lang not in SUPPORTED_LANGUAGES)
        if unknown:
            raise PassValidationError(
                field,
                f"unsupported language(s) {', '.join(unknown)}; "
                f"supported: {', '.join(SUPPORTED_LANGUAGES)}",
            )
        if FALLBACK_LANGUAGE not in given:
            raise PassValidationError(field, "needs an English ('en') text to fall back on")
        texts = {lang: given.get(lang, given[FALLBACK_LANGUAGE]) for lang in SUPPORTED_LANGUAGES}
    for lang, text in texts.items():
        where = field if isinstance(value, str) else f"{field}[{lang!r}]"
        if not isinstance(text, str) or not text.strip():
            raise PassValidationError(where, "must be a non-empty string")
        if len(text) > max_length:
            raise PassValidationError(where, f"is longer than {max_length} characters")
        if "\x00" in text:
            raise PassValidationError(where, "contains a NUL character")
    return tuple(texts[lang] for lang in SUPPORTED_LANGUAGES)


@functools.lru_cache(maxsize=256)
def balance_change_texts(points_label: Texts) -> Texts:
    """Return the per-language "You now have %@ <points>." change message."""
    return tuple(
        # A % in the program's word would be read as a format directive by Wallet.
        _BALANCE_CHANGE_TEMPLATES[lang].replace("{points}", label.replace("%", "%%"))
        for lang, label in zip(SUPPORTED_LANGUAGES, points_label, strict=True)
    )


@functools.lru_cache(maxsize=1024)
def content_key(prefix: str, texts: Texts) -> str:
    """Return a ``pass.strings`` key for caller-supplied texts, derived from the texts.

    Wallet only notifies about a changed field when the string in ``pass.json`` changes, so a
    localized message must get a new key whenever any of its translations changes.
    """
    digest = hashlib.sha1("\x1f".join(texts).encode("utf-8"), usedforsecurity=False)
    return f"{prefix}_{digest.hexdigest()[:10]}"


def escape_strings_literal(text: str) -> str:
    """Escape ``text`` for use between double quotes in a ``.strings`` file."""
    return text.translate(_ESCAPES)


def render_strings_file(entries: Iterable[tuple[str, str]]) -> bytes:
    """Return a UTF-8 ``.strings`` file with one ``"key" = "value";`` line per entry."""
    lines = [
        f'"{escape_strings_literal(key)}" = "{escape_strings_literal(value)}";\n'
        for key, value in entries
    ]
    return "".join(lines).encode("utf-8")


def strings_for_language(program_strings: ProgramStrings, language: str) -> dict[str, str]:
    """Return every key and its text in ``language`` (fixed words plus program strings)."""
    index = SUPPORTED_LANGUAGES.index(language)
    entries = {key: texts[language] for key, texts in FIXED_STRINGS.items()}
    entries.update((key, texts[index]) for key, texts in program_strings)
    return entries


@functools.lru_cache(maxsize=512)
def localization_files(program_strings: ProgramStrings) -> tuple[PassFile, ...]:
    """Return the ``<lang>.lproj/pass.strings`` files for ``program_strings``.

    Cached: every member of a program shares the same strings, so the files are rendered and
    hashed once per distinct set of program texts, not once per pass.
    """
    return tuple(
        PassFile.create(
            f"{lang}.lproj/pass.strings",
            render_strings_file(sorted(strings_for_language(program_strings, lang).items())),
        )
        for lang in SUPPORTED_LANGUAGES
    )
