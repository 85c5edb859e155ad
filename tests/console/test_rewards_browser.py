"""Rewards and rules in Chromium, on a desktop and a tablet: sign in, add a reward, move it up
(htmx swaps the list in place), retire it; try a purchase in the rules preview; screenshots
of both pages in every language (axe-core clean, nothing from other hosts)."""

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
from tests.factories import ApiClient


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # the pages are the same on both databases


@pytest.mark.parametrize("screen", SCREENS)
def test_add_move_up_and_retire_a_reward(app: Flask, api: ApiClient, program: dict[str, Any],
                                         browser: Browser, screen: str) -> None:
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    api.post(f"/api/v1/programs/{program['id']}/rules",
             json={"kind": "bonus", "name": "Weekend bonus", "points": 5,
                   "conditions": {"days_of_week": [6, 7]}})
    with serve(app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        page.get_by_role("navigation", name="Console").get_by_role(
            "link", name="Rewards and tiers").click()
        page.wait_for_url("**/rewards")
        new = page.locator("form", has=page.get_by_role("button", name="Add reward"))
        new.get_by_label("Name").fill("Es Kopi Susu")
        new.get_by_label("Points it costs").fill("80")
        new.get_by_role("button", name="Add reward").click()
        rewards = page.locator("#reward-list > li h3")
        expect(rewards).to_have_text(["Coffee", "Es Kopi Susu"])
        # Up: htmx swaps the list in place (the page is not reloaded).
        page.evaluate("window.notReloaded = true")
        page.get_by_role("button", name="Move Es Kopi Susu up").click()
        expect(rewards).to_have_text(["Es Kopi Susu", "Coffee"])
        assert page.evaluate("window.notReloaded") is True
        assert [r["name"] for r in api.get(
            f"/api/v1/programs/{program['id']}/rewards").json["rewards"]] == [
            "Es Kopi Susu", "Coffee"]
        # Retire, confirmed on its own page.
        page.locator("#reward-list > li").first.locator("summary").click()
        page.get_by_role("link", name="Retire…").first.click()
        page.get_by_role("button", name="Retire Es Kopi Susu").click()
        page.wait_for_url("**/rewards#retired")
        expect(rewards).to_have_text(["Coffee"])
        expect(page.locator("section[aria-labelledby=retired] td").first).to_have_text(
            "Es Kopi Susu")
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/programs/{program['id']}/rewards?lang={lang}")
            check_page(page, f"rewards-{lang}-{screen}")
        # The rules page: try a purchase on a Saturday (the bonus applies) in place.
        page.goto(f"{base}/console/programs/{program['id']}/rules?lang=en")
        preview = page.locator("#rules-preview")
        preview.get_by_label("Purchase amount").fill("30000")
        preview.get_by_label("Date and time").fill("2026-11-28T10:00")
        preview.get_by_role("button", name="Preview").click()
        expect(page.locator("#rules-preview [role=status]")).to_contain_text("Total: 8 points")
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/programs/{program['id']}/rules?lang={lang}")
            check_page(page, f"rules-{lang}-{screen}")
        context.close()
