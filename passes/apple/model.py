"""The content of an Apple Wallet loyalty card, as validated, immutable dataclasses.

Each dataclass checks itself when constructed and raises :class:`PassValidationError` naming
the offending field, so a content object that exists is one Wallet will accept.
:meth:`StoreCardContent.pass_json` turns it into the ``pass.json`` of a ``storeCard``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from passes.apple.errors import PassValidationError
from passes.apple.localization import (
    BALANCE_CHANGE,
    BALANCE_LABEL,
    DEFAULT_POINTS_LABEL,
    HISTORY_EMPTY,
    HISTORY_LABEL,
    MEMBER_LABEL,
    MESSAGE_CHANGE,
    MESSAGE_LABEL,
    POINTS_LABEL,
    REDEEM_LABEL,
    SUPPORT_LABEL,
    TERMS_LABEL,
    TIER_LABEL,
    LocalizedText,
    ProgramStrings,
    balance_change_texts,
    content_key,
    localize,
)

MAX_LOCATIONS = 10  # Wallet ignores every location past the tenth
MAX_LEDGER_ENTRIES = 50
PROGRESS_STEPS = 20
BARCODE_FORMAT_QR = "PKBarcodeFormatQR"
BARCODE_MESSAGE_ENCODING = "iso-8859-1"

BalancePlacement = Literal["header", "primary", "both"]

_HEX_COLOR = re.compile(r"#?(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_PASS_TYPE_ID = re.compile(r"pass(?:\.[A-Za-z0-9-]+)+")
_TEAM_ID = re.compile(r"[A-Z0-9]{10}")
# The serial number ends up in web-service URL paths, so keep it to unreserved characters.
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
# The token travels in an "Authorization: ApplePass <token>" header.
_AUTH_TOKEN = re.compile(r"[\x21-\x7e]{16,}")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def _text(name: str, value: object, *, max_length: int, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PassValidationError(name, "must be a non-empty string")
    if len(value) > max_length:
        raise PassValidationError(name, f"is longer than {max_length} characters")
    if "\x00" in value:
        raise PassValidationError(name, "contains a NUL character")
    return value


def _integer(name: str, value: object, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PassValidationError(name, f"must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise PassValidationError(name, f"must be between {minimum} and {maximum}")
    return value


def _number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PassValidationError(name, "must be a number")
    if not low <= value <= high:  # also rejects NaN
        raise PassValidationError(name, f"must be between {low:g} and {high:g}")
    return float(value)


def parse_hex_color(name: str, value: object) -> tuple[int, int, int]:
    """Return ``(r, g, b)`` for ``#RRGGBB`` or ``#RGB`` (``#`` optional); raise naming ``name``."""
    if not isinstance(value, str) or not _HEX_COLOR.fullmatch(value):
        raise PassValidationError(name, f"must be a hex colour like '#1A2B3C', got {value!r}")
    digits = value.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def css_rgb(rgb: tuple[int, int, int]) -> str:
    """Return the ``rgb(r, g, b)`` notation pass.json uses for colours."""
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)  # normalizing a frozen dataclass in __post_init__


# Thai writes these vowels before the consonant they follow in speech; an initial is the
# consonant, so they are skipped.
_THAI_LEADING_VOWELS = frozenset("เแโใไ")


def _initials(name: str) -> str:
    letters = []
    for word in name.split():
        chars = [c for c in word if c.isalnum() and c not in _THAI_LEADING_VOWELS]
        if chars:
            letters.append(chars[0].upper())
        if len(letters) == 2:
            break
    return "".join(letters) or "?"


