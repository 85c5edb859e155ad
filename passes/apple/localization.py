"""``pass.strings`` files, so a pass reads in the phone's language.

Wallet replaces any label, value or change message in ``pass.json`` that is a key of the
``<lang>.lproj/pass.strings`` matching the phone's language. Fixed words ("Tier", "Recent
activity") therefore appear in ``pass.json`` as keys such as ``tier_label``, and their texts come
from the caller's :data:`~passes.wording.Wording` (the Babel catalogs); the program's own words
(its name for points, its terms) are supplied per language by the caller. A text that differs
per card (the recent activity) stays English in ``pass.json`` and is itself the key of its
translations.

Every pass carries every language, each ``pass.strings`` holds every key, and a text
missing in one language falls back to English: a phone must never show a bare key.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping

from passes import feedback_link, points_lines
from passes.apple.archive import PassFile
from passes.apple.errors import PassValidationError
from passes.languages import FALLBACK_LANGUAGE, LANGUAGES
from passes.wording import N_, LocalizedText, Wording, translate

#: One text per :data:`~passes.languages.LANGUAGES` entry, in that order.
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
REWARD_LABEL = "reward_label"
PENDING_LABEL = "pending_label"
EXPIRY_LABEL = "expiry_label"
EXPIRY_CHANGE = "expiry_change"
BADGES_LABEL = "badges_label"
FEEDBACK_LABEL = "feedback_label"
FEEDBACK_CHANGE = "feedback_change"

#: The fixed words: ``pass.strings`` key -> English msgid of the catalogs.
FIXED_WORDS: Mapping[str, str] = {
    BALANCE_LABEL: N_("Balance"),
    MEMBER_LABEL: N_("Member"),
    TIER_LABEL: N_("Tier"),
    TERMS_LABEL: N_("Terms and conditions"),
    REDEEM_LABEL: N_("How to redeem"),
    HISTORY_LABEL: N_("Recent activity"),
    HISTORY_EMPTY: N_("No activity yet."),
    SUPPORT_LABEL: N_("Customer support"),
    MESSAGE_LABEL: N_("Message"),
    REWARD_LABEL: N_("Rewards"),
    PENDING_LABEL: points_lines.PENDING_LABEL,
    EXPIRY_LABEL: points_lines.EXPIRY_LABEL,
    # The challenges the member reached (their names are the program's own words).
    BADGES_LABEL: N_("Badges"),
    FEEDBACK_LABEL: feedback_link.FEEDBACK_LABEL,
    FEEDBACK_CHANGE: feedback_link.FEEDBACK_CHANGE,
}
# The notification shows the new message itself, in every language (so does the reminder
# of expiring points).
_MESSAGE_CHANGE_TEXT = "%@"

# {points} is the program's own word for points; %@ is where Wallet puts the new balance.
BALANCE_CHANGE_TEMPLATE = N_("You now have %@ {points}.")


# What the member can do now, over the strip. {reward} is the reward's name as the program
# wrote it; {points} a number and {points_label} the program's word for points.
REWARD_READY = N_("{reward} ready")
POINTS_TO_REWARD = N_("{points} {points_label} to {reward}")


def format_points(points: int, language: str) -> str:
    """``points`` with the language's digit grouping: dots in Indonesian (``1.500``), commas
    in English, Thai and Malay (``1,500``)."""
    text = f"{points:,}"
    return text.replace(",", ".") if language == "id" else text


def reward_status_texts(
    points_to_go: int, reward: str, ready_reward: str | None, points_label: Texts,
    wording: Wording,
) -> Texts:
    """What the member can do now, per language: ``Es Kopi Susu ready`` when
    ``ready_reward`` is affordable, else ``20 Points to Croissant``."""
    texts = []
    for language, label in zip(LANGUAGES, points_label, strict=True):
        if ready_reward is not None:
            text = translate(wording, language, REWARD_READY).replace("{reward}", ready_reward)
        else:
            text = (translate(wording, language, POINTS_TO_REWARD)
                    .replace("{points_label}", label)
                    .replace("{points}", format_points(points_to_go, language))
                    .replace("{reward}", reward))
        texts.append(text)
    return tuple(texts)


def localize(field: str, value: LocalizedText, *, max_length: int = 4000) -> Texts:
    """Return ``value`` as one non-empty text per language of :data:`LANGUAGES`.

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
        texts = dict.fromkeys(LANGUAGES, value)
    else:
        given = dict(value)
        unknown = sorted(str(lang) for lang in given if lang not in LANGUAGES)
        if unknown:
            raise PassValidationError(
                field,
                f"unsupported language(s) {', '.join(unknown)}; "
                f"supported: {', '.join(LANGUAGES)}",
            )
        if FALLBACK_LANGUAGE not in given:
            raise PassValidationError(field, "needs an English ('en') text to fall back on")
        texts = {lang: given.get(lang, given[FALLBACK_LANGUAGE]) for lang in LANGUAGES}
    for lang, text in texts.items():
        where = field if isinstance(value, str) else f"{field}[{lang!r}]"
        if not isinstance(text, str) or not text.strip():
            raise PassValidationError(where, "must be a non-empty string")
        if len(text) > max_length:
            raise PassValidationError(where, f"is longer than {max_length} characters")
        if "\x00" in text:
            raise PassValidationError(where, "contains a NUL character")
    return tuple(texts[lang] for lang in LANGUAGES)


