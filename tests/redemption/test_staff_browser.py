"""The staff scanner in headless Chromium, reading a card's QR code from a fake camera.

The card's current code (from its .pkpass) is drawn as a QR code, turned into a looping
``.y4m`` video with ffmpeg, and fed to Chromium as its camera
(``--use-file-for-fake-video-capture``). The page must find the code with jsQR, show the member
and the rewards, redeem on one tap and show the new balance; the database must agree. A second
run has no camera at all and goes through the manual-entry field, in Thai. A scan pays for one
redemption: after it (or when another till used the code) the page offers no reward on it and
says to scan again.

SQLite only (test_staff_pages.py covers PostgreSQL). Chromium and ffmpeg are Debian's
(``scripts/browser.sh`` installs them); a missing one fails the tests, it does not skip them.
Screenshots go to ``test-artifacts/staff-*.png``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import qrcode
from PIL import Image
from playwright.sync_api import Browser, Page, Playwright
from sqlalchemy import func, select

from app.extensions import db
from app.loyalty.codes import redemption_code, short_code
from app.loyalty.models import Card
from app.redemption import shortcodes
from app.redemption.models import Redemption
from tests.browser import ARTIFACTS, PHONE, launch, need, offline_page
from tests.factories import ApiClient, ledger_state

FFMPEG = os.environ.get("POINTPASS_TEST_FFMPEG") or shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    """SQLite only (overrides conftest's both-databases parameter for this module)."""
    return sqlite_database


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A phone without a camera: an offline page of the module's Chromium (one launch for
    these tests, not one each)."""
    context, page = offline_page(browser, **PHONE)
    try:
        yield page
    finally:
        context.close()


@contextmanager
def staff_phone(playwright: Playwright, *launch_args: str, **options: Any) -> Iterator[Page]:
    """A phone's browser (Chromium started with ``launch_args``) and an offline page
    (``options`` for its context), closed on exit."""
    browser = launch(playwright, *launch_args)
    context, page = offline_page(browser, **PHONE, **options)
    try:
        yield page
    finally:
        context.close()
        browser.close()


def pass_code(app: Any, card: dict[str, Any]) -> str:
    """The code in the card's Apple Wallet pass, as the customer's phone shows it."""
    response = app.test_client().get(card["apple_pass_url"].removeprefix(app.config["BASE_URL"]))
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        message = json.loads(archive.read("pass.json"))["barcodes"][0]["message"]
    with app.app_context():
        found = db.session.scalar(select(Card).where(Card.serial_number == card["serial_number"]))
        assert message == redemption_code(found)
        db.session.rollback()
    return str(message)


def camera_video(code: str, folder: Path) -> Path:
    """A 640x480 ``.y4m`` video of ``code``'s QR code, filling most of the frame."""
    need(FFMPEG, "ffmpeg", "ffmpeg")
    symbol = qrcode.make(code, border=4, box_size=10).get_image().convert("L")
    side = 420
    frame = Image.new("L", (640, 480), 255)
    frame.paste(symbol.resize((side, side), Image.Resampling.NEAREST),
                ((640 - side) // 2, (480 - side) // 2))
    png = folder / "qr.png"
    frame.save(png)
    video = folder / "qr.y4m"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-loop", "1",
                    "-i", str(png), "-t", "3", "-vf", "format=yuv420p,scale=640:480",
                    "-pix_fmt", "yuv420p", str(video)], check=True, timeout=60)
    return video


def card_state(app: Any, serial: str) -> tuple[int, int, int]:
    """(balance, code version, number of redemptions)."""
    with app.app_context():
        card = db.session.scalar(select(Card).where(Card.serial_number == serial))
        redemptions = db.session.scalar(select(func.count(Redemption.id))) or 0
        state = (card.balance, card.barcode_version, redemptions)
        db.session.rollback()
        return state


def scan_target(app: Any, card: dict[str, Any]) -> tuple[str, str, int]:
    """The card's serial, the code its pass shows and its code version (and a folder for
    the screenshots)."""
    ARTIFACTS.mkdir(exist_ok=True)
    serial = card["serial_number"]
    return serial, pass_code(app, card), card_state(app, serial)[1]


def sign_in(page: Page, live_url: str, key: str, language: str = "en") -> None:
    page.goto(f"{live_url}/staff/login?lang={language}")
    page.locator("#key").fill(key)
    page.locator("button[type=submit]").click()
    page.wait_for_url("**/staff")


