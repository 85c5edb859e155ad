"""The uploaded logo on the join page, in headless Chromium at a phone's width (SQLite only:
the page is the same on both databases). Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser

from passes.languages import LANGUAGES
from tests.browser import ARTIFACTS, PHONE, offline_page
from tests.images import image_bytes


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database


def test_join_page_banner_shows_the_uploaded_logo(api: Any, program: dict[str, Any],
                                                  browser: Browser, live_url: str) -> None:
    response = api.request("PUT", f"/api/v1/programs/{program['id']}/images/logo",
                           data=image_bytes((300, 150), colour=(250, 200, 20)),
                           headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.json
    ARTIFACTS.mkdir(exist_ok=True)
    for language in LANGUAGES:
        context, page = offline_page(browser, **{**PHONE,
                                                 "viewport": {"width": 360, "height": 640}})
        try:
            page.goto(f"{live_url}/join/{program['slug']}?lang={language}")
            logo = page.locator("header.brand img.brand-logo")
            assert logo.is_visible()
            # Loaded (the CSP lets it through) at the banner's size, inside the viewport.
            assert logo.evaluate("img => img.complete && img.naturalWidth") == 300
            box = logo.bounding_box()
            assert box is not None and box["height"] == 48 and box["width"] == 96
            assert box["x"] + box["width"] <= 360
            assert page.console_errors == []  # type: ignore[attr-defined]
            assert page.outside_requests == []  # type: ignore[attr-defined]
            page.screenshot(path=str(ARTIFACTS / f"join-logo-{language}.png"))
        finally:
            context.close()