@dataclass(frozen=True)
class Brand:
    """How a program looks: its name, colours and optional logo.

    ``logo_text`` is shown next to the logo (defaults to ``program_name``); ``initials`` are
    drawn on the icon and logo when there is no ``logo_image`` (default: from the name).
    ``logo_image`` is PNG, JPEG or GIF bytes.
    """

    program_name: str
    background_color: str = "#1F2937"
    foreground_color: str = "#FFFFFF"
    label_color: str = "#D1D5DB"
    logo_text: str | None = None
    logo_image: bytes | None = field(default=None, repr=False)
    initials: str | None = None
    background_rgb: tuple[int, int, int] = field(init=False, repr=False, compare=False)
    foreground_rgb: tuple[int, int, int] = field(init=False, repr=False, compare=False)
    label_rgb: tuple[int, int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _text("brand.program_name", self.program_name, max_length=64)
        _set(
            self, "background_rgb", parse_hex_color("brand.background_color", self.background_color)
        )
        _set(
            self, "foreground_rgb", parse_hex_color("brand.foreground_color", self.foreground_color)
        )
        _set(self, "label_rgb", parse_hex_color("brand.label_color", self.label_color))
        _text("brand.logo_text", self.logo_text, max_length=64, optional=True)
        if self.initials is None:
            _set(self, "initials", _initials(self.program_name))
        else:
            _text("brand.initials", self.initials, max_length=3)
        if self.logo_image is not None:
            if not isinstance(self.logo_image, bytes):
                raise PassValidationError("brand.logo_image", "must be bytes")
            if not self.logo_image.startswith(_IMAGE_MAGIC):
                raise PassValidationError("brand.logo_image", "must be a PNG, JPEG or GIF image")

    @property
    def display_logo_text(self) -> str:
        """The text Wallet shows beside the logo."""
        return self.logo_text if self.logo_text is not None else self.program_name


@dataclass(frozen=True)
class RewardProgress:
    """Progress toward the next reward, drawn on the strip image as a bar and text.

    The strip shows progress in :data:`PROGRESS_STEPS` steps (5% each), not the exact points
    (the balance field shows those): a program then needs at most 21 strips per reward, which
    stay cached, instead of rendering a new strip for every balance.
    """

    points: int
    target: int
    reward_name: str

    def __post_init__(self) -> None:
        _integer("progress.points", self.points, minimum=-(10**12), maximum=10**12)
        _integer("progress.target", self.target, minimum=1, maximum=10**12)
        _text("progress.reward_name", self.reward_name, max_length=60)

    @property
    def fraction(self) -> float:
        """How far toward the reward, clamped to 0..1."""
        return min(max(self.points / self.target, 0.0), 1.0)

    @property
    def step(self) -> int:
        """Progress in whole steps of ``1 / PROGRESS_STEPS``, rounded down (0..PROGRESS_STEPS)."""
        return int(self.fraction * PROGRESS_STEPS)

    @property
    def drawn(self) -> tuple[int, int, str]:
        """What the strip depends on: two progresses with equal ``drawn`` share a strip."""
        return (self.step, self.target, self.reward_name)


@dataclass(frozen=True)
class Barcode:
    """The member's QR code. ``message`` must be ISO-8859-1 text (Wallet's encoding)."""

    message: str
    alt_text: str | None = None

    def __post_init__(self) -> None:
        _text("barcode.message", self.message, max_length=2000)
        try:
            self.message.encode(BARCODE_MESSAGE_ENCODING)
        except UnicodeEncodeError:
            raise PassValidationError(
                "barcode.message", "must be encodable as ISO-8859-1 (Latin-1)"
            ) from None
        _text("barcode.alt_text", self.alt_text, max_length=80, optional=True)

    def as_dict(self) -> dict[str, str]:
        """The barcode as a ``barcodes`` entry (also the legacy ``barcode`` value)."""
        entry = {
            "format": BARCODE_FORMAT_QR,
            "message": self.message,
            "messageEncoding": BARCODE_MESSAGE_ENCODING,
        }
        if self.alt_text is not None:
            entry["altText"] = self.alt_text
        return entry


@dataclass(frozen=True)
class Location:
    """A place where the pass appears on the lock screen, with optional ``relevant_text``."""

    latitude: float
    longitude: float
    relevant_text: str | None = None
    altitude: float | None = None

    def __post_init__(self) -> None:
        _number("location.latitude", self.latitude, -90.0, 90.0)
        _number("location.longitude", self.longitude, -180.0, 180.0)
        if self.altitude is not None:
            _number("location.altitude", self.altitude, -1000.0, 100000.0)
        _text("location.relevant_text", self.relevant_text, max_length=200, optional=True)

    def as_dict(self) -> dict[str, Any]:
        """The location as a ``locations`` entry."""
        entry: dict[str, Any] = {"latitude": self.latitude, "longitude": self.longitude}
        if self.altitude is not None:
            entry["altitude"] = self.altitude
        if self.relevant_text is not None:
            entry["relevantText"] = self.relevant_text
        return entry


@dataclass(frozen=True)
class LedgerEntry:
    """One line of the member's recent activity: when, what, and signed points."""

    when: dt.date
    description: str
    points: int
    line: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.when, dt.date):
            raise PassValidationError("ledger.when", "must be a date or datetime")
        _text("ledger.description", self.description, max_length=120)
        _integer("ledger.points", self.points, minimum=-(10**12), maximum=10**12)
        day = self.when.date() if isinstance(self.when, dt.datetime) else self.when
        description = " ".join(self.description.split())
        _set(self, "line", f"{day.isoformat()} · {description} · {self.points:+d}")

    def render(self) -> str:
        """The entry as one line of the back of the pass, e.g. ``2024-05-01 · Latte · +10``."""
        return self.line


