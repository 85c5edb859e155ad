"""The segment builder in Chromium (desktop and tablet): its live count, updated as
conditions change, equals the API's count for the same conditions; the page in every
language (screenshots, axe-core clean)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from tests.browser import serve
from tests.console.conftest import (
    SCREEN_LANGUAGES,
    SCREENS,
    check_page,
    console_page,
    make_account,
)
from tests.factories import ApiClient, create_card, register_device


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # the engine runs on both in tests/campaigns/test_segments.py


def _api_count(api: ApiClient, program_id: int, **conditions: Any) -> int:
    response = api.post(f"/api/v1/programs/{program_id}/segments/count", json=conditions)
    assert response.status_code == 200, response.json
    return response.json["count"]  # type: ignore[no-any-return]


def _shown(page: Page, expected: int) -> None:
    expect(page.locator("#segment-count [data-count]")).to_have_attribute(
        "data-count", str(expected))


@pytest.mark.parametrize("screen", SCREENS)
def test_live_count_matches_the_api(app: Flask, api: ApiClient, program: dict[str, Any],
                                    browser: Browser, screen: str) -> None:
    pid = program["id"]
    serials = [create_card(api, program, email=f"m{i}@example.com",
                           language=("en", "th", "id")[i % 3])["serial_number"]
               for i in range(7)]
    for serial in serials[:3]:
        register_device(app, serial)
    assert api.post(f"/api/v1/cards/{serials[4]}/earn", json={"points": 700}).status_code == 201
    make_account(app, "m@example.com", "marketer", programs=[pid])
    with serve(app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        page.goto(f"{base}/console/programs/{pid}/campaigns?lang=en")
        _shown(page, _api_count(api, pid))
        page.get_by_label("ไทย", exact=True).check()  # the language checkbox, labelled in Thai
        _shown(page, _api_count(api, pid, languages=["th"]))
        page.get_by_label("On Apple Wallet").select_option("yes")
        _shown(page, _api_count(api, pid, languages=["th"], apple_installed=True))
        page.get_by_label("Balance at least").fill("500")  # typed: the input's delay
        expected = _api_count(api, pid, languages=["th"], apple_installed=True, balance_min=500)
        _shown(page, expected)
        assert expected == 0  # 7, 2, 1, then 0: each step changes what is shown
        page.get_by_label("Balance at least").fill("")
        page.get_by_label("ไทย", exact=True).uncheck()
        page.get_by_label("On Apple Wallet").select_option("no")
        _shown(page, _api_count(api, pid, apple_installed=False))
        check_page(page, f"campaigns-builder-{screen}")
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/programs/{pid}/campaigns?lang={lang}")
            assert page.locator("html").get_attribute("lang") == lang
            check_page(page, f"campaigns-{lang}-{screen}")
        context.close()
