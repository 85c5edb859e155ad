"""The member pages in a real browser: headless Chromium, driven by Playwright.

The app is served on 127.0.0.1 by Werkzeug in a thread. These tests run on SQLite only: the
page code is the same on both databases, and test_pages.py covers PostgreSQL. Chromium is
Debian's (``apt-get install -y chromium fonts-noto-core``); Playwright never downloads a browser
here. A missing Chromium fails the tests, it does not skip them.

Screenshots of the card page in every language go to ``test-artifacts/``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import zxingcpp
from PIL import Image, ImageChops
from playwright.sync_api import Browser, BrowserContext, Page
from sqlalchemy import select

from app.enrollment.links import card_page_path, card_page_url
from app.extensions import db
from app.loyalty.codes import redemption_code
from app.loyalty.models import Card, Member, Program
from app.wallet.apple.pass_files import pass_url
from app.wallet.google import links as google_links
from tests.browser import ARTIFACTS, PHONE, axe_violations, offline_page, serve
from tests.clock import FakeClock
from tests.factories import admin_api, create_card, create_program, make_app

GOOGLE_SAVE = "https://pay.google.com/gp/v/save/browser-test"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Mobile Safari/537.36")
DESKTOP = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Safari/537.36")
DEVICES: dict[str, dict[str, Any]] = {
    "iphone": {**PHONE, "user_agent": IPHONE},
    "android": {**PHONE, "viewport": {"width": 412, "height": 915}, "user_agent": ANDROID},
    "desktop": {"viewport": {"width": 1280, "height": 900}, "user_agent": DESKTOP},
}


def fake_save_url(card: Card) -> str:
    """Stands in for app.wallet.google.links.save_url, built elsewhere."""
    return f"{GOOGLE_SAVE}/{card.serial_number}"


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    """SQLite only (overrides conftest's both-databases parameter for this module)."""
    return sqlite_database


def new_page(browser: Browser, device: str, **options: Any) -> tuple[BrowserContext, Page]:
    return offline_page(browser, **{**DEVICES[device], **options})


def card_path(app: Any, serial: str) -> str:
    with app.app_context():
        return card_page_path(serial)


def decode_qr(page: Page, selector: str) -> str:
    """Screenshot a QR code on the page and read it, as a phone's camera would."""
    image = Image.open(io.BytesIO(page.locator(selector).screenshot()))
    results = zxingcpp.read_barcodes(image)
    assert len(results) == 1, f"no readable QR code in {selector}"
    return str(results[0].text)


def test_join_in_the_browser_and_land_on_the_card_page(app: Any, browser: Browser,
                                                       live_url: str, program: dict) -> None:
    context, page = new_page(browser, "desktop", locale="en-US")
    try:
        page.goto(f"{live_url}/join/kopi-test")
        # Sent empty first: the server's messages come back in the page's language.
        page.get_by_role("button", name="Get my card").click()
        page.wait_for_url("**/join/kopi-test")
        assert page.locator("#name-errors").inner_text() == "Please enter your name."

        page.get_by_label("Your name").fill("Putri Wulandari")
        page.get_by_label("E-mail (optional)").fill("putri@example.com")
        page.get_by_label("Language", exact=True).select_option("en")
        page.get_by_label("I accept the program's terms and conditions.").check()
        page.get_by_label("Send me offers and news (optional).").check()
        page.get_by_role("button", name="Get my card").click()
        page.wait_for_url("**/card/**")

        with app.app_context():
            card = db.session.scalar(
                select(Card).join(Member).where(Member.email == "putri@example.com"))
            assert card is not None
            expected_page = card_page_url(card)
            apple = pass_url(card)
            google = google_links.save_url(card)  # None while Google Wallet is not set up
            code = redemption_code(card)
        assert urlsplit(page.url).path == urlsplit(expected_page).path
        assert page.locator("#balance").inner_text() == "0"
        assert page.locator("#tier").inner_text() == "Bronze"
        assert "You're in, Putri!" in page.locator("main").inner_text()

        apple_link = page.locator('a[data-wallet="apple"]')
        assert apple_link.is_visible()
        assert apple_link.get_attribute("href") == apple
        assert apple_link.get_attribute("aria-label") == "Add to Apple Wallet"
        google_link = page.locator('a[data-wallet="google"]')
        if google is None:
            assert google_link.count() == 0
        else:
            assert google_link.get_attribute("href") == google
        assert decode_qr(page, "svg.qr-page") == expected_page  # open it on the phone
        page.get_by_text("Show my code").click()  # the till's code, behind a tap on a desktop
        assert decode_qr(page, "svg.qr:not(.qr-page)") == code
        assert page.outside_requests == []  # type: ignore[attr-defined]
    finally:
        context.close()


@pytest.mark.parametrize("device, apple, google, page_qr", [
    ("iphone", True, False, False),
    ("android", False, True, False),
    ("desktop", True, True, True),
])
def test_wallet_buttons_for_each_device(app: Any, browser: Browser, live_url: str, card: dict,
                                        device: str, apple: bool, google: bool,
                                        page_qr: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(google_links, "save_url", fake_save_url)
    serial = card["serial_number"]
    with app.app_context():
        found = db.session.scalar(
            select(Card).where(Card.serial_number == serial))
        apple_url = pass_url(found)
    context, page = new_page(browser, device)
    try:
        page.goto(live_url + card_path(app, serial))
        apple_link = page.locator('a[data-wallet="apple"]')
        google_link = page.locator('a[data-wallet="google"]')
        assert apple_link.count() == int(apple)
        assert google_link.count() == int(google)
        if apple:
            assert apple_link.is_visible()
            assert apple_link.get_attribute("href") == apple_url
            assert "Apple Wallet" in apple_link.inner_text()
        if google:
            assert google_link.is_visible()
            assert google_link.get_attribute("href") == f"{GOOGLE_SAVE}/{serial}"
            # The card fixture's member reads Indonesian.
            assert google_link.inner_text().strip() == "Tambahkan ke Google Wallet"
        assert page.locator("#open-on-phone").count() == int(page_qr)
        # The badge is at least as tall as a thumb (and as Apple and Google ask: 48px+).
        badge = (apple_link if apple else google_link).bounding_box()
        assert badge is not None and badge["height"] >= 48
        assert page.outside_requests == []  # type: ignore[attr-defined]
    finally:
        context.close()


def test_card_page_screenshots_in_every_language(app: Any, browser: Browser, live_url: str,
                                                 card: dict) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = card_path(app, card["serial_number"])
    context, page = new_page(browser, "iphone")
    titles = {}
    try:
        for language in ("en", "id", "th", "ms"):
            page.goto(f"{live_url}{path}?lang={language}")
            assert page.locator("html").get_attribute("lang") == language
            page.evaluate("document.fonts.ready")
            titles[language] = page.locator("#code-title").inner_text()
            target = ARTIFACTS / f"card-{language}.png"
            page.screenshot(path=str(target), full_page=True)
            assert target.stat().st_size > 10_000
    finally:
        context.close()
    assert titles == {
        "en": "Show this code at the counter",
        "id": "Tunjukkan kode ini di kasir",
        "th": "แสดงโค้ดนี้ที่เคาน์เตอร์",
        "ms": "Tunjukkan kod ini di kaunter",
    }


# Thai letters, each drawn differently. Missing glyphs would all be the same "tofu" box.
THAI_LETTERS = ["ก", "ข", "ค", "ง", "ม"]
# Unassigned in the Thai block: no font has them, so they draw the tofu box of the font in use.
UNASSIGNED_THAI = ["\u0e7e", "\u0e7f"]

_GLYPH_PROBE = """
(letters) => {
  const box = document.createElement('div');
  box.id = 'glyph-probe';
  box.style.cssText = 'position:absolute;left:0;top:0;background:#fff;color:#000;' +
                      'font-size:40px;line-height:1;padding:4px';
  for (const letter of letters) {
    const span = document.createElement('span');
    span.textContent = letter;
    span.style.cssText = 'display:inline-block;width:60px;height:60px;text-align:center';
    box.appendChild(span);
  }
  document.body.appendChild(box);
}
"""


def test_thai_page_renders_thai_glyphs(app: Any, browser: Browser, live_url: str,
                                       card: dict) -> None:
    context, page = new_page(browser, "android")
    try:
        page.goto(f"{live_url}{card_path(app, card['serial_number'])}?lang=th")
        page.evaluate("document.fonts.ready")
        assert page.evaluate("document.fonts.check('16px \"Noto Sans Thai\"', 'ก')")

        # Which fonts Chromium really drew the Thai heading with, from the DevTools protocol.
        cdp = context.new_cdp_session(page)
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        heading = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#code-title"})
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": heading["nodeId"]})["fonts"]
        thai_glyphs = sum(f["glyphCount"] for f in fonts if "Thai" in f["familyName"])
        assert thai_glyphs >= len("แสดงโค้ดนี้ที่เคาน์เตอร์") - 2, (
            f"Thai drawn without a Thai font ({fonts}): install fonts-noto-core")

        # And in pixels: every letter looks different, and none looks like the tofu box.
        page.evaluate(_GLYPH_PROBE, [*THAI_LETTERS, *UNASSIGNED_THAI])
        spans = page.locator("#glyph-probe span")
        images = [Image.open(io.BytesIO(spans.nth(i).screenshot())).convert("L")
                  for i in range(spans.count())]
        *letters, tofu, other_tofu = images
        # The probe can see tofu: two different missing characters draw the same box.
        assert ImageChops.difference(tofu, other_tofu).getbbox() is None
        assert tofu.getextrema()[0] < 128  # and the box is drawn, not blank
        for i, image in enumerate(letters):
            assert ImageChops.difference(image, tofu).getbbox(), (
                f"{THAI_LETTERS[i]!r} renders as tofu: install fonts-noto-core")
            for j in range(i):
                assert ImageChops.difference(image, letters[j]).getbbox(), (
                    f"{THAI_LETTERS[i]!r} and {THAI_LETTERS[j]!r} render the same (tofu)")
        assert page.outside_requests == []  # type: ignore[attr-defined]
    finally:
        context.close()


# --- Phones of two sizes, every language: joining, the welcome, the language links ----------

SMALL_PHONES = {"360x640": {"width": 360, "height": 640}, "390x844": {"width": 390, "height": 844}}
WELCOME = {"en": "You're in, Putri!", "id": "Selamat bergabung, Putri!",
           "th": "ยินดีต้อนรับ คุณ Putri!", "ms": "Selamat datang, Putri!"}
THAI_TERMS = "แต้มไม่มีมูลค่าเป็นเงินสด และโอนให้บัตรอื่นไม่ได้"


def language_links_fit(page: Page) -> None:
    """The language links sit on one row, inside the viewport, each a 44 px tap target."""
    width = page.viewport_size["width"]  # type: ignore[index]
    boxes = [page.locator(".languages a").nth(i).bounding_box() for i in range(4)]
    assert all(box is not None for box in boxes)
    tops = {round(box["y"]) for box in boxes}  # type: ignore[index]
    assert len(tops) == 1, f"language links wrap: {boxes}"
    for box in boxes:
        assert box["height"] >= 44, f"tap target too small: {box}"  # type: ignore[index]
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, box  # type: ignore[index]


@pytest.mark.parametrize("size", SMALL_PHONES)
@pytest.mark.parametrize("language", ["en", "id", "th", "ms"])
def test_join_and_welcome_on_small_phones(app: Any, api: Any, browser: Browser, live_url: str,
                                          program: dict, size: str, language: str) -> None:
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}", json={"texts": {
        "th": {"terms": THAI_TERMS, "description": "กาแฟทุกแก้วได้แต้ม"}}}).status_code == 200
    ARTIFACTS.mkdir(exist_ok=True)
    viewport = SMALL_PHONES[size]
    context, page = new_page(browser, "iphone", viewport=viewport)
    try:
        page.goto(f"{live_url}/join/kopi-test?lang={language}")
        page.evaluate("document.fonts.ready")
        assert page.locator("html").get_attribute("lang") == language
        language_links_fit(page)
        assert axe_violations(page) == []
        if language == "th":
            page.locator("summary").first.click()
            assert page.locator("#terms").inner_text() == THAI_TERMS
        page.locator("#name").fill("Putri Wulandari")
        assert page.locator("#preview-name").inner_text() == "Putri Wulandari"  # live preview
        page.screenshot(path=str(ARTIFACTS / f"join-{language}-{size}.png"), full_page=True)
        page.locator("#consent_terms").check()
        page.locator("button[type=submit]").click()
        page.wait_for_url("**/card/**")
        page.evaluate("document.fonts.ready")

        assert page.locator("#welcome-title").inner_text() == WELCOME[language]
        button = page.locator('#welcome a[data-wallet="apple"]')
        box = button.bounding_box()
        assert box is not None
        # Visible without scrolling: the whole button inside the first screen.
        assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], box
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
        language_links_fit(page)
        assert axe_violations(page) == []
        page.screenshot(path=str(ARTIFACTS / f"welcome-{language}-{size}.png"))
        page.screenshot(path=str(ARTIFACTS / f"welcome-{language}-{size}-full.png"),
                        full_page=True)
        assert page.outside_requests == []  # type: ignore[attr-defined]
        assert page.console_errors == []  # type: ignore[attr-defined]
    finally:
        context.close()


