"""One member's card as a Google Wallet ``loyaltyObject``.

:class:`LoyaltyObjectContent` checks itself when constructed and raises
:class:`GooglePayloadError` naming the offending field. :func:`loyalty_object_body` is the
full insert/update body; :func:`loyalty_object_patch_body` a PATCH body holding only the parts
a card changes every day (balance, tier, barcode, state) plus the notification preference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from passes import feedback_link, points_lines
from passes.feedback_link import FeedbackLink
from passes.google.fields import (
    MAX_LINKS,
    MAX_TEXT_MODULES,
    GooglePayloadError,
    Link,
    TextModule,
    check_text,
    localized,
    localized_string,
    nested,
    optional_text,
    set_field,
    split_resource_id,
    validate_id_suffix,
    validate_issuer_id,
)
from passes.languages import FALLBACK_LANGUAGE, LANGUAGES
from passes.points_lines import ExpiringPoints, PendingPoints
from passes.wording import DEFAULT_POINTS_LABEL, N_, LocalizedText, Wording, english, translations

#: ``INACTIVE``: a voided card; ``EXPIRED``: a card whose holder's data was erased (Google
#: moves it to the wallet's expired passes).
ObjectState = Literal["ACTIVE", "INACTIVE", "EXPIRED"]

#: ``notifyPreference`` values. The preference lives on the object, is ephemeral, and must be
#: sent with every PATCH/UPDATE that should trigger a field-update notification.
NOTIFY_ON_UPDATE = "NOTIFY_ON_UPDATE"
NOTIFY_UNSPECIFIED = "NOTIFICATION_SETTINGS_FOR_UPDATES_UNSPECIFIED"

DEFAULT_TIER_LABEL = N_("Tier")
BADGES_HEADER = N_("Badges")
MAX_BADGES = 15  # 120 characters a name: the module's body holds 2,000

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # LoyaltyPointsBalance.int is an int32


def _or_default(label: LocalizedText | None, msgid: str, wording: Wording) -> LocalizedText:
    return translations(msgid, wording) if label is None else label


@dataclass(frozen=True)
class LoyaltyObjectContent:
    """One member's card as a Google Wallet ``loyaltyObject``.

    The object id is ``<issuer_id>.<serial>``; ``class_id`` must belong to the same issuer.
    The front shows ``balance`` under ``points_label`` and ``tier`` (if any) under
    ``tier_label``; the QR code encodes ``barcode_value`` (the redemption code) with
    ``barcode_alternate_text`` printed below it. ``notify`` asks Google to notify the member
    of this update (``notifyPreference``). The labels default to the catalogs' words through
    ``wording`` (English without one).

    On the back: ``text_modules``, then, as text modules of their own, ``expiring`` (points
    that expire soon: give it only within the program's reminder window; id ``expiry``) and
    ``pending`` (points not spendable yet; id ``pending``), translated like the labels,
    and ``badges`` (the names of the challenges the member reached, each a
    :data:`LocalizedText`; one module, id ``badges``, a name a line).
    ``links`` go to the links module, then ``feedback`` (an open feedback invitation) as the
    link "How was your visit?" (id ``feedback``).
    """

    issuer_id: str
    serial: str
    class_id: str
    balance: int
    barcode_value: str
    account_id: str | None = None
    account_name: str | None = None
    points_label: LocalizedText | None = None  # default: "Points", translated
    tier: str | None = None
    tier_label: LocalizedText | None = None  # default: "Tier", translated
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
    pending: PendingPoints | None = None
    expiring: ExpiringPoints | None = None
    badges: Sequence[LocalizedText] = ()
    feedback: FeedbackLink | None = None
    wording: Wording = field(default=english, repr=False, compare=False)
    _points_label: dict[str, str] = field(init=False, repr=False, compare=False)
    _modules: tuple[TextModule, ...] = field(init=False, repr=False, compare=False)
    _tier_label: dict[str, str] = field(init=False, repr=False, compare=False)
    _links: tuple[Link, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_issuer_id(self.issuer_id)
        validate_id_suffix(self.serial, "serial")
        if not callable(self.wording):
            raise GooglePayloadError("wording", "must be a (language, msgid) -> text callable")
        class_issuer, _ = split_resource_id(self.class_id, "class_id")
        if class_issuer != self.issuer_id:
            raise GooglePayloadError("class_id", "belongs to another issuer")
        if isinstance(self.balance, bool) or not isinstance(self.balance, int):
            raise GooglePayloadError("balance", "must be an integer")
        if not INT32_MIN <= self.balance <= INT32_MAX:
            raise GooglePayloadError("balance", "must fit in a signed 32-bit integer")
        check_text("barcode_value", self.barcode_value, max_length=1000)
        optional_text("account_id", self.account_id, max_length=100)
        optional_text("account_name", self.account_name, max_length=100)
        optional_text("tier", self.tier, max_length=40)
        optional_text("barcode_alternate_text", self.barcode_alternate_text, max_length=100)
        points_label = _or_default(self.points_label, DEFAULT_POINTS_LABEL, self.wording)
        tier_label = _or_default(self.tier_label, DEFAULT_TIER_LABEL, self.wording)
        set_field(self, "_points_label", localized("points_label", points_label, max_length=40))
        set_field(self, "_tier_label", localized("tier_label", tier_label, max_length=40))
        if self.state not in ("ACTIVE", "INACTIVE", "EXPIRED"):
            raise GooglePayloadError("state", "must be 'ACTIVE', 'INACTIVE' or 'EXPIRED'")
        if not isinstance(self.notify, bool):
            raise GooglePayloadError("notify", "must be True or False")
        set_field(self, "text_modules",
             nested("text_modules", self.text_modules, TextModule, MAX_TEXT_MODULES))
        set_field(self, "links", nested("links", self.links, Link, MAX_LINKS))
        set_field(self, "_links", self._all_links())
        set_field(self, "_modules", self._all_text_modules())

    def _all_links(self) -> tuple[Link, ...]:
        links = list(self.links)
        if self.feedback is not None:
            if not isinstance(self.feedback, FeedbackLink):
                raise GooglePayloadError("feedback", "must be a FeedbackLink")
            try:
                links.append(Link(id="feedback", uri=self.feedback.url, description=translations(
                    feedback_link.FEEDBACK_LABEL, self.wording)))
            except GooglePayloadError as error:
                raise GooglePayloadError(f"feedback.{error.field}", error.problem) from error
        return nested("links", links, Link, MAX_LINKS)

    def _links_json(self) -> dict[str, Any]:
        return {"uris": [link.body_json() for link in self._links]}

    def _all_text_modules(self) -> tuple[TextModule, ...]:
        modules = list(self.text_modules)
        if self.expiring is not None:
            if not isinstance(self.expiring, ExpiringPoints):
                raise GooglePayloadError("expiring", "must be an ExpiringPoints")
            label = tuple(self._points_label[lang] for lang in LANGUAGES)
            modules.append(self._points_module(
                "expiry", points_lines.EXPIRY_LABEL, self.expiring.texts(label, self.wording)))
        if self.pending is not None:
            if not isinstance(self.pending, PendingPoints):
                raise GooglePayloadError("pending", "must be a PendingPoints")
            modules.append(self._points_module(
                "pending", points_lines.PENDING_LABEL, self.pending.texts(self.wording)))
        if self.badges:
            modules.append(self._badges_module())
        return nested("text_modules", modules, TextModule, MAX_TEXT_MODULES)

    def _badges_module(self) -> TextModule:
        if isinstance(self.badges, str | bytes) or not isinstance(self.badges, Sequence):
            raise GooglePayloadError("badges", "must be a sequence of names")
        if len(self.badges) > MAX_BADGES:
            raise GooglePayloadError("badges", f"has more than {MAX_BADGES} names")
        names = [localized(f"badges[{i}]", badge, max_length=120)
                 for i, badge in enumerate(self.badges)]
        return TextModule(id="badges", header=translations(BADGES_HEADER, self.wording),
                          body={lang: "\n".join(name[lang] for name in names)
                                for lang in LANGUAGES})

    def _points_module(self, module_id: str, label: str,
                       texts: tuple[str, ...]) -> TextModule:
        return TextModule(id=module_id, header=translations(label, self.wording),
                          body=dict(zip(LANGUAGES, texts, strict=True)))

    def _text_modules(self) -> list[dict[str, Any]]:
        return [module.body_json() for module in self._modules]

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
    if content._modules:
        body["textModulesData"] = content._text_modules()
    if content._links:
        body["linksModuleData"] = content._links_json()
    return body


def loyalty_object_patch_body(
    current: LoyaltyObjectContent, previous: LoyaltyObjectContent | None = None
) -> dict[str, Any]:
    """A ``loyaltyObject`` PATCH body with only what changed since ``previous``.

    Considered: balance and its label (``loyaltyPoints``), tier (``secondaryLoyaltyPoints``),
    barcode, state, the text modules (``textModulesData``, replaced as a whole: the
    pending and expiring points change with the balance) and the links (``linksModuleData``,
    replaced as a whole: a feedback link comes with a visit and goes with its answer);
    without ``previous`` all six are sent (except a tier the card does not have; text
    modules and links even when there are none, so that ones no longer true are removed).
    ``notifyPreference`` is always sent, because Google forgets it after each request. A
    tier removed since ``previous`` is sent as ``null``, which PATCH treats as "delete this
    field". Other fields (names) need a full
    update with :func:`loyalty_object_body`.
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
    if previous is None or previous._text_modules() != current._text_modules():
        body["textModulesData"] = current._text_modules()
    if previous is None or previous._links_json() != current._links_json():
        body["linksModuleData"] = current._links_json()
    body["notifyPreference"] = current._notify_preference()
    return body
