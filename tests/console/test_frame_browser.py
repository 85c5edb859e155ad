"""The console's frame in Chromium: sign-in and the program page, on a desktop and a tablet, in
every language (screenshots in test-artifacts/, axe-core clean, nothing from other hosts)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser

from tests.browser import offline_page, serve
from tests.console.conftest import (
    SCREEN_LANGUAGES,
    SCREENS,
    check_page,
    console_page,
    make_account,
)


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # the pages are the same on both databases


@pytest.mark.parametrize("screen", SCREENS)
def test_sign_in_and_the_program_page_in_every_language(
        app: Flask, program: dict[str, Any], browser: Browser, screen: str) -> None:
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    with serve(app) as base:
        context, page = offline_page(browser, **SCREENS[screen])
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/login?lang={lang}")
            check_page(page, f"login-{lang}-{screen}")
        context.close()
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        assert page.url.endswith(f"/console/programs/{program['id']}")
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/programs/{program['id']}?lang={lang}")
            assert page.locator("html").get_attribute("lang") == lang
            check_page(page, f"program-{lang}-{screen}")
        page.goto(f"{base}/console/programs/{program['id']}?lang=en")
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/console/login")
        context.close()


@pytest.mark.parametrize("screen", SCREENS)
def test_the_program_list_and_the_refusal_in_every_language(
        app: Flask, program: dict[str, Any], browser: Browser, screen: str) -> None:
    from tests.factories import admin_api, create_program

    create_program(admin_api(app), name="Teh Manis", slug="teh-manis")
    make_account(app, "a@example.com", "admin")
    make_account(app, "till@example.com", "staff")
    with serve(app) as base:
        context, page = console_page(browser, base, "a@example.com", screen=screen)
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console?lang={lang}")
            assert page.get_by_role("link", name="Teh Manis").count() == 1
            check_page(page, f"programs-{lang}-{screen}")
        context.close()
        context, page = offline_page(browser, **SCREENS[screen])
        # A staff account signs in and is refused (403), no session.
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/login?lang={lang}")
            page.locator("input[name=email]").fill("till@example.com")
            page.locator("input[name=password]").fill("correct horse battery staple")
            with page.expect_response(lambda r: "/console/login" in r.url
                                      and r.request.method == "POST") as answer:
                page.locator("button[type=submit].primary").click()
            assert answer.value.status == 403
            page.wait_for_load_state()
            assert page.locator("html").get_attribute("lang") == lang
            # Chromium logs the 403 of the page itself as a console error: that one is expected.
            page.console_errors[:] = [e for e in page.console_errors  # type: ignore[attr-defined]
                                      if "403" not in e]
            check_page(page, f"refused-{lang}-{screen}")
        context.close()
