"""A loyalty program as a Google Wallet ``loyaltyClass`` (one class per program).

:class:`LoyaltyClassContent` checks itself when constructed and raises
:class:`GooglePayloadError` naming the offending field; :func:`loyalty_class_body` turns it
into the ``loyaltyClass`` insert/patch body of the ``walletobjects`` v1 API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from passes.google.fields import (
    GooglePayloadError,
    hex_color,
    localized,
    localized_string,
    public_https_url,
    set_field,
    validate_id_suffix,
    validate_issuer_id,
)
from passes.languages import FALLBACK_LANGUAGE
from passes.wording import N_, LocalizedText, Wording, english, translations

MultipleDevicesAndHolders = Literal["MULTIPLE_HOLDERS", "ONE_USER_ALL_DEVICES",
                                    "ONE_USER_ONE_DEVICE"]

DEFAULT_ACCOUNT_NAME_LABEL = N_("Member")
DEFAULT_ACCOUNT_ID_LABEL = N_("Member ID")

_COUNTRY = re.compile(r"[A-Za-z]{2}")


@dataclass(frozen=True)
class LoyaltyClassContent:
    """A loyalty program as a Google Wallet ``loyaltyClass`` (one class per program).

    The class id is ``<issuer_id>.<program_slug>``. ``logo_url`` (and ``hero_image_url``, the
    wide image across the top of the card: the program's strip artwork) must be public https
    URLs Google can fetch. ``callback_url`` (https) makes Google call back on every save/delete of
    a card of this class. Names and labels are :data:`LocalizedText`; the labels default to
    the catalogs' words through ``wording`` (English without one).
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
    account_name_label: LocalizedText | None = None  # default: "Member", translated
    account_id_label: LocalizedText | None = None  # default: "Member ID", translated
    callback_url: str | None = None
    hero_image_url: str | None = None
    wording: Wording = field(default=english, repr=False, compare=False)
    _texts: dict[str, dict[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_issuer_id(self.issuer_id)
        validate_id_suffix(self.program_slug, "program_slug")
        if not callable(self.wording):
            raise GooglePayloadError("wording", "must be a (language, msgid) -> text callable")
        texts = {
            "issuer_name": localized("issuer_name", self.issuer_name, max_length=100),
            "program_name": localized("program_name", self.program_name, max_length=100),
            "account_name_label": localized(
                "account_name_label",
                translations(DEFAULT_ACCOUNT_NAME_LABEL, self.wording)
                if self.account_name_label is None else self.account_name_label,
                max_length=40,
            ),
            "account_id_label": localized(
                "account_id_label",
                translations(DEFAULT_ACCOUNT_ID_LABEL, self.wording)
                if self.account_id_label is None else self.account_id_label,
                max_length=40,
            ),
        }
        texts["logo_description"] = (
            localized("logo_description", self.logo_description, max_length=200)
            if self.logo_description is not None else texts["program_name"]
        )
        set_field(self, "_texts", texts)
        public_https_url("logo_url", self.logo_url)
        set_field(self, "background_color", hex_color("background_color", self.background_color))
        if self.country_code is not None:
            if not isinstance(self.country_code, str) or not _COUNTRY.fullmatch(self.country_code):
                raise GooglePayloadError("country_code", "must be an ISO 3166-1 alpha-2 code")
            set_field(self, "country_code", self.country_code.upper())
        if self.multiple_devices_and_holders not in (
            "MULTIPLE_HOLDERS", "ONE_USER_ALL_DEVICES", "ONE_USER_ONE_DEVICE"
        ):
            raise GooglePayloadError("multiple_devices_and_holders",
                                     "must be MULTIPLE_HOLDERS, ONE_USER_ALL_DEVICES or "
                                     "ONE_USER_ONE_DEVICE")
        if self.callback_url is not None:
            public_https_url("callback_url", self.callback_url)
        if self.hero_image_url is not None:
            public_https_url("hero_image_url", self.hero_image_url)

    @property
    def class_id(self) -> str:
        """``<issuer_id>.<program_slug>``."""
        return f"{self.issuer_id}.{self.program_slug}"



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
    if content.hero_image_url is not None:
        body["heroImage"] = {
            "sourceUri": {"uri": content.hero_image_url},
            "contentDescription": localized_string(texts["program_name"]),
        }
    return body
