"""Helpers of the console tests: accounts made through the service, sign-in through the
page (with its CSRF token), the page's form token."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, BrowserContext, Page

from app.accounts import service as accounts
from tests.browser import ARTIFACTS, axe_violations, offline_page

PASSWORD = "correct horse battery staple"


def form_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def make_account(app: Flask, email: str, role: str, *, password: str = PASSWORD,
                 programs: Iterable[int] = (), language: str = "en") -> int:
    with app.app_context():
        return accounts.create(email, role, password=password, program_ids=programs,
                               language=language).id


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD,
            next_url: str | None = None) -> Any:
    """Post the sign-in form as a browser would (token from the page first)."""
    path = "/console/login" + (f"?next={next_url}" if next_url else "")
    token = form_token(client.get(path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, "email": email, "password": password})


@pytest.fixture
def admin_client(app: Flask) -> FlaskClient:
    """A browser signed in as an admin (admin@example.com)."""
    make_account(app, "admin@example.com", "admin")
    client = app.test_client()
    assert sign_in(client, "admin@example.com").status_code == 303
    return client


# --- In the browser --------------------------------------------------------------------------
# The console is used on a desktop and on a tablet; each browser test runs on both.
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
TABLET = {"viewport": {"width": 820, "height": 1180}, "device_scale_factor": 2,
          "is_mobile": True, "has_touch": True}
SCREENS = {"desktop": DESKTOP, "tablet": TABLET}
LANGUAGES = ("en", "id", "th", "ms")
#: The languages a browser test checks each page in, per screen: every one on the desktop;
#: on the tablet Bahasa Indonesia (the longest words of the Latin-script ones) and Thai (the
#: other script): a layout that holds those holds English and Malay. Halves the tablet runs.
SCREEN_LANGUAGES = {"desktop": LANGUAGES, "tablet": ("id", "th")}


def console_page(browser: Browser, base_url: str, email: str, *, screen: str = "desktop",
                 password: str = PASSWORD) -> tuple[BrowserContext, Page]:
    """A browser context signed in to the console through the sign-in page (offline: a
    request to any other host fails the test, see tests.browser.offline_page)."""
    context, page = offline_page(browser, **SCREENS[screen])
    page.goto(f"{base_url}/console/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/console/login" not in url)
    return context, page


def check_page(page: Page, name: str) -> None:
    """Save a screenshot of the page as a test artifact and fail on any axe-core violation,
    script error or request to another host."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)
    assert axe_violations(page) == [], name
    assert page.console_errors == [], name  # type: ignore[attr-defined]
    assert page.outside_requests == [], name  # type: ignore[attr-defined]
