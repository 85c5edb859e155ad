"""The Members pages in Chromium, on a desktop and a tablet: a marketer finds a member by the
short code under their card's QR code (results follow the typing) and adjusts their points;
the members list and a member's page in every language (screenshots in test-artifacts/,
axe-core clean, nothing from other hosts)."""

from __future__ import annotations

import re
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
from tests.factories import ApiClient, card_short_code, create_card, ledger_state


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # the pages are the same on both databases


@pytest.mark.parametrize("screen", SCREENS)
def test_find_a_member_by_short_code_and_adjust_their_points(
        app: Flask, api: ApiClient, program: dict[str, Any], browser: Browser,
        screen: str) -> None:
    create_card(api, program, name="Budi Santoso", email="budi@example.com")
    card = create_card(api, program, name="Siti Rahma", email="siti@example.com",
                       phone="+62 812 3456 7890")
    serial = card["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 30}).status_code == 201
    code = card_short_code(app, serial)
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    with serve(app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        page.get_by_role("navigation", name="Console").get_by_role(
            "link", name="Members").click()
        page.wait_for_url(f"**/console/programs/{program['id']}/members")
        results = page.locator("#member-results")
        expect(results.get_by_role("link", name="Budi Santoso")).to_be_visible()
        # Typed as a customer reads it out: in lower case, without the dashes.
        page.get_by_label("Search by name, e-mail, phone, serial number or short code").fill(
            code.replace("-", " ").lower())
        expect(results.get_by_role("link", name="Budi Santoso")).to_have_count(0)
        expect(results.get_by_role("link")).to_have_count(1)
        assert "/console/programs/" in page.url and "q=" in page.url  # pushed: reloadable
        results.get_by_role("link", name="Siti Rahma").click()
        page.wait_for_url(re.compile(r".*/members/\d+$"))
        expect(page.locator("#card-balance")).to_have_text("30")
        page.get_by_label("Points to add (a minus sign removes them)").fill("25")
        page.get_by_label("Reason").first.fill("Coffee spilled")
        page.get_by_role("button", name="Adjust", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("the balance is now 55")
        expect(page.locator("#card-balance")).to_have_text("55")
        first_row = page.locator("#ledger tbody tr").first
        expect(first_row).to_contain_text("Coffee spilled")
        expect(first_row).to_contain_text("+25")
        expect(first_row).to_contain_text("m@example.com")
        assert ledger_state(app, serial) == (55, 55, 2)
        context.close()


@pytest.mark.parametrize("screen", SCREENS)
def test_the_members_pages_in_every_language(
        app: Flask, api: ApiClient, program: dict[str, Any], browser: Browser,
        screen: str) -> None:
    card = create_card(api, program, name="Siti Rahma", email="siti@example.com",
                       phone="+62 812 3456 7890")
    create_card(api, program, name="Budi Santoso")
    assert api.post(f"/api/v1/cards/{card['serial_number']}/adjust",
                    json={"points": 80, "reason": "Welcome"}).status_code == 201
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    with serve(app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        members = f"{base}/console/programs/{program['id']}/members"
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{members}?lang={lang}")
            assert page.locator("html").get_attribute("lang") == lang
            check_page(page, f"members-{lang}-{screen}")
            page.locator("#member-results").get_by_role("link", name="Siti Rahma").click()
            page.wait_for_url(re.compile(r".*/members/\d+$"))
            expect(page.locator("#card-balance")).to_have_text("80")
            check_page(page, f"member-{lang}-{screen}")
        context.close()
