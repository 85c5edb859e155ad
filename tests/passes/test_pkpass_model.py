"""Content validation: every bad field raises PassValidationError naming that field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from passes.apple import (
    MAX_LOCATIONS,
    ActivityLine,
    Barcode,
    Location,
    PassDesign,
    PassValidationError,
    RewardProgress,
    StoreCardContent,
)
from passes.apple.localization import escape_strings_literal, localize, render_strings_file


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"pass_type_identifier": "com.example.loyalty"}, "pass_type_identifier"),
        ({"team_identifier": "short"}, "team_identifier"),
        ({"serial_number": "has space"}, "serial_number"),
        ({"serial_number": ""}, "serial_number"),
        ({"organization_name": "  "}, "organization_name"),
        ({"description": ""}, "description"),
        ({"balance": "120"}, "balance"),
        ({"balance": True}, "balance"),
        ({"authentication_token": "too-short"}, "authentication_token"),
        ({"authentication_token": "has spaces in it, sixteen+"}, "authentication_token"),
        ({"authentication_token": None}, "authentication_token"),
        ({"web_service_url": None}, "web_service_url"),
        ({"web_service_url": "http://pointpass.example.com/apple"}, "web_service_url"),
        ({"web_service_url": "https://x.example.com/a?b=c"}, "web_service_url"),
        ({"web_service_url": "not a url"}, "web_service_url"),
        ({"expiration_date": dt.datetime(2026, 1, 1)}, "expiration_date"),
        ({"expiration_date": dt.date(2026, 1, 1)}, "expiration_date"),
        ({"locations": [Location(1, 2)] * (MAX_LOCATIONS + 1)}, "locations"),
        ({"locations": [(1, 2)]}, "locations[0]"),
        ({"activity": [("2025-01-01", "x", 1)]}, "activity[0].when"),
        ({"activity": [(dt.date(2025, 1, 1), "x", 1.5)]}, "activity[0].points"),
        ({"activity": "not a list"}, "activity"),
        ({"points_label": {"th": "แต้ม"}}, "points_label"),
        ({"points_label": {"en": "Points", "fr": "Points"}}, "points_label"),
        ({"points_label": {"en": "Points", "th": ""}}, "points_label['th']"),
        ({"terms": ""}, "terms"),
        ({"terms": 42}, "terms"),
        ({"member_name": ""}, "member_name"),
        ({"tier": "x" * 41}, "tier"),
        ({"balance_placement": "footer"}, "balance_placement"),
        ({"voided": "yes"}, "voided"),
        ({"design": "Kopi"}, "design"),
        ({"badges": "5 visits"}, "badges"),
        ({"badges": ["Regular"] * 16}, "badges"),
        ({"badges": [""]}, "badges[0]"),
        ({"badges": ["Regular", {"th": "ขาประจำ"}]}, "badges[1]"),
        ({"badges": ["x" * 121]}, "badges[0]"),
    ],
)
def test_bad_content_names_the_field(
    make_content: Callable[..., StoreCardContent], overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(PassValidationError) as info:
        make_content(**overrides)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_ten_locations_are_fine(make_content: Callable[..., StoreCardContent]) -> None:
    content = make_content(locations=[Location(1, 2)] * MAX_LOCATIONS)
    assert len(content.pass_dict()["locations"]) == MAX_LOCATIONS


def test_http_web_service_only_when_allowed(make_content: Callable[..., StoreCardContent]) -> None:
    content = make_content(
        web_service_url="http://192.0.2.10:5000/apple", allow_insecure_web_service=True
    )
    assert content.pass_dict()["webServiceURL"].startswith("http://")


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: PassDesign("Kopi", background_color="red"), "design.background_color"),
        (lambda: PassDesign("Kopi", foreground_color="#12345"), "design.foreground_color"),
        (lambda: PassDesign("Kopi", label_color="#GGGGGG"), "design.label_color"),
        (lambda: PassDesign(""), "design.program_name"),
        (lambda: PassDesign("Kopi", initials="ABCD"), "design.initials"),
        (lambda: PassDesign("Kopi", logo_image=b"not an image"), "design.logo_image"),
        (lambda: Barcode("สวัสดี"), "barcode.message"),
        (lambda: Barcode(""), "barcode.message"),
        (lambda: Location(91, 0), "location.latitude"),
        (lambda: Location(0, -181), "location.longitude"),
        (lambda: Location(float("nan"), 0), "location.latitude"),
        (lambda: RewardProgress(1, 0, "x"), "progress.target"),
        (lambda: RewardProgress(1, 10, ""), "progress.reward_name"),
        (lambda: ActivityLine(dt.date(2025, 1, 1), "", 1), "activity.description"),
    ],
)
def test_bad_parts_name_the_field(factory: Callable[[], object], field: str) -> None:
    with pytest.raises(PassValidationError) as info:
        factory()
    assert info.value.field == field


def test_colours_become_rgb_strings() -> None:
    brand = PassDesign("Kopi", background_color="#abc", foreground_color="000000")
    assert brand.background_rgb == (0xAA, 0xBB, 0xCC)
    assert brand.foreground_rgb == (0, 0, 0)


def test_initials_skip_thai_leading_vowels() -> None:
    assert PassDesign("Kopi Kenangan").initials == "KK"
    assert PassDesign("เซเว่น อีเลฟเว่น").initials == "ซอ"
    assert PassDesign("ร้านกาแฟ").initials == "ร"


def test_latin1_barcode_message_is_fine() -> None:
    assert Barcode("Café-123").as_dict()["messageEncoding"] == "iso-8859-1"


def test_ledger_datetime_is_shown_as_a_date() -> None:
    entry = ActivityLine(dt.datetime(2025, 5, 1, 23, 0, tzinfo=dt.UTC), "Big   order\n", 1200)
    assert entry.render() == "2025-05-01 · Big order · +1200"


def test_localize_fills_missing_languages_from_english() -> None:
    assert localize("x", {"en": "Points", "th": "แต้ม"}) == ("Points", "Points", "แต้ม", "Points")
    assert localize("x", "Same") == ("Same",) * 4


def test_strings_escaping() -> None:
    assert escape_strings_literal('a"b\\c\nd\te') == 'a\\"b\\\\c\\nd\\te'
    assert render_strings_file([('k"ey', 'v"al')]) == b'"k\\"ey" = "v\\"al";\n'


def test_badges_are_on_the_back_after_the_activity(
        make_content: Callable[..., StoreCardContent]) -> None:
    content = make_content(badges=[{"en": "5 visits", "th": "มา 5 ครั้ง"}, "Explorer"])
    back = content.pass_dict()["storeCard"]["backFields"]
    keys = [f["key"] for f in back]
    assert keys.index("badges") == keys.index("history") + 1
    badges = back[keys.index("badges")]
    assert (badges["label"], badges["value"]) == ("badges_label", "5 visits\nExplorer")
    # The names read in the phone's language, keyed by their English text as the activity.
    assert ("5 visits\nExplorer", ("5 visits\nExplorer", "5 visits\nExplorer",
                                     "มา 5 ครั้ง\nExplorer", "5 visits\nExplorer")
            ) in content.card_strings
    assert "badges" not in [f["key"] for f in make_content().pass_dict()["storeCard"][
        "backFields"]]
