"""The card page of an erased member in Chromium: 410, in every language, axe-core clean on a
360×640 phone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from app.enrollment.links import card_page_path
from tests.browser import ARTIFACTS, axe_violations, launch, offline_page, serve
from tests.factories import admin_api, create_program

TITLES = {"en": "This card no longer exists", "id": "Kartu ini sudah tidak ada",
          "th": "บัตรนี้ไม่มีอยู่แล้ว", "ms": "Kad ini tidak lagi wujud"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    """SQLite only (the page does not depend on the database)."""
    return sqlite_database


def test_an_erased_members_card_page_is_gone(app: Any, browser: Browser) -> None:
    api = admin_api(app)
    program = create_program(api)
    joined = api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Ayu"}).json
    serial = joined["card"]["serial_number"]
    with app.app_context():
        path = card_page_path(serial)
    assert api.request("DELETE", f"/api/v1/members/{joined['id']}").status_code == 200
    with serve(app) as url:
        for language, title in TITLES.items():
            context, page = offline_page(browser, viewport={"width": 360, "height": 640},
                                         is_mobile=True, has_touch=True)
            response = page.goto(f"{url}{path}?lang={language}")
            assert response is not None and response.status == 410
            assert page.locator("h1").inner_text() == title
            assert page.locator("html").get_attribute("lang") == language
            assert axe_violations(page) == [], language
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"card-gone-{language}.png"))
            assert not page.outside_requests
            # Chromium logs the page's own 410; nothing else may fail.
            assert [e for e in page.console_errors if "status of 410" not in e] == []
            context.close()


def test_the_console_erase_form_in_the_browser(app: Any, browser: Browser) -> None:
    """An admin erases a member on the member page (checkbox, button), in Thai: the form and
    the erased member's page are axe-core clean."""
    from tests.console.conftest import check_page, console_page, make_account

    api = admin_api(app)
    program = create_program(api)
    joined = api.post(f"/api/v1/programs/{program['id']}/members", json={
        "name": "Nok Srisuk", "email": "nok@example.com"}).json
    make_account(app, "admin@example.com", "admin", language="th")
    with serve(app) as url:
        context, page = console_page(browser, url, "admin@example.com")
        page.goto(f"{url}/console/programs/{program['id']}/members/{joined['id']}")
        check_page(page, "member-erase-th")
        page.get_by_role("button", name="ลบข้อมูลส่วนบุคคล").click()  # unconfirmed
        page.wait_for_load_state()
        assert page.locator("#confirm_erase-errors").is_visible()
        page.console_errors.clear()  # type: ignore[attr-defined]  # Chromium logged the 422
        page.get_by_label("ฉันเข้าใจว่าข้อมูลส่วนบุคคลของสมาชิกจะถูกลบถาวรและบัตรจะถูกยกเลิก").check()
        page.get_by_role("button", name="ลบข้อมูลส่วนบุคคล").click()
        page.wait_for_selector("#erased")
        assert page.locator("h1").inner_text() == "สมาชิกที่ถูกลบข้อมูล"  # "Erased member"
        check_page(page, "member-erased-th")
        context.close()