def test_scan_from_the_camera_and_redeem_with_one_tap(
        app: Any, playwright: Playwright, live_url: str, keys: dict[str, str],
        funded: dict[str, Any], tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    serial = funded["serial_number"]
    video = camera_video(pass_code(app, funded), tmp_path)
    balance, version, _ = card_state(app, serial)
    assert balance == 250

    with staff_phone(playwright, "--use-fake-device-for-media-stream",
                     "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={video}",
                     locale="en-US", permissions=["camera"]) as page:
        sign_in(page, live_url, keys["staff"])
        # The page finds the QR code in the camera's frames by itself.
        page.locator("#member-name").wait_for(state="visible")
        assert page.locator("#scanner-app").get_attribute("data-camera") == "on"
        assert page.locator("#member-name").inner_text() == "Siti"
        assert page.locator("#balance").inner_text() == "250"
        assert page.locator("#points-label").text_content() == "Points"
        assert page.locator("#tier").inner_text() == "Bronze"
        reward = page.locator("button.reward")
        assert reward.count() == 1
        assert "Coffee" in reward.inner_text() and "100 Points" in reward.inner_text()
        box = reward.bounding_box()
        assert box is not None and box["height"] >= 64  # a thumb-sized target
        page.screenshot(path=str(ARTIFACTS / "staff-scanned.png"), full_page=True)

        # A nervous double tap: one redemption.
        reward.dblclick()
        page.locator("#redeemed").wait_for(state="visible")
        assert page.locator("#new-balance").inner_text() == "150"
        assert page.locator("#redeemed-reward").inner_text() == "Redeemed: Coffee"
        assert page.locator("#balance").inner_text() == "150"
        # The scan is used up: no reward is offered on it, the page says to scan again.
        assert page.locator("#scan-again").inner_text() == (
            "One scan, one reward: to redeem another, scan the card again.")
        assert page.locator("button.reward").count() == 0
        assert page.locator("#rewards-box").is_hidden()
        page.screenshot(path=str(ARTIFACTS / "staff-redeemed.png"), full_page=True)

        assert card_state(app, serial) == (150, version + 1, 1)
        assert ledger_state(app, serial) == (150, 150, 2)

        # The camera still sees the customer's old code, which the redemption used up.
        page.locator("#next").click()
        message = page.locator("#message")
        message.wait_for(state="visible")
        assert message.inner_text().startswith("This code was already used. Ask the customer "
                                                "to open the card in their wallet again")
        assert page.locator("#viewfinder").is_visible()
        page.screenshot(path=str(ARTIFACTS / "staff-camera-used-code.png"), full_page=True)
        assert card_state(app, serial) == (150, version + 1, 1)
        assert page.outside_requests == []  # type: ignore[attr-defined]
        # The browser logs the refused scan's 409; anything else (a CSP refusal) is a failure.
        assert [e for e in page.console_errors  # type: ignore[attr-defined]
                if "409" not in e] == []


def test_manual_entry_without_a_camera_in_thai(app: Any, phone: Page, live_url: str,
                                               keys: dict[str, str],
                                               funded: dict[str, Any]) -> None:
    serial, code, version = scan_target(app, funded)
    # No fake camera: the phone has none, or it was refused.
    page = phone
    page.goto(f"{live_url}/staff/login?lang=th")
    page.locator("#key").fill(keys["pos"])  # a till's key cannot redeem
    page.locator("button[type=submit]").click()
    assert page.locator("#login-errors").inner_text() == (
        "คีย์นี้ใช้เครื่องสแกนไม่ได้ ต้องใช้คีย์พนักงาน")
    page.screenshot(path=str(ARTIFACTS / "staff-login-th.png"), full_page=True)

    sign_in(page, live_url, keys["staff"], language="th")
    assert page.locator("html").get_attribute("lang") == "th"
    page.locator("#scanner-app[data-camera=off]").wait_for()
    camera_status = page.locator("#camera-status").inner_text()
    assert camera_status in (
        "ไม่มีกล้องให้ใช้ พิมพ์โค้ดบัตรด้านล่าง",
        "กล้องถูกบล็อก พิมพ์โค้ดบัตรด้านล่าง หรืออนุญาตให้ใช้กล้องในการตั้งค่าเบราว์เซอร์")
    assert page.locator("#viewfinder").is_hidden()

    # A typo first: the error is plain, and in Thai.
    page.locator("#manual-code").fill(code[:-1] + ("A" if code[-1] != "A" else "B"))
    page.locator("#manual button[type=submit]").click()
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert message.inner_text() == "นี่ไม่ใช่โค้ดบัตรที่ถูกต้อง ขอให้ลูกค้าแสดงบัตรอีกครั้ง"
    assert page.locator("#camera-status").inner_text() == camera_status  # still says why

    page.locator("#manual-code").fill(code)
    page.locator("#manual button[type=submit]").click()
    page.locator("#member-name").wait_for(state="visible")
    assert message.is_hidden()
    assert page.locator("#balance").inner_text() == "250"
    page.locator("button.reward").click()
    page.locator("#redeemed").wait_for(state="visible")
    assert page.locator("#new-balance").inner_text() == "150"
    page.screenshot(path=str(ARTIFACTS / "staff-manual-th.png"), full_page=True)
    assert card_state(app, serial) == (150, version + 1, 1)

    # The next customer shows the old code again (a screenshot): refused, plainly.
    page.locator("#next").click()
    page.locator("#manual-code").fill(code)
    page.locator("#manual button[type=submit]").click()
    message.wait_for(state="visible")
    assert message.inner_text().startswith("โค้ดนี้ถูกใช้ไปแล้ว")
    page.screenshot(path=str(ARTIFACTS / "staff-used-code-th.png"), full_page=True)
    assert card_state(app, serial) == (150, version + 1, 1)
    assert page.outside_requests == []  # type: ignore[attr-defined]


def test_a_used_scan_offers_no_more_rewards(app: Any, phone: Page, live_url: str,
                                            keys: dict[str, str],
                                            funded: dict[str, Any]) -> None:
    serial, code, version = scan_target(app, funded)
    page = phone
    sign_in(page, live_url, keys["staff"])
    page.locator("#scanner-app[data-camera=off]").wait_for()
    page.locator("#manual-code").fill(code)
    page.locator("#manual button[type=submit]").click()
    page.locator("button.reward").wait_for(state="visible")

    # Meanwhile another till redeems with the same code: the page's scan is spent.
    other_till = ApiClient(app.test_client(), keys["staff"])
    assert other_till.post("/api/v1/redemptions", json={"code": code, "points": 10}
                           ).status_code == 201
    page.locator("button.reward").click()
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert message.inner_text() == "This scan was already used. Scan the card again."
    assert page.locator("button.reward").count() == 0
    assert page.locator("#rewards-box").is_hidden()
    page.screenshot(path=str(ARTIFACTS / "staff-used-scan.png"), full_page=True)
    assert card_state(app, serial) == (240, version + 1, 1)

    # Scanning the card's new code offers the rewards again, for one redemption.
    page.locator("#next").click()
    page.locator("#manual-code").fill(pass_code(app, funded))
    page.locator("#manual button[type=submit]").click()
    page.locator("button.reward").click()
    page.locator("#redeemed").wait_for(state="visible")
    assert page.locator("#new-balance").inner_text() == "140"
    assert page.locator("#scan-again").is_visible()
    assert page.locator("button.reward").count() == 0
    assert card_state(app, serial) == (140, version + 2, 2)
    assert page.outside_requests == []  # type: ignore[attr-defined]
    assert [e for e in page.console_errors  # type: ignore[attr-defined]
            if "409" not in e] == []


def test_typed_short_code_in_indonesian_then_locked_out(app: Any, phone: Page,
                                                        live_url: str, keys: dict[str, str],
                                                        funded: dict[str, Any]) -> None:
    """The code under the QR code, typed as read out (lower case, spaces), opens the card; a
    wrong one says so plainly; the failure that locks the key out says for how long."""
    serial = funded["serial_number"]
    with app.app_context():
        found = db.session.scalar(select(Card).where(Card.serial_number == serial))
        code = short_code(found)
        db.session.rollback()
    wrong = code[:-1] + ("A" if code[-1] != "A" else "B")
    page = phone
    sign_in(page, live_url, keys["staff"], language="id")
    page.locator("#scanner-app[data-camera=off]").wait_for()
    assert page.locator("#manual-code").get_attribute("placeholder") == "XXXX-XXXX-XXXX"
    page.locator("#manual-code").fill(wrong)
    page.locator("#manual button[type=submit]").click()
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert message.inner_text() == ("Tidak ada kartu dengan kode ini. Periksa kembali "
                                    "bersama pelanggan, lalu ketik ulang.")

    page.locator("#manual-code").fill(code.lower().replace("-", " "))
    page.locator("#manual button[type=submit]").click()
    page.locator("#member-name").wait_for(state="visible")
    assert page.locator("#balance").inner_text() == "250"
    page.screenshot(path=str(ARTIFACTS / "staff-short-code-id.png"), full_page=True)

    # Eight more wrong codes with the same key elsewhere; the page's next one locks it.
    other_till = ApiClient(app.test_client(), keys["staff"])
    for _ in range(shortcodes.MAX_FAILURES - 2):
        assert other_till.post("/api/v1/scans", json={"code": wrong}).status_code == 422
    page.locator("#next").click()
    page.locator("#manual-code").fill(wrong)
    page.locator("#manual button[type=submit]").click()
    message.wait_for(state="visible")
    assert message.inner_text() == (
        "Terlalu banyak kode salah yang diketik. Kode yang diketik ditolak selama 15 menit; "
        "memindai kode QR tetap bisa.")
    page.screenshot(path=str(ARTIFACTS / "staff-short-code-locked-id.png"), full_page=True)
    assert page.outside_requests == []  # type: ignore[attr-defined]
