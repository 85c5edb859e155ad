"""A till on a phone (headless Chromium, 390×844) in every language: a manager's enrolment
link enrols the device, a staff member signs in with the PIN pad, and five wrong PINs lock
another member, told plainly in their language. Every page of the till's own is axe-clean.

The whole flow (the PIN pad's buttons, signing in and out) runs once, in English; each other
language goes through the same pages (enrolment, names, PIN pad, a wrong PIN, the lock, the
used link) for their wording and axe-core, with the PINs typed into the field.

SQLite only (test_till_accounts.py covers PostgreSQL). Screenshots go to
``test-artifacts/till-<language>-*.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser import ARTIFACTS, PHONE, axe_violations, offline_page
from tests.staff.conftest import Till

# What each language must say: the PIN pad's heading word, attempts left, and the lock.
WORDING = {
    "en": ("PIN", "1 attempt left", "locked: try again in 15 minutes"),
    "id": ("PIN", "Tinggal 1 percobaan lagi", "coba lagi dalam 15 menit"),
    "th": ("รหัส PIN", "เหลืออีก 1 ครั้ง", "ลองอีกครั้งใน 15 นาที"),
    "ms": ("PIN", "Tinggal 1 cubaan lagi", "cuba lagi dalam 15 minit"),
}


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    """SQLite only (overrides conftest's both-databases parameter for this module)."""
    return sqlite_database


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context, page = offline_page(browser, **PHONE)
    try:
        yield page
    finally:
        context.close()


def shot(page: Page, language: str, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"till-{language}-{name}.png"), full_page=True)


def accessible(page: Page) -> None:
    assert axe_violations(page) == []


def tap_pin(page: Page, pin: str) -> None:
    """Type ``pin`` on the pad's buttons, then OK."""
    for digit in pin:
        page.locator(f".pinpad [data-digit='{digit}']").click()
    page.locator(".pinpad button[type=submit]").click()


def _enrol(page: Page, app: Any, live_url: str, till: Till, program: dict[str, Any],
           language: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Siti and Ana (who speak ``language``) at a new location, and a device enrolled there
    with the manager's link, opened on the phone; the names page shows. Returns Siti, Ana and
    the link."""
    location = till.location(program)
    siti = till.add_staff("Siti", "2468", location, language=language)
    ana = till.add_staff("Ana", "1357", location, language=language)
    device = till.new_device(location)
    link = device["enrol_url"].replace(app.config["BASE_URL"], live_url)

    # The manager's link, opened on the till's phone.
    page.goto(f"{link}?lang={language}")
    assert page.locator("html").get_attribute("lang") == language
    shot(page, language, "enrol")
    accessible(page)
    page.locator("#enrol").click()
    page.wait_for_url("**/staff/login")

    # The names of who works here, as big buttons.
    names = page.locator(".member-button")
    assert names.all_inner_texts() == ["Ana", "Siti"]
    box = names.first.bounding_box()
    assert box is not None and box["height"] >= 64
    shot(page, language, "names")
    accessible(page)
    return siti, ana, link


def _pin_pad(page: Page, language: str) -> None:
    """The PIN pad, as opened from the names."""
    pin_word = WORDING[language][0]
    assert page.locator("html").get_attribute("lang") == language
    assert pin_word in page.locator("label[for=pin]").inner_text()
    assert page.locator("#pin").get_attribute("inputmode") == "numeric"
    key = page.locator(".pinpad [data-digit='5']").bounding_box()
    assert key is not None and key["height"] >= 56 and key["width"] >= 56
    shot(page, language, "pin")
    accessible(page)


def _wrong_pins_lock(page: Page, language: str,
                     send_pin: Callable[[Page, str], None]) -> None:
    """Five wrong PINs (``send_pin``) on Ana's pad: the fourth says one attempt is left, the
    fifth locks her out."""
    _, one_left, lock_words = WORDING[language]
    for attempt in range(1, 5):
        send_pin(page, "0000")
        page.locator("#pin-errors").wait_for()
        assert page.locator("#pin").input_value() == ""
        assert str(5 - attempt) in page.locator("#pin-errors").inner_text()
    assert one_left in page.locator("#pin-errors").inner_text()
    shot(page, language, "wrong-pin")
    accessible(page)
    send_pin(page, "0000")
    locked = page.locator("#pin-locked")
    locked.wait_for()
    assert lock_words in locked.inner_text() and "Ana" in locked.inner_text()
    assert page.locator("#pin").count() == 0
    shot(page, language, "locked")
    accessible(page)


def _link_used_up(page: Page, link: str) -> None:
    """The link is used up: opened again, it says so; and nothing went wrong on the way."""
    page.goto(link)
    assert page.locator("#link-gone").is_visible()
    accessible(page)
    # No script or CSP error (the 422/423/410 answers are logged too, and meant).
    errors = page.console_errors  # type: ignore[attr-defined]
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []
    assert page.outside_requests == []  # type: ignore[attr-defined]


def type_pin(page: Page, pin: str) -> None:
    """Type ``pin`` into the PIN field (as a keyboard does), then OK."""
    page.locator("#pin").fill(pin)
    page.locator(".pinpad button[type=submit]").click()


def test_enrol_sign_in_with_the_pin_pad_and_lock_after_five_wrong_pins(
        app: Any, live_url: str, phone: Page, till: Till, program: dict[str, Any]) -> None:
    page, language = phone, "en"
    siti, ana, link = _enrol(page, app, live_url, till, program, language)

    page.locator(".member-button", has_text="Siti").click()
    page.wait_for_url(f"**/staff/pin/{siti['id']}*")
    _pin_pad(page, language)
    tap_pin(page, "2468")
    page.wait_for_url("**/staff")
    assert "Siti" in page.locator("#staff-name").inner_text()
    shot(page, language, "signed-in")

    # Signing out goes back to the names: the device stays enrolled.
    page.locator("form[action='/staff/logout'] button").click()
    page.wait_for_url("**/staff/login")
    page.locator(".member-button", has_text="Ana").click()
    _wrong_pins_lock(page, language, tap_pin)
    assert ana["id"] != siti["id"]
    _link_used_up(page, link)


@pytest.mark.parametrize("language", [language for language in WORDING if language != "en"])
def test_each_page_of_the_till_in_every_language(app: Any, live_url: str, phone: Page,
                                                 till: Till, program: dict[str, Any],
                                                 language: str) -> None:
    page = phone
    _, ana, link = _enrol(page, app, live_url, till, program, language)
    page.locator(".member-button", has_text="Ana").click()
    page.wait_for_url(f"**/staff/pin/{ana['id']}*")
    _pin_pad(page, language)
    _wrong_pins_lock(page, language, type_pin)
    _link_used_up(page, link)