def test_thai_card_page_greets_with_a_space(app: Any, browser: Browser, live_url: str,
                                            card: dict) -> None:
    context, page = new_page(browser, "iphone")
    try:
        page.goto(f"{live_url}{card_path(app, card['serial_number'])}?lang=th")
        assert page.locator(".hello").inner_text() == "สวัสดี คุณ Siti!"
    finally:
        context.close()


def visible_qr_codes(page: Page) -> int:
    codes = page.locator("svg.qr")
    return sum(1 for i in range(codes.count()) if codes.nth(i).is_visible())


@pytest.mark.parametrize("language", ["en", "id", "th", "ms"])
def test_desktop_shows_one_qr_until_show_my_code(app: Any, browser: Browser, live_url: str,
                                                 card: dict, language: str) -> None:
    context, page = new_page(browser, "desktop")
    try:
        page.goto(f"{live_url}{card_path(app, card['serial_number'])}?lang={language}")
        assert visible_qr_codes(page) == 1
        assert page.locator("svg.qr-page").is_visible()  # the labelled one: open on the phone
        assert axe_violations(page) == []
        page.locator("#show-code summary").click()  # no script: a <details>
        assert visible_qr_codes(page) == 2
        assert page.locator("#code-text").is_visible()
        assert axe_violations(page) == []
        page.screenshot(path=str(ARTIFACTS / f"card-desktop-{language}.png"), full_page=True)
    finally:
        context.close()


