"""Google Wallet loyalty classes and objects as REST bodies, built from validated content.

:class:`LoyaltyClassContent` (one per program) and :class:`LoyaltyObjectContent` (one per card)
check themselves when constructed and raise :class:`GooglePayloadError` naming the offending
field, so content that exists turns into a body the ``walletobjects`` v1 API accepts:

* :func:`loyalty_class_body` is the ``loyaltyClass`` insert/patch body,
* :func:`loyalty_object_body` is the full ``loyaltyObject`` insert/update body,
* :func:`loyalty_object_patch_body` is a ``loyaltyObject`` PATCH body holding only the parts a
  card changes every day (balance, tier, barcode, state) plus the notification preference.

Every text a member reads is localized into :data:`LANGUAGES`. A localized text is a ``str``
(the same in every language) or a mapping from language code to text with ``en`` required;
a language left out falls back to English.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from passes.labels import DEFAULT_POINTS_LABEL as DEFAULT_POINTS_LABEL
from passes.labels import LocalizedText as LocalizedText

#: Languages every member-facing text is translated into, as BCP 47 tags.
LANGUAGES: tuple[str, ...] = ("en", "id", "th", "ms")
FALLBACK_LANGUAGE = "en"

#: A text that is the same in every language (``str``) or differs by language code.

ObjectState = Literal["ACTIVE", "INACTIVE"]
MultipleDevicesAndHolders = Literal["MULTIPLE_HOLDERS", "ONE_USER_ALL_DEVICES",
                                    "ONE_USER_ONE_DEVICE"]

#: ``notifyPreference`` values. The preference lives on the object, is ephemeral, and must be
#: sent with every PATCH/UPDATE that should trigger a field-update notification.
NOTIFY_ON_UPDATE = "NOTIFY_ON_UPDATE"
NOTIFY_UNSPECIFIED = "NOTIFICATION_SETTINGS_FOR_UPDATES_UNSPECIFIED"

DEFAULT_TIER_LABEL: Mapping[str, str] = {"en": "Tier", "id": "Tingkat", "th": "ระดับ",
                                         "ms": "Tahap"}
DEFAULT_ACCOUNT_NAME_LABEL: Mapping[str, str] = {"en": "Member", "id": "Anggota",
                                                 "th": "สมาชิก", "ms": "Ahli"}
DEFAULT_ACCOUNT_ID_LABEL: Mapping[str, str] = {"en": "Member ID", "id": "ID Anggota",
                                               "th": "รหัสสมาชิก", "ms": "ID Ahli"}

MAX_TEXT_MODULES = 10  # Google displays at most ten from the object
MAX_LINKS = 10
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # LoyaltyPointsBalance.int is an int32

# Google issuer ids are decimal numbers (19 digits today).
_ISSUER_ID = re.compile(r"[0-9]{1,30}")
# The part of a class or object id the issuer chooses (Google: alphanumerics, '.', '_', '-').
_ID_SUFFIX = re.compile(r"[A-Za-z0-9._-]{1,200}")
_RESOURCE_ID = re.compile(r"([0-9]{1,30})\.([A-Za-z0-9._-]{1,200})")
_HEX_COLOR = re.compile(r"#?(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_MODULE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LINK_SCHEMES = ("https", "tel", "mailto")


class GooglePayloadError(ValueError):
    """Content Google Wallet would reject or display wrongly.

    ``field`` names the offending field (dotted for nested values, e.g. ``text_modules[2].body``)
    and ``problem`` says what is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# --- validation helpers -------------------------------------------------------------------


def _text(name: str, value: object, *, max_length: int = 1000) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GooglePayloadError(name, "must be a non-empty string")
    if len(value) > max_length:
        raise GooglePayloadError(name, f"is longer than {max_length} characters")
    if "\x00" in value:
        raise GooglePayloadError(name, "contains a NUL character")
    return value


def _optional_text(name: str, value: object, *, max_length: int = 1000) -> str | None:
    return None if value is None else _text(name, value, max_length=max_length)


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
        text = _text(name, value, max_length=max_length)
        return dict.fromkeys(LANGUAGES, text)
    if not isinstance(value, Mapping):
        raise GooglePayloadError(name, "must be a string or a mapping of language to text")
    unknown = sorted(str(k) for k in value if k not in LANGUAGES)
    if unknown:
        raise GooglePayloadError(name, f"unsupported languages {unknown}; use {list(LANGUAGES)}")
    if FALLBACK_LANGUAGE not in value:
        raise GooglePayloadError(name, f"needs the '{FALLBACK_LANGUAGE}' text")
    texts = {lang: _text(f"{name}.{lang}", value[lang], max_length=max_length)
             for lang in LANGUAGES if lang in value}
    return {lang: texts.get(lang, texts[FALLBACK_LANGUAGE]) for lang in LANGUAGES}