@functools.lru_cache(maxsize=256)
def balance_change_texts(points_label: Texts, wording: Wording) -> Texts:
    """Return the per-language "You now have %@ <points>." change message."""
    return tuple(
        # A % in the program's word would be read as a format directive by Wallet.
        translate(wording, lang, BALANCE_CHANGE_TEMPLATE).replace(
            "{points}", label.replace("%", "%%")
        )
        for lang, label in zip(LANGUAGES, points_label, strict=True)
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
    # Chained replace (backslash first): str.translate with a dict is ten times slower, and
    # a card's activity lines are escaped on every build.
    return (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )


def render_strings_file(entries: Iterable[tuple[str, str]]) -> bytes:
    """Return a UTF-8 ``.strings`` file with one ``"key" = "value";`` line per entry."""
    lines = [
        f'"{escape_strings_literal(key)}" = "{escape_strings_literal(value)}";\n'
        for key, value in entries
    ]
    return "".join(lines).encode("utf-8")


def strings_for_language(
    program_strings: ProgramStrings, language: str, wording: Wording
) -> dict[str, str]:
    """Return every key and its text in ``language`` (fixed words plus program strings)."""
    index = LANGUAGES.index(language)
    entries = {key: translate(wording, language, msgid) for key, msgid in FIXED_WORDS.items()}
    entries[MESSAGE_CHANGE] = _MESSAGE_CHANGE_TEXT
    entries[EXPIRY_CHANGE] = _MESSAGE_CHANGE_TEXT
    # A text keyed by its own English (the description) needs no line where it reads the same.
    entries.update((key, texts[index]) for key, texts in program_strings if texts[index] != key)
    return entries


@functools.lru_cache(maxsize=512)
def _program_files(program_strings: ProgramStrings, wording: Wording) -> tuple[bytes, ...]:
    return tuple(
        render_strings_file(sorted(strings_for_language(program_strings, lang, wording).items()))
        for lang in LANGUAGES
    )


@functools.lru_cache(maxsize=512)
def localization_files(program_strings: ProgramStrings, wording: Wording) -> tuple[PassFile, ...]:
    """Return the ``<lang>.lproj/pass.strings`` files for ``program_strings``.

    Cached: every member of a program shares the same strings, so the files are rendered and
    hashed once per distinct set of program texts and wording, not once per pass.
    """
    return tuple(
        PassFile.create(f"{lang}.lproj/pass.strings", data)
        for lang, data in zip(LANGUAGES, _program_files(program_strings, wording), strict=True)
    )


@functools.lru_cache(maxsize=512)
def _english_file(program_strings: ProgramStrings, wording: Wording) -> tuple[PassFile, ...]:
    files = localization_files(program_strings, wording)
    return (files[LANGUAGES.index(FALLBACK_LANGUAGE)],)


def card_localization_files(
    program_strings: ProgramStrings, wording: Wording, card_strings: ProgramStrings
) -> tuple[tuple[PassFile, ...], tuple[PassFile, ...]]:
    """Return ``(shared, own)``: the ``pass.strings`` files shared with the program's other
    cards (cached, as :func:`localization_files`), and those made for this card alone.

    ``card_strings`` are the card's own ``(key, texts)`` pairs, keyed by their English text:
    English needs no entry, so only the other languages' files are made per card. Without
    them every file is shared.
    """
    if not card_strings:
        return localization_files(program_strings, wording), ()
    program_files = _program_files(program_strings, wording)
    keys = [f'"{escape_strings_literal(key)}" = "' for key, _ in card_strings]  # once, not per file
    own = tuple(
        PassFile.create(
            f"{lang}.lproj/pass.strings",
            program_files[index]
            + "".join([
                f'{key}{escape_strings_literal(texts[index])}";\n'
                for key, (_, texts) in zip(keys, card_strings, strict=True)
            ]).encode("utf-8"),
        )
        for index, lang in enumerate(LANGUAGES)
        if lang != FALLBACK_LANGUAGE
    )
    return _english_file(program_strings, wording), own