@pytest.mark.parametrize("size", SMALL_PHONES)
def test_card_page_with_rewards_is_accessible_on_phones(app: Any, api: Any, keys: dict,
                                                        browser: Browser, live_url: str,
                                                        card: dict, size: str) -> None:
    serial = card["serial_number"]
    assert api.as_(keys["pos"]).post(f"/api/v1/cards/{serial}/earn",
                                     json={"points": 80}).status_code == 201
    context, page = new_page(browser, "android", viewport=SMALL_PHONES[size])
    try:
        for language in ("en", "id", "th", "ms"):
            page.goto(f"{live_url}{card_path(app, serial)}?lang={language}")
            page.evaluate("document.fonts.ready")
            assert page.locator("#next-reward").is_visible()
            # The till QR as large as the card allows, and inside it.
            qr = page.locator("section.code svg.qr").bounding_box()
            section = page.locator("section.code").bounding_box()
            assert qr is not None and section is not None
            assert qr["width"] >= 0.75 * section["width"], (qr, section)
            assert section["x"] <= qr["x"] and (qr["x"] + qr["width"]
                                                <= section["x"] + section["width"]), (qr, section)
            language_links_fit(page)
            assert axe_violations(page) == [], language
            page.screenshot(path=str(ARTIFACTS / f"card-{language}-{size}.png"), full_page=True)
        assert page.locator("#next-reward").inner_text() == "20 mata lagi untuk Coffee"
    finally:
        context.close()