def localized_string(texts: Mapping[str, str]) -> dict[str, Any]:
    """A ``LocalizedString``: English as ``defaultValue``, all languages in ``translatedValues``."""
    return {
        "defaultValue": {"language": FALLBACK_LANGUAGE, "value": texts[FALLBACK_LANGUAGE]},
        "translatedValues": [{"language": lang, "value": texts[lang]} for lang in LANGUAGES],
    }


def _public_https_url(name: str, value: object) -> str:
    text = _text(name, value, max_length=2000)
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


def _hex_color(name: str, value: object) -> str:
    if not isinstance(value, str) or not _HEX_COLOR.fullmatch(value):
        raise GooglePayloadError(name, f"must be a hex colour like '#1A2B3C', got {value!r}")
    digits = value.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return f"#{digits.lower()}"


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)  # normalizing a frozen dataclass in __post_init__


# --- content ------------------------------------------------------------------------------


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
        _set(self, "_header", localized("header", self.header, max_length=100))
        _set(self, "_body", localized("body", self.body, max_length=2000))

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
        uri = _text("uri", self.uri, max_length=2000)
        scheme = urlsplit(uri).scheme
        if scheme not in _LINK_SCHEMES or any(c.isspace() for c in uri):
            raise GooglePayloadError("uri", f"must be an {'/'.join(_LINK_SCHEMES)} URI")
        if scheme == "https":
            _public_https_url("uri", uri)
        _set(self, "_description", localized("description", self.description, max_length=100))

    def body_json(self) -> dict[str, Any]:
        """The ``Uri`` JSON."""
        return {
            "id": self.id,
            "uri": self.uri,
            "description": self._description[FALLBACK_LANGUAGE],
            "localizedDescription": localized_string(self._description),
        }


def _nested(name: str, items: object, kind: type, limit: int) -> tuple[Any, ...]:
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