def _ledger(value: object) -> tuple[LedgerEntry, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise PassValidationError("ledger", "must be a sequence of entries")
    if len(value) > MAX_LEDGER_ENTRIES:
        raise PassValidationError("ledger", f"has more than {MAX_LEDGER_ENTRIES} entries")
    entries = []
    for i, item in enumerate(value):
        if isinstance(item, LedgerEntry):
            entries.append(item)
        elif isinstance(item, tuple) and len(item) == 3:
            try:
                entries.append(LedgerEntry(*item))
            except PassValidationError as exc:
                raise PassValidationError(
                    exc.field.replace("ledger", f"ledger[{i}]", 1), exc.problem
                ) from None
        else:
            raise PassValidationError(
                f"ledger[{i}]", "must be a LedgerEntry or a (date, description, points) tuple"
            )
    return tuple(entries)


def _locations(value: object) -> tuple[Location, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise PassValidationError("locations", "must be a sequence of Location")
    if len(value) > MAX_LOCATIONS:
        raise PassValidationError(
            "locations", f"has {len(value)} entries; Wallet allows at most {MAX_LOCATIONS}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, Location):
            raise PassValidationError(f"locations[{i}]", "must be a Location")
    return tuple(value)


def _https_url(name: str, value: str, *, allow_http: bool) -> None:
    _text(name, value, max_length=2000)
    parts = urlsplit(value)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise PassValidationError(
            name,
            "must be an absolute https:// URL"
            + (" (or http://)" if allow_http else " (Wallet refuses plain http)"),
        )
    if parts.query or parts.fragment:
        raise PassValidationError(name, "must not have a query string or fragment")


@dataclass(frozen=True)
class StoreCardContent:
    """Everything on one member's loyalty card (an Apple Wallet ``storeCard``).

    Identity: ``pass_type_identifier`` and ``team_identifier`` must match the signing
    certificate; ``serial_number`` is unique per card within the pass type.
    Front: ``balance`` (header field, primary field or both, per ``balance_placement``, under
    the program's ``points_label``), ``member_name`` (secondary) and ``tier`` (auxiliary).
    Back: ``marketer_message``, ``ledger`` (newest first), ``how_to_redeem``,
    ``support_contact`` and ``terms``. ``points_label``, ``terms``, ``how_to_redeem`` and
    ``marketer_message`` are :data:`LocalizedText`: a ``str`` for every language, or a mapping
    from language code (``en`` required) to text.
    Updates: ``web_service_url`` + ``authentication_token`` (both or neither; https unless
    ``allow_insecure_web_service``). ``expiration_date`` must be timezone-aware.
    """

    pass_type_identifier: str
    team_identifier: str
    serial_number: str
    organization_name: str
    description: str
    brand: Brand
    balance: int
    barcode: Barcode
    member_name: str | None = None
    tier: str | None = None
    points_label: LocalizedText = field(default_factory=lambda: dict(DEFAULT_POINTS_LABEL))
    terms: LocalizedText | None = None
    how_to_redeem: LocalizedText | None = None
    ledger: Sequence[LedgerEntry | tuple[dt.date, str, int]] = ()
    support_contact: str | None = None
    marketer_message: LocalizedText | None = None
    web_service_url: str | None = None
    authentication_token: str | None = field(default=None, repr=False)
    allow_insecure_web_service: bool = False
    sharing_prohibited: bool = False
    voided: bool = False
    expiration_date: dt.datetime | None = None
    locations: Sequence[Location] = ()
    balance_placement: BalancePlacement = "header"
    program_strings: ProgramStrings = field(init=False, repr=False, compare=False)
    _values: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_identity()
        _integer("balance", self.balance, minimum=-(10**12), maximum=10**12)
        if not isinstance(self.brand, Brand):
            raise PassValidationError("brand", "must be a Brand")
        if not isinstance(self.barcode, Barcode):
            raise PassValidationError("barcode", "must be a Barcode")
        _text("member_name", self.member_name, max_length=100, optional=True)
        _text("tier", self.tier, max_length=40, optional=True)
        _text("support_contact", self.support_contact, max_length=300, optional=True)
        _set(self, "ledger", _ledger(self.ledger))
        _set(self, "locations", _locations(self.locations))
        if self.balance_placement not in ("header", "primary", "both"):
            raise PassValidationError("balance_placement", "must be 'header', 'primary' or 'both'")
        for name in ("allow_insecure_web_service", "sharing_prohibited", "voided"):
            if not isinstance(getattr(self, name), bool):
                raise PassValidationError(name, "must be True or False")
        self._check_web_service()
        if self.expiration_date is not None and (
            not isinstance(self.expiration_date, dt.datetime)
            or self.expiration_date.utcoffset() is None
        ):
            raise PassValidationError(
                "expiration_date", "must be a timezone-aware datetime (Wallet needs the offset)"
            )
        self._localize()

    def _check_identity(self) -> None:
        if not isinstance(self.pass_type_identifier, str) or not _PASS_TYPE_ID.fullmatch(
            self.pass_type_identifier
        ):
            raise PassValidationError(
                "pass_type_identifier", "must look like 'pass.com.example.loyalty'"
            )
        if not isinstance(self.team_identifier, str) or not _TEAM_ID.fullmatch(
            self.team_identifier
        ):
            raise PassValidationError(
                "team_identifier", "must be Apple's 10-character team id, e.g. 'A1B2C3D4E5'"
            )
        if not isinstance(self.serial_number, str) or not _SERIAL.fullmatch(self.serial_number):
            raise PassValidationError(
                "serial_number",
                "must be 1-128 characters of letters, digits and . _ ~ - "
                "(it appears in web-service URLs)",
            )
        _text("organization_name", self.organization_name, max_length=200)
        _text("description", self.description, max_length=500)

    def _check_web_service(self) -> None:
        url, token = self.web_service_url, self.authentication_token
        if url is None and token is None:
            return
        if url is None:
            raise PassValidationError("web_service_url", "is required with authentication_token")
        if token is None:
            raise PassValidationError("authentication_token", "is required with web_service_url")
        _https_url("web_service_url", url, allow_http=self.allow_insecure_web_service)
        if not isinstance(token, str) or not _AUTH_TOKEN.fullmatch(token):
            raise PassValidationError(
                "authentication_token",
                "must be at least 16 printable ASCII characters without spaces",
            )

    def _localize(self) -> None:
        points = localize("points_label", self.points_label, max_length=24)
        strings = {POINTS_LABEL: points, BALANCE_CHANGE: balance_change_texts(points)}
        values: dict[str, str] = {}
        for name, prefix in (
            ("terms", "terms_text"),
            ("how_to_redeem", "redeem_text"),
            ("marketer_message", "message_text"),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            texts = localize(name, value)
            if isinstance(value, str):
                values[name] = value
            else:
                key = content_key(prefix, texts)
                strings[key] = texts
                values[name] = key
        _set(self, "program_strings", tuple(sorted(strings.items())))
        _set(self, "_values", values)

    def pass_dict(self) -> dict[str, Any]:
        """Return the ``pass.json`` document as a dict."""
        balance: dict[str, Any] = {
            "key": "balance",
            "label": POINTS_LABEL,
            "value": self.balance,
            "numberStyle": "PKNumberStyleDecimal",
        }
        header: list[dict[str, Any]] = []
        primary: list[dict[str, Any]] = []
        if self.balance_placement != "primary":
            header.append({**balance, "changeMessage": BALANCE_CHANGE})
        if self.balance_placement != "header":
            # One notification per update is enough, so only one field carries changeMessage.
            primary_balance = {**balance, "key": "balance_primary", "label": BALANCE_LABEL}
            if self.balance_placement == "primary":
                primary_balance["changeMessage"] = BALANCE_CHANGE
            primary.append(primary_balance)
        card: dict[str, Any] = {}
        if header:
            card["headerFields"] = header
        if primary:
            card["primaryFields"] = primary
        if self.member_name is not None:
            card["secondaryFields"] = [
                {"key": "member", "label": MEMBER_LABEL, "value": self.member_name}
            ]
        if self.tier is not None:
            card["auxiliaryFields"] = [{"key": "tier", "label": TIER_LABEL, "value": self.tier}]
        card["backFields"] = self._back_fields()

        barcode = self.barcode.as_dict()
        document: dict[str, Any] = {
            "formatVersion": 1,
            "passTypeIdentifier": self.pass_type_identifier,
            "serialNumber": self.serial_number,
            "teamIdentifier": self.team_identifier,
            "organizationName": self.organization_name,
            "description": self.description,
            "foregroundColor": css_rgb(self.brand.foreground_rgb),
            "backgroundColor": css_rgb(self.brand.background_rgb),
            "labelColor": css_rgb(self.brand.label_rgb),
            "logoText": self.brand.display_logo_text,
            "sharingProhibited": self.sharing_prohibited,
            "storeCard": card,
            "barcodes": [barcode],
            # iOS 8 and older only read the singular key.
            "barcode": barcode,
        }
        if self.web_service_url is not None:
            document["webServiceURL"] = self.web_service_url
            document["authenticationToken"] = self.authentication_token
        if self.voided:
            document["voided"] = True
        if self.expiration_date is not None:
            document["expirationDate"] = self.expiration_date.isoformat(timespec="seconds")
        if self.locations:
            document["locations"] = [location.as_dict() for location in self.locations]
        return document

    def _back_fields(self) -> list[dict[str, Any]]:
        values = self._values
        back: list[dict[str, Any]] = []
        if "marketer_message" in values:
            back.append(
                {
                    "key": "message",
                    "label": MESSAGE_LABEL,
                    "value": values["marketer_message"],
                    "changeMessage": MESSAGE_CHANGE,
                }
            )
        history = "\n".join([entry.line for entry in self.ledger]) or HISTORY_EMPTY
        back.append({"key": "history", "label": HISTORY_LABEL, "value": history})
        if "how_to_redeem" in values:
            back.append({"key": "redeem", "label": REDEEM_LABEL, "value": values["how_to_redeem"]})
        if self.support_contact is not None:
            back.append({"key": "support", "label": SUPPORT_LABEL, "value": self.support_contact})
        if "terms" in values:
            back.append({"key": "terms", "label": TERMS_LABEL, "value": values["terms"]})
        return back

    def pass_json(self) -> bytes:
        """Return ``pass.json`` as compact UTF-8 JSON bytes."""
        return _JSON.encode(self.pass_dict()).encode()
