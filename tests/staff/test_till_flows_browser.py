"""The till on a phone (390x844) in headless Chromium, in all four languages: a manager's
link enrols the phone, a staff member signs in with the PIN pad, then scan, add points for a
typed IDR amount, undo, scan again, redeem, undo, and a typed short code; every entry records
the staff member, the device and the location. The page shows the program (not "Pointpass")
and its word for points in the staff member's language; every target is at least 48 px;
axe-core finds no violation.

The whole flow runs once, in Bahasa Indonesia, with a fake camera (its own Chromium, fed the
card's QR code). Each other language goes through the screens that say something in it (the
card, points added for an amount typed as that language writes it, undone, a redemption),
with the axe and target-size checks on each, on a shared Chromium without a camera (the
code typed in): the steps that say nothing new in another language are not repeated.

SQLite only, as the scanner's other browser tests. Screenshots go to
``test-artifacts/till-<lang>-<step>.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, Playwright
from sqlalchemy import select

from app.extensions import db
from app.loyalty.models import Card, LedgerEntry
from tests.browser import ARTIFACTS, PHONE, offline_page
from tests.factories import ApiClient, card_code, card_short_code, create_card, ledger_state
from tests.redemption.test_staff_browser import camera_video, staff_phone
from tests.staff.conftest import Till
from tests.staff.test_till_browser import tap_pin

# What each language's screen says, and how its staff type 45 000 rupiah.
SCREENS = {
    "en": {"amount": "45,000", "label": "Points", "added": "Added: 4 Points",
           "undone": "Undone. The balance is back as it was.", "redeemed": "Redeemed: Coffee"},
    "id": {"amount": "45.000", "label": "Poin", "added": "Ditambahkan: 4 Poin",
           "undone": "Dibatalkan. Saldo kembali seperti semula.",
           "redeemed": "Ditukar: Coffee"},
    "th": {"amount": "45,000", "label": "แต้ม", "added": "เพิ่มแล้ว: 4 แต้ม",
           "undone": "ยกเลิกแล้ว ยอดแต้มกลับเป็นเหมือนเดิม", "redeemed": None},
    "ms": {"amount": "45,000", "label": "Mata", "added": "Ditambah: 4 Mata",
           "undone": "Dibatalkan. Baki kembali seperti asal.", "redeemed": None},
}


#: The language the whole flow runs in (it has every wording, and writes 45.000).
WHOLE_FLOW = "id"


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    """SQLite only (overrides conftest's both-databases parameter for this module)."""
    return sqlite_database


def _no_axe_violations(page: Page) -> None:
    results = Axe().run(page)
    violations = results.response["violations"]
    assert violations == [], results.generate_report()


def _small_targets(page: Page) -> list[str]:
    """Visible buttons, inputs, summaries and links of the till under 48 px tall."""
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        '#scanner-app button, #scanner-app input, #scanner-app summary, .staff-bar button'))
        .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().height < 48)
        .map((e) => e.id || e.outerHTML.slice(0, 80))""")


def _shot(page: Page, lang: str, step: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"till-{lang}-{step}.png"), full_page=True)


def _funded_card(app: Any, api: ApiClient, program: dict[str, Any], lang: str) -> str:
    """A new member's card with 250 points (from the POS API); its serial."""
    card = create_card(api, program, name="Siti Rahma", email=f"siti-{lang}@example.com")
    serial = card["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 250}).status_code == 201
    return str(serial)


def _enrol_and_sign_in(page: Page, app: Any, live_url: str, till: Till,
                       program: dict[str, Any], lang: str) -> tuple[dict[str, Any],
                                                                    dict[str, Any], int]:
    """The manager's one-time link enrols this phone at a location; Dewi (who speaks
    ``lang``) signs in with the PIN pad. Returns Dewi, the device and the location."""
    location = till.location(program)
    dewi = till.add_staff("Dewi", "2468", location, language=lang)
    device = till.new_device(location)
    page.goto(device["enrol_url"].replace(app.config["BASE_URL"], live_url))
    page.locator("#enrol").click()
    page.wait_for_url("**/staff/login")
    page.locator(".member-button", has_text="Dewi").click()
    tap_pin(page, "2468")
    page.wait_for_url("**/staff")
    assert page.locator("html").get_attribute("lang") == lang
    return dewi, device, location


def _card_screen(page: Page, screen: dict[str, Any]) -> None:
    """The scanned card, as the till shows it."""
    assert page.locator("#member-name").inner_text() == "Siti"
    assert page.locator("#balance").inner_text() == "250"
    assert page.locator("#points-label").text_content() == screen["label"]
    assert page.locator("#currency").inner_text() == "IDR"
    assert _small_targets(page) == []


def _add_points_and_undo(page: Any, app: Any, serial: str, screen: dict[str, str],
                         lang: str) -> None:
    """From the card's screen: add points for an amount (254), then undo it (250)."""
    _card_screen(page, screen)
    _shot(page, lang, "1-card")
    _no_axe_violations(page)

    _add_points_for_an_amount(page, screen)
    _shot(page, lang, "2-added")
    _no_axe_violations(page)
    assert ledger_state(app, serial) == (254, 254, 2)

    _undo(page)
    assert page.locator("#redeemed-reward").inner_text() == screen["undone"]
    assert page.locator("#new-balance").inner_text() == "250"
    _shot(page, lang, "3-undone")


def _add_points_for_an_amount(page: Page, screen: dict[str, Any]) -> None:
    """Add points for a purchase of 45 000 rupiah, typed as the language writes it; a double
    tap adds them once."""
    page.locator("#amount").fill(screen["amount"])
    page.locator("#earn button[type=submit]").dblclick()
    page.locator("#redeemed").wait_for(state="visible")
    assert page.locator("#redeemed-reward").inner_text() == screen["added"]
    assert page.locator("#new-balance").inner_text() == "254"
    assert page.locator("#undo").is_visible()
    assert _small_targets(page) == []


def _undo(page: Page) -> None:
    page.locator("#undo").click()
    page.locator("#undo").wait_for(state="hidden")


def _redeem(page: Page, screen: dict[str, Any]) -> None:
    """The reward offered on the scanned card, redeemed."""
    page.locator("button.reward").wait_for(state="visible")
    reward = page.locator("button.reward")
    assert screen["label"] in reward.inner_text()
    reward.click()
    page.locator("#redeemed").wait_for(state="visible")
    if screen["redeemed"]:
        assert page.locator("#redeemed-reward").inner_text() == screen["redeemed"]
    assert page.locator("#new-balance").inner_text() == "150"


def _says_nothing_in_english(page: Page, lang: str) -> None:
    if lang != "en":
        assert "Points" not in page.locator("body").inner_text()
        assert "POINTS" not in page.locator("body").inner_text()


def test_the_whole_till_flow(app: Any, api: ApiClient, program: dict[str, Any],
                             playwright: Playwright, live_url: str, till: Till,
                             tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    lang = WHOLE_FLOW
    screen = SCREENS[lang]
    serial = _funded_card(app, api, program, lang)
    video = camera_video(card_code(app, serial), tmp_path)

    with staff_phone(playwright, "--use-fake-device-for-media-stream",
                     "--use-fake-ui-for-media-stream",
                     f"--use-file-for-fake-video-capture={video}",
                     permissions=["camera"]) as page:
        dewi, device, location = _enrol_and_sign_in(page, app, live_url, till, program, lang)
        _shot(page, lang, "0-signed-in")
        # The program, not "Pointpass", heads the page (the only program there is).
        assert page.locator("#program-name").inner_text().upper() == "KOPI TEST"
        assert "Pointpass" not in page.locator(".staff-bar").inner_text()

        # Scan: the camera finds the card's code.
        page.locator("#member-name").wait_for(state="visible")
        _add_points_and_undo(page, app, serial, screen, lang)
        assert ledger_state(app, serial) == (250, 250, 3)

        # Next customer is the same one: the camera scans the card again; redeem, then undo.
        page.locator("#next").click()
        _redeem(page, screen)
        _shot(page, lang, "4-redeemed")
        _no_axe_violations(page)
        _undo(page)
        assert page.locator("#new-balance").inner_text() == "250"
        _shot(page, lang, "5-redemption-undone")
        assert ledger_state(app, serial) == (250, 250, 5)

        # The redemption rotated the card's code: its new short code (the one under the QR),
        # typed in lower case with spaces, opens the card.
        page.locator("#next").click()
        page.locator("#manual-code").fill(card_short_code(app, serial).lower().replace("-", " "))
        page.locator("#manual button[type=submit]").click()
        page.locator("#earn-box").wait_for(state="visible")
        assert page.locator("#balance").inner_text() == "250"
        _shot(page, lang, "6-typed-code")

        # Whole points, without a purchase.
        page.locator(".points-instead summary").click()
        page.locator("#points").fill("20")
        page.locator("#earn-points button[type=submit]").click()
        page.locator("#redeemed").wait_for(state="visible")
        assert page.locator("#new-balance").inner_text() == "270"
        assert ledger_state(app, serial) == (270, 270, 6)
        _says_nothing_in_english(page, lang)
        assert page.outside_requests == []  # type: ignore[attr-defined]
        # The camera, still on, saw the card's used code after the redemption (a 409).
        assert [e for e in page.console_errors  # type: ignore[attr-defined]
                if "409" not in e] == []

    # Every entry made at the till names Dewi, this phone and its location.
    with app.app_context():
        entries = db.session.execute(
            select(LedgerEntry.actor, LedgerEntry.staff_member_id, LedgerEntry.device_id,
                   LedgerEntry.location_id)
            .join(Card, Card.id == LedgerEntry.card_id)
            .where(Card.serial_number == serial).order_by(LedgerEntry.id)).all()
        db.session.rollback()
    assert len(entries) == 6
    assert entries[0].actor.startswith("api_key:")  # the opening 250, from the POS API
    assert {tuple(e) for e in entries[1:]} == {
        (f"staff:{dewi['id']}", dewi["id"], device["id"], location)}


@pytest.mark.parametrize("lang", [lang for lang in SCREENS if lang != WHOLE_FLOW])
def test_the_till_in_every_language(app: Any, api: ApiClient, program: dict[str, Any],
                                    browser: Browser, live_url: str, till: Till,
                                    lang: str) -> None:
    """The screens of the whole flow that say something, in ``lang`` (the code typed in:
    this phone has no camera)."""
    ARTIFACTS.mkdir(exist_ok=True)
    screen = SCREENS[lang]
    serial = _funded_card(app, api, program, lang)
    code = card_code(app, serial)
    context, page = offline_page(browser, **PHONE)
    try:
        _enrol_and_sign_in(page, app, live_url, till, program, lang)
        page.locator("#scanner-app[data-camera=off]").wait_for()
        page.locator("#manual-code").fill(code)
        page.locator("#manual button[type=submit]").click()
        page.locator("#member-name").wait_for(state="visible")
        _add_points_and_undo(page, app, serial, screen, lang)

        page.locator("#next").click()
        page.locator("#manual-code").fill(code)
        page.locator("#manual button[type=submit]").click()
        _redeem(page, screen)
        _shot(page, lang, "4-redeemed")
        _no_axe_violations(page)
        assert ledger_state(app, serial) == (150, 150, 4)
        _says_nothing_in_english(page, lang)
        assert page.outside_requests == []  # type: ignore[attr-defined]
        assert page.console_errors == []  # type: ignore[attr-defined]
    finally:
        context.close()
