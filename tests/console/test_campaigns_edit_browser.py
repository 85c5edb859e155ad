"""Editing a draft campaign in Chromium (desktop and tablet): "Edit" opens the builder filled
with the campaign, the live count follows the changed conditions as on creation, saving shows
the campaign with its new dry run; the edit page in every language (screenshots, axe-core
clean) with "Campaigns" current in the navigation."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect

from tests.browser import serve
from tests.console.conftest import (
    SCREEN_LANGUAGES,
    SCREENS,
    check_page,
    console_page,
    make_account,
)
from tests.factories import ApiClient, create_card


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # editing runs on both in test_campaigns_edit.py


@pytest.mark.parametrize("screen", SCREENS)
def test_edit_a_draft(app: Flask, api: ApiClient, program: dict[str, Any], browser: Browser,
                      screen: str) -> None:
    pid = program["id"]
    for i in range(6):
        create_card(api, program, email=f"m{i}@example.com", language="th" if i < 2 else "en")
    campaign = api.post(f"/api/v1/programs/{pid}/campaigns", json={
        "name": "Rainy day", "segment": {"languages": ["en"]}, "holdout_percent": 0,
        "messages": {"en": {"lock_screen": "Double points", "back": "Show your card."}}}).json
    make_account(app, "m@example.com", "marketer", programs=[pid])
    with serve(app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        page.goto(f"{base}/console/programs/{pid}/campaigns/{campaign['id']}?lang=en")
        expect(page.locator('[data-dry="recipients"]')).to_have_text("4")
        expect(page.get_by_role("navigation", name="Console").get_by_role(
            "link", name="Campaigns")).to_have_attribute("aria-current", "page")
        page.get_by_role("link", name="Edit", exact=True).click()
        page.wait_for_url("**/edit")
        expect(page.get_by_label("Campaign name")).to_have_value("Rainy day")
        expect(page.get_by_label("Lock screen (English)")).to_have_value("Double points")
        expect(page.get_by_label("English", exact=True)).to_be_checked()
        expect(page.locator("#segment-count [data-count]")).to_have_attribute("data-count", "4")
        page.get_by_label("English", exact=True).uncheck()
        page.get_by_label("ไทย", exact=True).check()
        expect(page.locator("#segment-count [data-count]")).to_have_attribute("data-count", "2")
        check_page(page, f"campaign-edit-{screen}")
        page.get_by_label("Campaign name").fill("Rainy day, Thai")
        page.get_by_label("Lock screen (ไทย)").fill("แต้มสองเท่า")
        page.get_by_role("button", name="Save changes").click()
        page.wait_for_url(f"**/campaigns/{campaign['id']}")
        expect(page.locator("h1")).to_have_text("Rainy day, Thai")
        expect(page.locator('[data-dry="recipients"]')).to_have_text("2")
        got = api.get(f"/api/v1/programs/{pid}/campaigns/{campaign['id']}").json
        assert got["segment"] == {"languages": ["th"]}
        assert got["messages"]["th"] == {"lock_screen": "แต้มสองเท่า"}
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/programs/{pid}/campaigns/{campaign['id']}/edit"
                      f"?lang={lang}")
            assert page.locator("html").get_attribute("lang") == lang
            expect(page.locator("nav.sections [aria-current=page]")).to_have_count(1)
            check_page(page, f"campaign-edit-{lang}-{screen}")
        context.close()
