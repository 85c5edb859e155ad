"""Accounts and the audit trail in Chromium, on a desktop and a tablet: an admin invites
someone (no e-mail set up, so the link is shown to copy), the invitee opens it, chooses a
password and is signed in, and the admin reads the invitation in the audit trail. Then every
page of this part in every language (screenshots in test-artifacts/, axe-core clean)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect

from app.accounts import links
from app.accounts.models import Account
from app.extensions import db
from tests.browser import offline_page, serve
from tests.console.conftest import (
    SCREEN_LANGUAGES,
    SCREENS,
    check_page,
    console_page,
    make_account,
)

NEW_PASSWORD = "a long and new passphrase"


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # the pages are the same on both databases


@pytest.mark.parametrize("screen", SCREENS)
def test_an_admin_invites_someone_who_accepts_and_the_audit_trail_shows_it(
        app: Flask, program: dict[str, Any], browser: Browser, screen: str) -> None:
    make_account(app, "admin@example.com", "admin")
    with serve(app) as base:
        context, page = console_page(browser, base, "admin@example.com", screen=screen)
        page.goto(f"{base}/console")
        page.get_by_role("link", name="Accounts").click()
        page.get_by_label("E-mail").fill("nok@example.com")
        page.get_by_label("Name (optional)").fill("Nok")
        page.get_by_label(program["name"]).check()
        page.get_by_label("Language", exact=True).select_option("th")
        page.get_by_role("button", name="Invite").click()
        link = page.get_by_role("textbox", name="Link").input_value()
        assert link.startswith("https://pointpass.test/console/welcome/")
        expect(page.get_by_role("button", name="Copy")).to_be_visible()
        check_page(page, f"invitation-link-{screen}")

        invitee, welcome = offline_page(browser, **SCREENS[screen])
        welcome.goto(base + link.removeprefix("https://pointpass.test"))
        expect(welcome.get_by_role("heading", level=1)).to_have_text(
            "Welcome to the Pointpass console")
        welcome.get_by_label("New password").fill(NEW_PASSWORD)
        welcome.get_by_label("The same password again").fill(NEW_PASSWORD)
        welcome.get_by_role("button", name="Set password and sign in").click()
        welcome.wait_for_url(f"**/console/programs/{program['id']}")
        expect(welcome.get_by_role("link", name="nok@example.com")).to_be_visible()
        invitee.close()

        page.get_by_role("link", name="Audit trail (all)").click()
        rows = page.locator("table.audit tbody tr")
        expect(rows.nth(0)).to_contain_text("account.accept-invite")
        expect(rows.nth(0)).to_contain_text("nok@example.com")
        expect(rows.nth(1)).to_contain_text("account.invite")
        expect(rows.nth(1)).to_contain_text("admin@example.com")
        check_page(page, f"audit-all-after-invitation-{screen}")
        context.close()


@pytest.mark.parametrize("screen", SCREENS)
def test_every_accounts_and_audit_page_in_every_language(
        app: Flask, program: dict[str, Any], browser: Browser, screen: str) -> None:
    make_account(app, "admin@example.com", "admin")
    marketer = make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    with app.app_context():
        reset = links.reset_link(db.session.get(Account, marketer)).url
        welcome = links.invite("new@example.com", "marketer").url
    admin_pages = {
        "accounts": "/console/accounts",
        "account": f"/console/accounts/{marketer}",
        "own-account": "/console/account",
        "audit-all": "/console/audit",
        "audit-program": f"/console/programs/{program['id']}/audit",
    }
    public_pages = {
        "welcome": welcome.removeprefix("https://pointpass.test"),
        "reset": reset.removeprefix("https://pointpass.test"),
        "forgot": "/console/forgot",
        "link-gone": "/console/reset/not-a-link",
    }
    with serve(app) as base:
        context, page = offline_page(browser, **SCREENS[screen])
        for name, path in public_pages.items():
            for lang in SCREEN_LANGUAGES[screen]:
                answer = page.goto(f"{base}{path}?lang={lang}")
                assert page.locator("html").get_attribute("lang") == lang
                if name == "link-gone":
                    assert answer is not None and answer.status == 410
                    # Chromium logs the page's own status; nothing else may be logged.
                    page.console_errors.remove(  # type: ignore[attr-defined]
                        "Failed to load resource: the server responded with a status of "
                        "410 (GONE)")
                check_page(page, f"{name}-{lang}-{screen}")
        context.close()
        context, page = console_page(browser, base, "admin@example.com", screen=screen)
        for name, path in admin_pages.items():
            for lang in SCREEN_LANGUAGES[screen]:
                page.goto(f"{base}{path}?lang={lang}")
                assert page.locator("html").get_attribute("lang") == lang
                check_page(page, f"{name}-{lang}-{screen}")
        context.close()