@dataclass(frozen=True)
class LoyaltyClassContent:
    """A loyalty program as a Google Wallet ``loyaltyClass`` (one class per program).

    The class id is ``<issuer_id>.<program_slug>``. ``logo_url`` must be a public https URL
    Google can fetch. ``callback_url`` (https) makes Google call back on every save/delete of
    a card of this class. Names and labels are :data:`LocalizedText`.
    """

    issuer_id: str
    program_slug: str
    issuer_name: LocalizedText
    program_name: LocalizedText
    logo_url: str
    background_color: str
    logo_description: LocalizedText | None = None
    country_code: str | None = None
    multiple_devices_and_holders: MultipleDevicesAndHolders = "ONE_USER_ALL_DEVICES"
    account_name_label: LocalizedText = field(
        default_factory=lambda: dict(DEFAULT_ACCOUNT_NAME_LABEL))
    account_id_label: LocalizedText = field(default_factory=lambda: dict(DEFAULT_ACCOUNT_ID_LABEL))
    callback_url: str | None = None
    _texts: dict[str, dict[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_issuer_id(self.issuer_id)
        validate_id_suffix(self.program_slug, "program_slug")
        texts = {
            "issuer_name": localized("issuer_name", self.issuer_name, max_length=100),
            "program_name": localized("program_name", self.program_name, max_length=100),
            "account_name_label": localized("account_name_label", self.account_name_label,
                                            max_length=40),
            "account_id_label": localized("account_id_label", self.account_id_label,
                                          max_length=40),
        }
        texts["logo_description"] = (
            localized("logo_description", self.logo_description, max_length=200)
            if self.logo_description is not None else texts["program_name"]
        )
        _set(self, "_texts", texts)
        _public_https_url("logo_url", self.logo_url)
        _set(self, "background_color", _hex_color("background_color", self.background_color))
        if self.country_code is not None:
            if not isinstance(self.country_code, str) or not _COUNTRY.fullmatch(self.country_code):
                raise GooglePayloadError("country_code", "must be an ISO 3166-1 alpha-2 code")
            _set(self, "country_code", self.country_code.upper())
        if self.multiple_devices_and_holders not in (
            "MULTIPLE_HOLDERS", "ONE_USER_ALL_DEVICES", "ONE_USER_ONE_DEVICE"
        ):
            raise GooglePayloadError("multiple_devices_and_holders",
                                     "must be MULTIPLE_HOLDERS, ONE_USER_ALL_DEVICES or "
                                     "ONE_USER_ONE_DEVICE")
        if self.callback_url is not None:
            _public_https_url("callback_url", self.callback_url)

    @property
    def class_id(self) -> str:
        """``<issuer_id>.<program_slug>``."""
        return f"{self.issuer_id}.{self.program_slug}"


@dataclass(frozen=True)
class LoyaltyObjectContent:
    """One member's card as a Google Wallet ``loyaltyObject``.

    The object id is ``<issuer_id>.<serial>``; ``class_id`` must belong to the same issuer.
    The front shows ``balance`` under ``points_label`` and ``tier`` (if any) under
    ``tier_label``; the QR code encodes ``barcode_value`` (the redemption code) with
    ``barcode_alternate_text`` printed below it. ``notify`` asks Google to notify the member
    of this update (``notifyPreference``).
    """

    issuer_id: str
    serial: str
    class_id: str
    balance: int
    barcode_value: str
    account_id: str | None = None
    account_name: str | None = None
    points_label: LocalizedText = field(default_factory=lambda: dict(DEFAULT_POINTS_LABEL))
    tier: str | None = None
    tier_label: LocalizedText = field(default_factory=lambda: dict(DEFAULT_TIER_LABEL))
    barcode_alternate_text: str | None = None
    # With a TOTP secret the card shows Google's rotating barcode instead: ``barcode_value``
    # is then the value pattern (with ``{totp_value_0}``), the phone fills in the value.
    rotating_totp_secret: bytes | None = field(default=None, repr=False)
    rotating_period_seconds: int = 30
    rotating_digits: int = 8
    state: ObjectState = "ACTIVE"
    text_modules: Sequence[TextModule] = ()
    links: Sequence[Link] = ()
    notify: bool = False
    _points_label: dict[str, str] = field(init=False, repr=False, compare=False)
    _tier_label: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_issuer_id(self.issuer_id)
        validate_id_suffix(self.serial, "serial")
        class_issuer, _ = split_resource_id(self.class_id, "class_id")
        if class_issuer != self.issuer_id:
            raise GooglePayloadError("class_id", "belongs to another issuer")
        if isinstance(self.balance, bool) or not isinstance(self.balance, int):
            raise GooglePayloadError("balance", "must be an integer")
        if not INT32_MIN <= self.balance <= INT32_MAX:
            raise GooglePayloadError("balance", "must fit in a signed 32-bit integer")
        _text("barcode_value", self.barcode_value, max_length=1000)
        _optional_text("account_id", self.account_id, max_length=100)
        _optional_text("account_name", self.account_name, max_length=100)
        _optional_text("tier", self.tier, max_length=40)
        _optional_text("barcode_alternate_text", self.barcode_alternate_text, max_length=100)
        _set(self, "_points_label", localized("points_label", self.points_label, max_length=40))
        _set(self, "_tier_label", localized("tier_label", self.tier_label, max_length=40))
        if self.state not in ("ACTIVE", "INACTIVE"):
            raise GooglePayloadError("state", "must be 'ACTIVE' or 'INACTIVE'")
        if not isinstance(self.notify, bool):
            raise GooglePayloadError("notify", "must be True or False")
        _set(self, "text_modules",
             _nested("text_modules", self.text_modules, TextModule, MAX_TEXT_MODULES))
        _set(self, "links", _nested("links", self.links, Link, MAX_LINKS))

    @property
    def object_id(self) -> str:
        """``<issuer_id>.<serial>``."""
        return f"{self.issuer_id}.{self.serial}"

    def _loyalty_points(self) -> dict[str, Any]:
        return {
            "label": self._points_label[FALLBACK_LANGUAGE],
            "localizedLabel": localized_string(self._points_label),
            "balance": {"int": self.balance},
        }

    def _secondary_points(self) -> dict[str, Any] | None:
        if self.tier is None:
            return None
        return {
            "label": self._tier_label[FALLBACK_LANGUAGE],
            "localizedLabel": localized_string(self._tier_label),
            "balance": {"string": self.tier},
        }

    def _barcode_field(self) -> str:
        return "rotatingBarcode" if self.rotating_totp_secret is not None else "barcode"

    def _barcode(self) -> dict[str, Any]:
        if self.rotating_totp_secret is not None:
            rotating: dict[str, Any] = {
                "type": "QR_CODE",
                "valuePattern": self.barcode_value,
                "totpDetails": {
                    "periodMillis": str(self.rotating_period_seconds * 1000),
                    "algorithm": "TOTP_SHA1",
                    "parameters": [{"key": self.rotating_totp_secret.hex(),
                                    "valueLength": self.rotating_digits}],
                },
            }
            if self.barcode_alternate_text is not None:
                rotating["alternateText"] = self.barcode_alternate_text
            return rotating
        barcode: dict[str, Any] = {"type": "QR_CODE", "value": self.barcode_value}
        if self.barcode_alternate_text is not None:
            barcode["alternateText"] = self.barcode_alternate_text
        return barcode

    def _notify_preference(self) -> str:
        return NOTIFY_ON_UPDATE if self.notify else NOTIFY_UNSPECIFIED


# --- bodies -------------------------------------------------------------------------------


def loyalty_class_body(content: LoyaltyClassContent) -> dict[str, Any]:
    """The ``loyaltyClass`` body for insert, update or patch.

    ``reviewStatus`` is always ``UNDER_REVIEW``: Google approves such a class at once, and an
    approved class being updated must keep saying ``UNDER_REVIEW``.
    """
    texts = content._texts
    body: dict[str, Any] = {
        "id": content.class_id,
        "issuerName": texts["issuer_name"][FALLBACK_LANGUAGE],
        "localizedIssuerName": localized_string(texts["issuer_name"]),
        "programName": texts["program_name"][FALLBACK_LANGUAGE],
        "localizedProgramName": localized_string(texts["program_name"]),
        "programLogo": {
            "sourceUri": {"uri": content.logo_url},
            "contentDescription": localized_string(texts["logo_description"]),
        },
        "hexBackgroundColor": content.background_color,
        "reviewStatus": "UNDER_REVIEW",
        "multipleDevicesAndHoldersAllowedStatus": content.multiple_devices_and_holders,
        "accountNameLabel": texts["account_name_label"][FALLBACK_LANGUAGE],
        "localizedAccountNameLabel": localized_string(texts["account_name_label"]),
        "accountIdLabel": texts["account_id_label"][FALLBACK_LANGUAGE],
        "localizedAccountIdLabel": localized_string(texts["account_id_label"]),
    }
    if content.country_code is not None:
        body["countryCode"] = content.country_code
    if content.callback_url is not None:
        body["callbackOptions"] = {"url": content.callback_url}
    return body


def loyalty_object_body(content: LoyaltyObjectContent) -> dict[str, Any]:
    """The full ``loyaltyObject`` body for insert or update (everything on the card)."""
    body: dict[str, Any] = {
        "id": content.object_id,
        "classId": content.class_id,
        "state": content.state,
        "loyaltyPoints": content._loyalty_points(),
        content._barcode_field(): content._barcode(),
        "notifyPreference": content._notify_preference(),
    }
    if content.account_id is not None:
        body["accountId"] = content.account_id
    if content.account_name is not None:
        body["accountName"] = content.account_name
    secondary = content._secondary_points()
    if secondary is not None:
        body["secondaryLoyaltyPoints"] = secondary
    if content.text_modules:
        body["textModulesData"] = [module.body_json() for module in content.text_modules]
    if content.links:
        body["linksModuleData"] = {"uris": [link.body_json() for link in content.links]}
    return body


def loyalty_object_patch_body(
    current: LoyaltyObjectContent, previous: LoyaltyObjectContent | None = None
) -> dict[str, Any]:
    """A ``loyaltyObject`` PATCH body with only what changed since ``previous``.

    Considered: balance and its label (``loyaltyPoints``), tier (``secondaryLoyaltyPoints``),
    barcode, and state; without ``previous`` all four are sent (except a tier the card does
    not have). ``notifyPreference`` is always sent, because Google forgets it after each
    request. A tier removed since ``previous`` is sent as ``null``, which PATCH treats as
    "delete this field". Other fields (texts, links, names) need a full update with
    :func:`loyalty_object_body`.
    """
    if previous is not None and previous.object_id != current.object_id:
        raise GooglePayloadError("previous", "describes another object")
    body: dict[str, Any] = {}
    if previous is None or previous._loyalty_points() != current._loyalty_points():
        body["loyaltyPoints"] = current._loyalty_points()
    if previous is None or previous._secondary_points() != current._secondary_points():
        secondary = current._secondary_points()
        if secondary is not None or previous is not None:
            body["secondaryLoyaltyPoints"] = secondary
    if previous is None or previous._barcode() != current._barcode():
        body[current._barcode_field()] = current._barcode()
    if previous is None or previous.state != current.state:
        body["state"] = current.state
    body["notifyPreference"] = current._notify_preference()
    return body
