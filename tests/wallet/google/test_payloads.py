"""Loyalty class and object bodies: what they contain, that Google's schema (as the test
server enforces it) accepts them, and that bad content is refused naming the field."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from flask import Flask

from app.wallet.google.client import GoogleWalletClient
from app.wording import pass_wording
from passes.google.payloads import (
    NOTIFY_ON_UPDATE,
    NOTIFY_UNSPECIFIED,
    GooglePayloadError,
    Link,
    TextModule,
    loyalty_class_body,
    loyalty_object_body,
    loyalty_object_patch_body,
    resource_id,
)
from passes.languages import LANGUAGES
from passes.points_lines import ExpiringPoints, PendingPoints
from tests.factories import PROGRAM, admin_api, settle
from tests.google_server import GoogleWalletTestServer, WalletSchema
from tests.wallet.google.conftest import ISSUER_ID, REDEMPTION_CODE, class_content, object_content

SCHEMA = WalletSchema()


def languages(localized: dict[str, Any]) -> list[str]:
    return [t["language"] for t in localized["translatedValues"]]


def test_class_body_fields() -> None:
    body = loyalty_class_body(class_content())
    assert body["id"] == f"{ISSUER_ID}.kopi-test"
    assert body["issuerName"] == "Kopi Test"
    assert body["programName"] == "Kopi Rewards"
    assert body["reviewStatus"] == "UNDER_REVIEW"
    assert body["hexBackgroundColor"] == "#1a2b3c"
    assert body["countryCode"] == "ID"
    assert body["multipleDevicesAndHoldersAllowedStatus"] == "ONE_USER_ALL_DEVICES"
    assert body["programLogo"]["sourceUri"]["uri"] == "https://pointpass.test/static/logo.png"
    assert languages(body["programLogo"]["contentDescription"]) == list(LANGUAGES)
    assert languages(body["localizedIssuerName"]) == ["en", "id", "th", "ms"]
    program = {t["language"]: t["value"] for t in body["localizedProgramName"]["translatedValues"]}
    assert program == {"en": "Kopi Rewards", "id": "Hadiah Kopi", "th": "รางวัลกาแฟ",
                       "ms": "Ganjaran Kopi"}
    assert body["localizedProgramName"]["defaultValue"] == {"language": "en",
                                                            "value": "Kopi Rewards"}
    assert body["callbackOptions"] == {"url": "https://pointpass.test/google/callbacks"}
    assert SCHEMA.errors("LoyaltyClass", body) == []


def test_class_body_without_optional_fields() -> None:
    body = loyalty_class_body(class_content(country_code=None, callback_url=None))
    assert "countryCode" not in body and "callbackOptions" not in body
    assert SCHEMA.errors("LoyaltyClass", body) == []


def test_object_body_fields() -> None:
    body = loyalty_object_body(object_content(notify=True))
    assert body["id"] == f"{ISSUER_ID}.CARD1"
    assert body["classId"] == f"{ISSUER_ID}.kopi-test"
    assert body["state"] == "ACTIVE"
    assert body["accountId"] == "CARD1" and body["accountName"] == "Siti"
    points = body["loyaltyPoints"]
    assert points["balance"] == {"int": 120}
    assert points["label"] == "Points"
    assert languages(points["localizedLabel"]) == list(LANGUAGES)
    assert body["secondaryLoyaltyPoints"]["balance"] == {"string": "Silver"}
    assert body["secondaryLoyaltyPoints"]["label"] == "Tier"
    assert body["barcode"] == {"type": "QR_CODE", "value": REDEMPTION_CODE,
                               "alternateText": "CARD1"}
    assert body["notifyPreference"] == NOTIFY_ON_UPDATE
    module = body["textModulesData"][0]
    assert module["id"] == "terms" and module["header"] == "Terms"
    header = {t["language"]: t["value"] for t in module["localizedHeader"]["translatedValues"]}
    assert header == {"en": "Terms", "id": "Ketentuan", "th": "Terms", "ms": "Terms"}
    assert body["linksModuleData"]["uris"][0]["uri"] == "https://pointpass.test/support"
    assert SCHEMA.errors("LoyaltyObject", body) == []


def test_object_body_minimal() -> None:
    content = object_content(tier=None, account_id=None, account_name=None, text_modules=(),
                             links=(), barcode_alternate_text=None, state="INACTIVE")
    body = loyalty_object_body(content)
    assert set(body) == {"id", "classId", "state", "loyaltyPoints", "barcode",
                         "notifyPreference"}
    assert body["state"] == "INACTIVE"
    assert body["notifyPreference"] == NOTIFY_UNSPECIFIED
    assert SCHEMA.errors("LoyaltyObject", body) == []


def test_patch_body_sends_only_changes() -> None:
    before = object_content()
    after = object_content(balance=220, notify=True)
    patch = loyalty_object_patch_body(after, before)
    assert patch == {"loyaltyPoints": loyalty_object_body(after)["loyaltyPoints"],
                     "notifyPreference": NOTIFY_ON_UPDATE}
    assert SCHEMA.errors("LoyaltyObject", patch, partial=True) == []

    moved = loyalty_object_patch_body(object_content(tier="Gold", barcode_value="PP1:X"), before)
    assert set(moved) == {"secondaryLoyaltyPoints", "barcode", "notifyPreference"}
    assert moved["barcode"]["value"] == "PP1:X"

    dropped = loyalty_object_patch_body(object_content(tier=None, state="INACTIVE"), before)
    assert dropped["secondaryLoyaltyPoints"] is None  # PATCH null: delete the field
    assert dropped["state"] == "INACTIVE"

    everything = loyalty_object_patch_body(after)
    assert set(everything) == {"loyaltyPoints", "secondaryLoyaltyPoints", "barcode", "state",
                               "textModulesData", "linksModuleData", "notifyPreference"}

    with pytest.raises(GooglePayloadError, match="previous"):
        loyalty_object_patch_body(after, object_content(serial="OTHER"))


def _texts(localized: dict[str, Any]) -> dict[str, str]:
    return {t["language"]: t["value"] for t in localized["translatedValues"]}


def test_object_shows_pending_and_expiring_points_in_every_language() -> None:
    content = object_content(
        balance=1500, wording=pass_wording(),
        pending=PendingPoints(40, date(2026, 12, 3), later=1200),
        expiring=ExpiringPoints(1200, date(2026, 12, 31)))
    body = loyalty_object_body(content)
    assert SCHEMA.errors("LoyaltyObject", body) == []
    modules = {m["id"]: m for m in body["textModulesData"]}
    assert list(modules) == ["terms", "expiry", "pending"]
    expiry, pending = modules["expiry"], modules["pending"]
    assert (expiry["header"], expiry["body"]) == ("Points expiring",
                                                  "1,200 Points expire on 31 Dec 2026")
    assert _texts(expiry["localizedBody"]) == {
        "en": "1,200 Points expire on 31 Dec 2026",
        "id": "1.200 Poin kedaluwarsa pada 31 Des 2026",
        "th": "1,200 แต้ม จะหมดอายุวันที่ 31 ธ.ค. 2026",
        "ms": "1,200 Mata luput pada 31 Dis 2026"}
    assert _texts(pending["localizedHeader"])["id"] == "Poin tertunda"
    assert _texts(pending["localizedBody"]) == {
        "en": "+40 pending until 3 Dec\n+1,200 more pending later",
        "id": "+40 tertunda hingga 3 Des\n+1.200 lagi tertunda setelahnya",
        "th": "+40 รอเข้าบัญชีถึง 3 ธ.ค.\n+1,200 รอเข้าบัญชีภายหลัง",
        "ms": "+40 belum sah sehingga 3 Dis\n+1,200 lagi belum sah kemudian"}

    # A release changes only the text modules: the patch sends them, replaced as a whole.
    released = object_content(balance=1500, wording=pass_wording(),
                              expiring=ExpiringPoints(1200, date(2026, 12, 31)))
    patch = loyalty_object_patch_body(released, content)
    assert set(patch) == {"textModulesData", "notifyPreference"}
    assert [m["id"] for m in patch["textModulesData"]] == ["terms", "expiry"]
    assert SCHEMA.errors("LoyaltyObject", patch, partial=True) == []

    with pytest.raises(GooglePayloadError, match="pending"):
        object_content(pending=(40, date(2026, 12, 3)))


def test_patch_without_previous_clears_lines_no_longer_true(
        google_client: GoogleWalletClient, wallet_server: GoogleWalletTestServer) -> None:
    google_client.upsert_class(loyalty_class_body(class_content()))
    shown = object_content(text_modules=(), pending=PendingPoints(40, date(2026, 12, 3)))
    google_client.insert_object(loyalty_object_body(shown))
    object_id = f"{ISSUER_ID}.CARD1"
    assert [m["id"] for m in wallet_server.objects[object_id]["textModulesData"]] == ["pending"]
    google_client.patch_object(object_id, loyalty_object_patch_body(
        object_content(text_modules=())))
    assert wallet_server.objects[object_id].get("textModulesData", []) == []


def test_bodies_are_accepted_by_the_server(google_client: GoogleWalletClient,
                                           wallet_server: GoogleWalletTestServer) -> None:
    klass = loyalty_class_body(class_content())
    google_client.upsert_class(klass)
    stored_class = wallet_server.classes[klass["id"]]
    assert stored_class["programName"] == "Kopi Rewards"
    assert stored_class["reviewStatus"] == "APPROVED"  # Google approves UNDER_REVIEW classes

    full = loyalty_object_body(object_content())
    google_client.insert_object(full)
    stored = wallet_server.objects[full["id"]]
    assert stored["loyaltyPoints"]["balance"] == {"int": 120}
    assert "notifyPreference" not in stored  # ephemeral, never stored

    later = object_content(balance=5, tier=None, notify=True)
    google_client.patch_object(full["id"], loyalty_object_patch_body(later, object_content()))
    stored = wallet_server.objects[full["id"]]
    assert stored["loyaltyPoints"]["balance"] == {"int": 5}
    assert "secondaryLoyaltyPoints" not in stored
    assert stored["textModulesData"] == full["textModulesData"]  # untouched by the patch
    # The class body can be sent again as is (an approved class stays UNDER_REVIEW).
    google_client.upsert_class(klass)
    assert [r.status for r in wallet_server.api_requests()] == [200, 200, 200, 409, 200]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"issuer_id": "33880000x"}, "issuer_id"),
        ({"program_slug": "kopi test"}, "program_slug"),
        ({"program_slug": "kopi/../x"}, "program_slug"),
        ({"logo_url": "http://pointpass.test/logo.png"}, "logo_url"),
        ({"logo_url": "https://localhost/logo.png"}, "logo_url"),
        ({"logo_url": "https://10.0.0.5/logo.png"}, "logo_url"),
        ({"background_color": "blue"}, "background_color"),
        ({"country_code": "IDN"}, "country_code"),
        ({"program_name": {"id": "Hadiah"}}, "program_name"),
        ({"program_name": {"en": "Kopi", "fr": "Café"}}, "program_name"),
        ({"issuer_name": "  "}, "issuer_name"),
        ({"multiple_devices_and_holders": "EVERYONE"}, "multiple_devices_and_holders"),
        ({"callback_url": "ftp://pointpass.test/cb"}, "callback_url"),
    ],
)
def test_class_content_is_validated(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(GooglePayloadError) as caught:
        class_content(**overrides)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"serial": "CARD 1"}, "serial"),
        ({"serial": ""}, "serial"),
        ({"class_id": "kopi-test"}, "class_id"),
        ({"class_id": "999.kopi-test"}, "class_id"),
        ({"balance": 2**31}, "balance"),
        ({"balance": "12"}, "balance"),
        ({"balance": True}, "balance"),
        ({"barcode_value": ""}, "barcode_value"),
        ({"state": "DELETED"}, "state"),
        ({"points_label": {"th": "แต้ม"}}, "points_label"),
        ({"notify": "yes"}, "notify"),
        ({"text_modules": [TextModule("a", "A", "x")] * 2}, "text_modules[1].id"),
        ({"text_modules": ["not a module"]}, "text_modules[0]"),
    ],
)
def test_object_content_is_validated(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(GooglePayloadError) as caught:
        object_content(**overrides)
    assert caught.value.field == field


def test_nested_content_is_validated() -> None:
    with pytest.raises(GooglePayloadError, match=r"^uri"):
        Link("web", "javascript:alert(1)", "x")
    with pytest.raises(GooglePayloadError, match=r"^id"):
        TextModule("bad id", "A", "B")
    assert Link("call", "tel:+62211234567", "Call us").body_json()["uri"] == "tel:+62211234567"


def test_resource_id() -> None:
    assert resource_id(ISSUER_ID, "a.b_c-D9") == f"{ISSUER_ID}.a.b_c-D9"
    with pytest.raises(GooglePayloadError, match="suffix"):
        resource_id(ISSUER_ID, "a b")
    with pytest.raises(GooglePayloadError, match="issuer_id"):
        resource_id("abc", "x")


def _translations(localized: dict[str, Any]) -> dict[str, str]:
    return {t["language"]: t["value"] for t in localized["translatedValues"]}


def test_default_labels_come_from_the_catalogs_in_every_language() -> None:
    wording = pass_wording()
    obj = loyalty_object_body(object_content(wording=wording))
    assert obj["loyaltyPoints"]["label"] == "Points"
    assert _translations(obj["loyaltyPoints"]["localizedLabel"]) == {
        "en": "Points", "id": "Poin", "th": "แต้ม", "ms": "Mata"}
    assert _translations(obj["secondaryLoyaltyPoints"]["localizedLabel"]) == {
        "en": "Tier", "id": "Tingkat", "th": "ระดับ", "ms": "Peringkat"}
    klass = loyalty_class_body(class_content(wording=wording))
    assert _translations(klass["localizedAccountNameLabel"]) == {
        "en": "Member", "id": "Anggota", "th": "สมาชิก", "ms": "Ahli"}
    assert _translations(klass["localizedAccountIdLabel"]) == {
        "en": "Member ID", "id": "ID Anggota", "th": "รหัสสมาชิก", "ms": "ID Ahli"}
    assert SCHEMA.errors("LoyaltyObject", obj) == []
    assert SCHEMA.errors("LoyaltyClass", klass) == []


def test_default_labels_without_a_wording_are_english() -> None:
    obj = loyalty_object_body(object_content())
    assert set(_translations(obj["loyaltyPoints"]["localizedLabel"]).values()) == {"Points"}
    klass = loyalty_class_body(class_content())
    assert set(_translations(klass["localizedAccountIdLabel"]).values()) == {"Member ID"}


def test_the_service_sends_google_the_translated_labels(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    api = admin_api(google_app)
    program = api.post("/api/v1/programs", json=PROGRAM).json
    member = api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Ayu"}).json
    settle(google_app)
    obj = wallet_server.objects[f"{ISSUER_ID}.{member['card']['serial_number']}"]
    assert _translations(obj["loyaltyPoints"]["localizedLabel"])["th"] == "แต้ม"
    klass = wallet_server.classes[f"{ISSUER_ID}.{program['slug']}"]
    assert _translations(klass["localizedAccountNameLabel"])["id"] == "Anggota"