POINTS_NOTES = {
    "en": ("120 points expire on 27 Nov 2027", "+40 pending until 21 Nov"),
    "id": ("120 poin kedaluwarsa pada 27 Nov 2027", "+40 tertunda hingga 21 Nov"),
    "th": ("120 แต้ม จะหมดอายุวันที่ 27 พ.ย. 2027", "+40 รอเข้าบัญชีถึง 21 พ.ย."),
    "ms": ("120 mata luput pada 27 Nov 2027", "+40 belum sah sehingga 21 Nov"),
}
POINTS_START = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)  # 27 Nov, 03:00 in Jakarta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=POINTS_START.timestamp())


@pytest.fixture
def clocked_app(database: Any, tmp_path: Any, clock: FakeClock) -> Iterator[Any]:
    """The app on SQLite, on a clock the test moves."""
    yield from make_app(database, tmp_path, CLOCK=clock)


def set_program(app: Any, program_id: int, **values: Any) -> None:
    with app.app_context():
        row = db.session.get(Program, program_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        db.session.commit()


def test_card_page_with_pending_and_expiring_points_is_accessible(
        clocked_app: Any, clock: FakeClock, browser: Browser) -> None:
    """The expiry reminder and the pending points on a 390x844 phone, in every language."""
    app = clocked_app
    api = admin_api(app)
    program = create_program(api)
    serial = create_card(api, program, name="Putri")["serial_number"]

    def earn(points: int) -> None:
        assert api.post(f"/api/v1/cards/{serial}/earn", json={
            "amount": points * 1_000_000, "currency": "IDR"}).status_code == 201

    set_program(app, program["id"], time_zone="Asia/Jakarta", points_expire_after_days=365)
    earn(120)  # expires on 27 Nov 2027
    clock.advance(timedelta(days=352).total_seconds())  # 14 Nov 2027: 13 days before
    set_program(app, program["id"], pending_days=7)
    earn(40)  # available on 21 Nov 2027
    with serve(app) as url:
        context, page = new_page(browser, "iphone")
        try:
            for language, (expiry, pending) in POINTS_NOTES.items():
                page.goto(f"{url}{card_path(app, serial)}?lang={language}")
                page.evaluate("document.fonts.ready")
                assert page.locator("#expiry").inner_text() == expiry
                assert page.locator("#pending-1").inner_text() == pending
                assert page.locator("#balance").inner_text() == "120"
                assert axe_violations(page) == [], language
                page.screenshot(path=str(ARTIFACTS / f"card-points-{language}.png"),
                                full_page=True)
        finally:
            context.close()
