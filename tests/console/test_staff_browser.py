"""The console's "Staff and devices" page in Chromium, on a desktop and a tablet: an admin
adds a staff member and enrols a till device (its link, opened on the till's phone in a second
browser, enrols it and shows the new member's name there), then revokes it. Screenshots in
every language (test-artifacts/), axe-core clean, nothing from other hosts."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser

from tests.browser import PHONE, offline_page, serve
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
def test_add_staff_enrol_a_device_and_revoke_it(
        app: Flask, api: ApiClient, program: dict[str, Any], browser: Browser,
        screen: str) -> None:
    make_account(app, "admin@example.com", "admin")
    location = api.post(f"/api/v1/programs/{program['id']}/locations", json={
        "name": "Kopi Sudirman", "latitude": -6.2, "longitude": 106.8}).json["id"]
    staff_url = f"/console/programs/{program['id']}/staff"
    with serve(app) as base:
        context, page = console_page(browser, base, "admin@example.com", screen=screen)
        page.goto(f"{base}/console/programs/{program['id']}?lang=en")
        page.get_by_role("navigation", name="Console").get_by_role(
            "link", name="Staff and devices").click()
        page.wait_for_url(f"**{staff_url}")

        # A staff member: two PINs that differ are refused, then the right ones.
        page.get_by_text("Add a staff member").click()
        page.locator("#staff-name").fill("Siti Aminah")
        page.get_by_role("checkbox", name="Kopi Sudirman").check()
        page.locator("#staff-language").select_option("id")
        page.locator("#staff-pin").fill("4821")
        page.locator("#staff-pin_again").fill("4812")
        page.get_by_role("button", name="Add the staff member").click()
        page.locator("#staff-pin_again-errors").wait_for()
        assert "The two PINs differ" in page.locator("#staff-pin_again-errors").inner_text()
        assert page.locator("#staff-pin").input_value() == ""  # never sent back
        # Chromium logs the 422 answer as an error; anything else would fail check_page.
        errors = page.console_errors  # type: ignore[attr-defined]
        assert len(errors) == 1 and "422" in errors[0], errors
        errors.clear()
        check_page(page, f"staff-error-en-{screen}")
        page.locator("#staff-pin").fill("4821")
        page.locator("#staff-pin_again").fill("4821")
        page.get_by_role("button", name="Add the staff member").click()
        page.wait_for_url(f"**{staff_url}#staff")
        row = page.locator("#staff tbody tr", has_text="Siti Aminah")
        assert "Kopi Sudirman" in row.inner_text() and "Active" in row.inner_text()

        # A till device: the one-time link and its QR code.
        page.get_by_text("Enrol a till device").click()
        page.locator("#device-location_id").select_option(str(location))
        page.locator("#device-name").fill("Front till")
        page.get_by_role("button", name="Make the enrolment link").click()
        qr = page.get_by_role("img", name="QR code of the enrolment link")
        box = qr.bounding_box()
        assert box is not None and box["width"] >= 200
        link = page.locator(".enrol-link").get_attribute("href")
        assert link is not None and "/staff/enrol/" in link
        check_page(page, f"staff-enrol-link-en-{screen}")

        # The till's phone, another browser, opens the link and enrols.
        till_context, till = offline_page(browser, **PHONE)
        till.goto(link.replace(app.config["BASE_URL"], base))
        till.locator("#enrol").click()
        till.wait_for_url("**/staff/login")
        assert till.locator(".member-button").all_inner_texts() == ["Siti Aminah"]
        # The console's page sees it happen (htmx asks every 3 seconds).
        page.locator("#device-status .status.enrolled").wait_for()

        page.get_by_role("link", name="Done", exact=True).click()
        page.wait_for_url(f"**{staff_url}#devices")
        device_row = page.locator("#devices tbody tr", has_text="Front till")
        assert "Enrolled" in device_row.inner_text()
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}{staff_url}?lang={lang}")
            assert page.locator("html").get_attribute("lang") == lang
            check_page(page, f"staff-{lang}-{screen}")
        page.goto(f"{base}{staff_url}?lang=en")
        page.locator("#staff tbody tr", has_text="Siti Aminah").get_by_role("link").click()
        page.wait_for_url(f"**{staff_url}/members/*")
        check_page(page, f"staff-member-en-{screen}")
        page.goto(f"{base}{staff_url}/locations/{location}")
        check_page(page, f"staff-location-en-{screen}")

        # Revoking asks first; the till is signed out at its next request.
        page.goto(f"{base}{staff_url}")
        page.get_by_role("link", name="Revoke Front till").click()
        check_page(page, f"staff-revoke-en-{screen}")
        page.get_by_role("button", name="Revoke the device").click()
        page.wait_for_url(f"**{staff_url}#devices")
        assert "Revoked" in page.locator("#devices tbody tr", has_text="Front till").inner_text()
        assert page.get_by_role("link", name="Revoke Front till").count() == 0
        till.goto(f"{base}/staff/login")
        assert till.locator(".member-button").count() == 0
        till_context.close()
        context.close()
