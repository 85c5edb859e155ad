"""The pieces Google Wallet loyalty classes and objects share: ids, texts, modules, links.

Validators raise :class:`GooglePayloadError` naming the offending field. Every text a member
reads is localized into :data:`~passes.languages.LANGUAGES`: a localized text is a ``str``
(the same in every language) or a mapping from language code to text with ``en`` required; a
language left out falls back to English.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from passes import checks
from passes.checks import ContentError, set_field
from passes.languages import FALLBACK_LANGUAGE, LANGUAGES
from passes.wording import LocalizedText

MAX_TEXT_MODULES = 10  # Google displays at most ten from the object
MAX_LINKS = 10

# Google issuer ids are decimal numbers (19 digits today).
_ISSUER_ID = re.compile(r"[0-9]{1,30}")
# The part of a class or object id the issuer chooses (Google: alphanumerics, '.', '_', '-').
_ID_SUFFIX = re.compile(r"[A-Za-z0-9._-]{1,200}")
_RESOURCE_ID = re.compile(r"([0-9]{1,30})\.([A-Za-z0-9._-]{1,200})")
_HEX_COLOR = re.compile(r"#?(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_MODULE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LINK_SCHEMES = ("https", "tel", "mailto")


class GooglePayloadError(ContentError):
    """Content Google Wallet would reject or display wrongly.

    ``field`` names the offending field (dotted for nested values, e.g. ``text_modules[2].body``)
    and ``problem`` says what is wrong with it.
    """


# --- validation helpers -------------------------------------------------------------------


def check_text(name: str, value: object, *, max_length: int = 1000) -> str:
    return checks.check_text(name, value, max_length=max_length, error=GooglePayloadError)


def optional_text(name: str, value: object, *, max_length: int = 1000) -> str | None:
    return None if value is None else check_text(name, value, max_length=max_length)


def validate_issuer_id(value: object, name: str = "issuer_id") -> str:
    """Return the issuer id (decimal digits); raise :class:`GooglePayloadError` otherwise."""
    if not isinstance(value, str) or not _ISSUER_ID.fullmatch(value):
        raise GooglePayloadError(name, f"must be the decimal Google issuer id, got {value!r}")
    return value


def validate_id_suffix(value: object, name: str) -> str:
    """Return an issuer-chosen id part (``[A-Za-z0-9._-]``, 1-200 characters) or raise."""
    if not isinstance(value, str) or not _ID_SUFFIX.fullmatch(value):
        raise GooglePayloadError(
            name, f"must be 1-200 characters of A-Z, a-z, 0-9, '.', '_' or '-', got {value!r}"
        )
    return value


def resource_id(issuer_id: str, suffix: str) -> str:
    """The Google class/object id ``<issuer_id>.<suffix>``, both parts validated."""
    return f"{validate_issuer_id(issuer_id)}.{validate_id_suffix(suffix, 'suffix')}"


def split_resource_id(value: object, name: str = "id") -> tuple[str, str]:
    """Return ``(issuer_id, suffix)`` of a ``<issuer_id>.<suffix>`` id; raise if malformed."""
    match = _RESOURCE_ID.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise GooglePayloadError(name, f"must look like '<issuer id>.<suffix>', got {value!r}")
    return match.group(1), match.group(2)


def localized(name: str, value: object, *, max_length: int = 1000) -> dict[str, str]:
    """One text per :data:`LANGUAGES` entry from a :data:`LocalizedText`; English fills gaps."""
    if isinstance(value, str):
        text = check_text(name, value, max_length=max_length)
        return dict.fromkeys(LANGUAGES, text)
    if not isinstance(value, Mapping):
        raise GooglePayloadError(name, "must be a string or a mapping of language to text")
    unknown = sorted(str(k) for k in value if k not in LANGUAGES)
    if unknown:
        raise GooglePayloadError(name, f"unsupported languages {unknown}; use {list(LANGUAGES)}")
    if FALLBACK_LANGUAGE not in value:
        raise GooglePayloadError(name, f"needs the '{FALLBACK_LANGUAGE}' text")
    texts = {lang: check_text(f"{name}.{lang}", value[lang], max_length=max_length)
             for lang in LANGUAGES if lang in value}
    return {lang: texts.get(lang, texts[FALLBACK_LANGUAGE]) for lang in LANGUAGES}


def localized_string(texts: Mapping[str, str]) -> dict[str, Any]:
    """A ``LocalizedString``: English as ``defaultValue``, all languages in ``translatedValues``."""
    return {
        "defaultValue": {"language": FALLBACK_LANGUAGE, "value": texts[FALLBACK_LANGUAGE]},
        "translatedValues": [{"language": lang, "value": texts[lang]} for lang in LANGUAGES],
    }


def public_https_url(name: str, value: object) -> str:
    text = check_text(name, value, max_length=2000)
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in text):
        raise GooglePayloadError(name, f"must be an https URL, got {value!r}")
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        raise GooglePayloadError(name, "must be reachable by Google, not localhost")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return text
    if not address.is_global:
        raise GooglePayloadError(name, "must be reachable by Google, not a private address")
    return text


def hex_color(name: str, value: object) -> str:
    if not isinstance(value, str) or not _HEX_COLOR.fullmatch(value):
        raise GooglePayloadError(name, f"must be a hex colour like '#1A2B3C', got {value!r}")
    digits = value.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return f"#{digits.lower()}"


@dataclass(frozen=True)
class TextModule:
    """A header and body shown on the back of the card (``textModulesData``)."""

    id: str
    header: LocalizedText
    body: LocalizedText
    _header: dict[str, str] = field(init=False, repr=False, compare=False)
    _body: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _MODULE_ID.fullmatch(self.id):
            raise GooglePayloadError("id", "must be 1-64 characters of A-Z, a-z, 0-9, '._-'")
        set_field(self, "_header", localized("header", self.header, max_length=100))
        set_field(self, "_body", localized("body", self.body, max_length=2000))

    def body_json(self) -> dict[str, Any]:
        """The ``TextModuleData`` JSON."""
        return {
            "id": self.id,
            "header": self._header[FALLBACK_LANGUAGE],
            "body": self._body[FALLBACK_LANGUAGE],
            "localizedHeader": localized_string(self._header),
            "localizedBody": localized_string(self._body),
        }


@dataclass(frozen=True)
class Link:
    """A link on the back of the card (``linksModuleData.uris``): https, ``tel:`` or ``mailto:``."""

    id: str
    uri: str
    description: LocalizedText
    _description: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _MODULE_ID.fullmatch(self.id):
            raise GooglePayloadError("id", "must be 1-64 characters of A-Z, a-z, 0-9, '._-'")
        uri = check_text("uri", self.uri, max_length=2000)
        scheme = urlsplit(uri).scheme
        if scheme not in _LINK_SCHEMES or any(c.isspace() for c in uri):
            raise GooglePayloadError("uri", f"must be an {'/'.join(_LINK_SCHEMES)} URI")
        if scheme == "https":
            public_https_url("uri", uri)
        set_field(self, "_description", localized("description", self.description, max_length=100))

    def body_json(self) -> dict[str, Any]:
        """The ``Uri`` JSON."""
        return {
            "id": self.id,
            "uri": self.uri,
            "description": self._description[FALLBACK_LANGUAGE],
            "localizedDescription": localized_string(self._description),
        }


def nested(name: str, items: object, kind: type, limit: int) -> tuple[Any, ...]:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise GooglePayloadError(name, f"must be a sequence of {kind.__name__}")
    if len(items) > limit:
        raise GooglePayloadError(name, f"has more than {limit} entries")
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise GooglePayloadError(f"{name}[{i}]", f"must be a {kind.__name__}")
        if item.id in seen:
            raise GooglePayloadError(f"{name}[{i}].id", f"repeats {item.id!r}")
        seen.add(item.id)
    return tuple(items)
