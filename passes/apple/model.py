"""An Apple Wallet loyalty card, validated and immutable, and its ``pass.json``.

:class:`StoreCardContent` checks itself when constructed and raises
:class:`PassValidationError` naming the offending field, so a content object that exists is
one Wallet will accept. :meth:`StoreCardContent.pass_json` turns it into the ``pass.json`` of
a ``storeCard``; its pieces are in :mod:`passes.apple.parts`.
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
    BADGES_LABEL,
    BALANCE_CHANGE,
    BALANCE_LABEL,
    EXPIRY_CHANGE,
    EXPIRY_LABEL,
    FEEDBACK_CHANGE,
    FEEDBACK_LABEL,
    HISTORY_EMPTY,
    HISTORY_LABEL,
    MEMBER_LABEL,
    MESSAGE_CHANGE,
    MESSAGE_LABEL,
    PENDING_LABEL,
    POINTS_LABEL,
    REDEEM_LABEL,
    REWARD_LABEL,
    SUPPORT_LABEL,
    TERMS_LABEL,
    TIER_LABEL,
    LocalizedText,
    ProgramStrings,
    Texts,
    balance_change_texts,
    content_key,
    localize,
    reward_status_texts,
)
from passes.apple.parts import (
    ActivityLine,
    Barcode,
    Location,
    PassDesign,
    RewardProgress,
    activity_texts,
    check_activity,
    check_integer,
    check_locations,
    check_text,
    css_rgb,
    set_field,
)
from passes.feedback_link import FeedbackLink
from passes.languages import FALLBACK_LANGUAGE, LANGUAGES
from passes.points_lines import ExpiringPoints, PendingPoints
from passes.wording import DEFAULT_POINTS_LABEL, Wording, english, translations

BalancePlacement = Literal["header", "primary", "both"]

_PASS_TYPE_ID = re.compile(r"pass(?:\.[A-Za-z0-9-]+)+")
_TEAM_ID = re.compile(r"[A-Z0-9]{10}")
# The serial number ends up in web-service URL paths, so keep it to unreserved characters.
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
# The token travels in an "Authorization: ApplePass <token>" header.
_AUTH_TOKEN = re.compile(r"[\x21-\x7e]{16,}")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_ENGLISH = LANGUAGES.index(FALLBACK_LANGUAGE)  # where English is in a Texts tuple
MAX_BADGES = 15  # names on the back (as on Google's); a program has a handful


def _https_url(name: str, value: str, *, allow_http: bool) -> None:
    check_text(name, value, max_length=2000)
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
    With ``progress``, what the member can do now ("Es Kopi Susu ready", "20 Points to
    Croissant", translated) is the primary field over the strip (a secondary field when the
    balance is the primary one).
    Back: ``marketer_message``, ``expiring`` (points that expire soon: give it only within
    the program's reminder window; its field carries a change message: Wallet says it on
    the lock screen when the value changes), ``feedback`` (an open feedback invitation:
    "How was your visit?" with the link to its page, right after the message; said on the
    lock screen when its ``lock_screen`` is set), ``pending`` (points not spendable yet),
    ``activity`` (newest first), ``badges`` (the names of the challenges the member reached,
    one a line, each a :data:`LocalizedText`), ``how_to_redeem``, ``support_contact`` and
    ``terms``.
    ``points_label``, ``terms``, ``how_to_redeem`` and ``marketer_message`` are
    :data:`LocalizedText`: a ``str`` for every language, or a mapping from language code
    (``en`` required) to text. So is ``description`` (what VoiceOver reads): ``pass.json``
    holds its English text, which is the key of its translations.
    Updates: ``web_service_url`` + ``authentication_token`` (both or neither; https unless
    ``allow_insecure_web_service``). ``expiration_date`` must be timezone-aware.
    """

    pass_type_identifier: str
    team_identifier: str
    serial_number: str
    organization_name: str
    description: LocalizedText
    design: PassDesign
    balance: int
    barcode: Barcode
    member_name: str | None = None
    tier: str | None = None
    points_label: LocalizedText | None = None
    terms: LocalizedText | None = None
    how_to_redeem: LocalizedText | None = None
    activity: Sequence[ActivityLine | tuple[dt.date, str, int]] = ()
    badges: Sequence[LocalizedText] = ()
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
    progress: RewardProgress | None = None
    pending: PendingPoints | None = None
    expiring: ExpiringPoints | None = None
    feedback: FeedbackLink | None = None
    wording: Wording = field(default=english, repr=False, compare=False)
    program_strings: ProgramStrings = field(init=False, repr=False, compare=False)
    card_strings: ProgramStrings = field(init=False, repr=False, compare=False)
    _values: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_identity()
        check_integer("balance", self.balance, minimum=-(10**12), maximum=10**12)
        if not isinstance(self.design, PassDesign):
            raise PassValidationError("design", "must be a PassDesign")
        if not isinstance(self.barcode, Barcode):
            raise PassValidationError("barcode", "must be a Barcode")
        check_text("member_name", self.member_name, max_length=100, optional=True)
        check_text("tier", self.tier, max_length=40, optional=True)
        check_text("support_contact", self.support_contact, max_length=300, optional=True)
        set_field(self, "activity", check_activity(self.activity))
        if isinstance(self.badges, str | bytes) or not isinstance(self.badges, Sequence):
            raise PassValidationError("badges", "must be a sequence of names")
        if len(self.badges) > MAX_BADGES:
            raise PassValidationError("badges", f"has more than {MAX_BADGES} names")
        set_field(self, "badges", tuple(self.badges))
        set_field(self, "locations", check_locations(self.locations))
        if self.progress is not None and not isinstance(self.progress, RewardProgress):
            raise PassValidationError("progress", "must be a RewardProgress")
        if self.pending is not None and not isinstance(self.pending, PendingPoints):
            raise PassValidationError("pending", "must be a PendingPoints")
        if self.expiring is not None and not isinstance(self.expiring, ExpiringPoints):
            raise PassValidationError("expiring", "must be an ExpiringPoints")
        if self.feedback is not None and not isinstance(self.feedback, FeedbackLink):
            raise PassValidationError("feedback", "must be a FeedbackLink")
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
        check_text("organization_name", self.organization_name, max_length=200)

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
        if not callable(self.wording):
            raise PassValidationError("wording", "must be a (language, msgid) -> text callable")
        label = self.points_label
        if label is None:
            label = translations(DEFAULT_POINTS_LABEL, self.wording)
        points = localize("points_label", label, max_length=24)
        strings = {POINTS_LABEL: points, BALANCE_CHANGE: balance_change_texts(points, self.wording)}
        values: dict[str, str] = {}
        description = localize("description", self.description, max_length=500)
        values["description"] = description[_ENGLISH]
        if any(text != description[_ENGLISH] for text in description):
            strings[description[_ENGLISH]] = description
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
        set_field(self, "program_strings", tuple(sorted(strings.items())))
        # The activity stays English in pass.json; that text is the key of its translations.
        card: list[tuple[str, Texts]] = []
        if self.activity:
            history = activity_texts(self.activity, self.wording)
            if any(text != history[_ENGLISH] for text in history):
                card.append((history[_ENGLISH], history))
        if self.badges:
            names = [localize(f"badges[{i}]", badge, max_length=120)
                     for i, badge in enumerate(self.badges)]
            shelf = tuple("\n".join(name[index] for name in names)
                          for index in range(len(LANGUAGES)))
            values["badges"] = shelf[_ENGLISH]
            if any(text != shelf[_ENGLISH] for text in shelf) and \
                    all(key != shelf[_ENGLISH] for key, _ in card):
                card.append((shelf[_ENGLISH], shelf))
        if self.progress is not None:
            status = reward_status_texts(
                self.progress.points_to_go, self.progress.reward_name,
                self.progress.ready_reward, points, self.wording)
            values["reward_status"] = status[_ENGLISH]
            if any(text != status[_ENGLISH] for text in status) and \
                    all(key != status[_ENGLISH] for key, _ in card):
                card.append((status[_ENGLISH], status))
        # Lines of this card alone, keyed by their English text as the activity is.
        for name, texts in (
            ("expiring", self.expiring.texts(points, self.wording) if self.expiring else None),
            ("pending", self.pending.texts(self.wording) if self.pending else None),
        ):
            if texts is None:
                continue
            values[name] = texts[_ENGLISH]
            if any(text != texts[_ENGLISH] for text in texts) and \
                    all(key != texts[_ENGLISH] for key, _ in card):
                card.append((texts[_ENGLISH], texts))
        set_field(self, "card_strings", tuple(card))
        set_field(self, "_values", values)

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
        secondary: list[dict[str, Any]] = []
        if self.member_name is not None:
            secondary.append({"key": "member", "label": MEMBER_LABEL, "value": self.member_name})
        if "reward_status" in self._values:
            status = {"key": "reward", "label": REWARD_LABEL,
                      "value": self._values["reward_status"]}
            if primary:
                secondary.append(status)
            else:
                card["primaryFields"] = [status]
        if secondary:
            card["secondaryFields"] = secondary
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
            "description": self._values["description"],
            "foregroundColor": css_rgb(self.design.foreground_rgb),
            "backgroundColor": css_rgb(self.design.background_rgb),
            "labelColor": css_rgb(self.design.label_rgb),
            "logoText": self.design.display_logo_text,
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
        if self.feedback is not None:
            feedback = {"key": "feedback", "label": FEEDBACK_LABEL, "value": self.feedback.url}
            if self.feedback.lock_screen:
                feedback["changeMessage"] = FEEDBACK_CHANGE
            back.append(feedback)
        if "expiring" in values:
            back.append({"key": "expiry", "label": EXPIRY_LABEL, "value": values["expiring"],
                         "changeMessage": EXPIRY_CHANGE})
        if "pending" in values:
            back.append({"key": "pending", "label": PENDING_LABEL, "value": values["pending"]})
        history = "\n".join([line.line for line in self.activity]) or HISTORY_EMPTY
        back.append({"key": "history", "label": HISTORY_LABEL, "value": history})
        if "badges" in values:
            back.append({"key": "badges", "label": BADGES_LABEL, "value": values["badges"]})
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
