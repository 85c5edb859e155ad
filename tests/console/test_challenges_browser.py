"""Challenges in Chromium, on a desktop and a tablet: sign in, open "Challenges" from the
navigation, add one, change it, retire it (confirmed on its own page); screenshots of the
page in every language (axe-core clean, nothing from other hosts)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect

from tests.browser import serve
from tests.console.conftest import LANGUAGES, SCREENS, check_page, console_page, make_account
from tests.factories import ApiClient


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # the pages are the same on both databases


@pytest.mark.parametrize("screen", SCREENS)
def test_add_change_and_retire_a_challenge(app: Flask, api: ApiClient, program: dict[str, Any],
                                           browser: Browser, screen: str) -> None:
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    # One retired already, so the page shows both of its lists.
    old = api.post(f"/api/v1/programs/{program['id']}/challenges", json={
        "kind": "locations", "name": "Visit 3 shops", "target": 3}).json
    api.request("DELETE", f"/api/v1/programs/{program['id']}/challenges/{old['id']}")
    with serve(app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        page.get_by_role("link", name="Challenges").click()
        page.wait_for_url("**/challenges")
        new = page.locator("form", has=page.get_by_role("button", name="Add challenge"))
        new.get_by_label("What members do").select_option("visits")
        new.get_by_label("Name", exact=True).fill("5 visits in 30 days")
        new.get_by_label("Name in Thai").fill("มา 5 ครั้งใน 30 วัน")
        new.get_by_label("How many").fill("5")
        new.get_by_label("Within this many days (empty: ever)").fill("30")
        new.get_by_label("Bonus points with the badge (empty: none)").fill("50")
        new.get_by_role("button", name="Add challenge").click()
        headings = page.locator("section[aria-labelledby=live] .panel h3")
        expect(headings.first).to_have_text("5 visits in 30 days")
        made = api.get(f"/api/v1/programs/{program['id']}/challenges").json["challenges"][0]
        assert (made["target"], made["window_days"], made["bonus_points"]) == (5, 30, 50)
        # Change the target.
        panel = page.locator(f"#challenge-{made['id']}")
        panel.locator("summary").click()
        panel.get_by_label("How many").fill("6")
        panel.get_by_role("button", name="Save").click()
        expect(page.locator(f"#challenge-{made['id']} p.muted")).to_contain_text("6 within 30")
        for lang in LANGUAGES:
            page.goto(f"{base}/console/programs/{program['id']}/challenges?lang={lang}")
            check_page(page, f"challenges-{lang}-{screen}")
        # Retire, confirmed on its own page.
        page.goto(f"{base}/console/programs/{program['id']}/challenges?lang=en")
        page.locator(f"#challenge-{made['id']} summary").click()
        page.locator(f"#challenge-{made['id']}").get_by_role("link", name="Retire…").click()
        check_page(page, f"challenge-retire-{screen}")
        page.get_by_role("button", name="Retire 5 visits in 30 days").click()
        page.wait_for_url("**/challenges#retired")
        expect(page.locator("section[aria-labelledby=retired] td").first).to_have_text(
            "5 visits in 30 days")
        expect(page.get_by_text("No challenges yet.")).to_be_visible()
        context.close()
