"""What members see of their points: available, pending, the next release and the next
expiry, on the card API, the Apple pass and the card page (docs/loyalty-engine.md).

Runs on SQLite and PostgreSQL. Lots are made the way a business makes them, by earning
through the API; time is the app's fake clock (``CLOCK``), moved by the tests. The program is
in Jakarta (UTC+7): release and expiry days are the program's days, not UTC's.
"""

from __future__ import annotations

import html
import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from app.enrollment.links import card_page_path
from app.extensions import db
from app.loyalty.models import EntryKind, Program
from app.wallet.apple.pass_files import ENTRY_WORDS
from passes.languages import LANGUAGES
from tests.clock import FakeClock
from tests.factories import ApiClient, create_api_key, create_card, create_program

# 20:00 UTC is 03:00 the next day in Jakarta.
T0 = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)
CLOCK_START = T0  # where this module's fake clock starts (tests/loyalty/conftest.py)
DAY = timedelta(days=1)
RUPIAH_PER_POINT = 1_000_000  # the test program's earn rate, in minor units


@pytest.fixture
def api(app: Flask) -> ApiClient:
    return ApiClient(app.test_client(), create_api_key(app, "admin"))


def new_card(app: Flask, api: ApiClient, **settings: Any) -> str:
    """A card of a program in Jakarta with the loyalty engine's ``settings``; its serial."""
    program = create_program(api)
    with app.app_context():
        row = db.session.get(Program, program["id"])
        assert row is not None
        for name, value in {"time_zone": "Asia/Jakarta", **settings}.items():
            setattr(row, name, value)
        db.session.commit()
    return str(create_card(api, program, name="Siti Rahayu", language="id")["serial_number"])


def earn(api: ApiClient, serial: str, points: int) -> None:
    """A purchase that earns ``points``."""
    response = api.post(f"/api/v1/cards/{serial}/earn", json={
        "amount": points * RUPIAH_PER_POINT, "currency": "IDR"})
    assert response.status_code == 201, response.json


def move_to(clock: FakeClock, when: datetime) -> None:
    clock.advance(when.timestamp() - clock.now())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def pass_files(app: Flask, api: ApiClient, serial: str) -> dict[str, bytes]:
    url = api.get(f"/api/v1/cards/{serial}").json["apple_pass_url"]
    response = app.test_client().get(url.removeprefix(app.config["BASE_URL"]))
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def back_fields(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    document = json.loads(files["pass.json"])
    return {f["key"]: f for f in document["storeCard"]["backFields"]}


def strings(files: dict[str, bytes], language: str) -> dict[str, str]:
    entries = {}
    for line in files[f"{language}.lproj/pass.strings"].decode().splitlines():
        key, value = line.removesuffix(";").split('" = "')
        entries[unescape(key[1:])] = unescape(value[:-1])
    return entries


def unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def in_every_language(files: dict[str, bytes], text: str) -> list[str]:
    return [strings(files, lang).get(text, text) for lang in LANGUAGES]


def card_page(app: Flask, serial: str, language: str) -> str:
    with app.test_request_context():
        path = card_page_path(serial)
    response = app.test_client().get(f"{path}?lang={language}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def text_of(page: str, element_id: str) -> str | None:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)<', page, re.S)
    return None if match is None else html.unescape(match.group(1)).strip()


def test_pending_points_show_with_their_release_day(app: Flask, api: ApiClient,
                                                     clock: FakeClock) -> None:
    serial = new_card(app, api, pending_days=7)
    card = api.get(f"/api/v1/cards/{serial}").json
    assert (card["available_points"], card["pending_points"]) == (0, 0)
    assert card["next_release"] is None and card["next_expiry"] is None

    earn(api, serial, 40)  # 03:00 on 27 Nov in Jakarta: available 4 Dec, 03:00
    move_to(clock, T0 + timedelta(hours=14))
    earn(api, serial, 20)  # 17:00 the same day in Jakarta: available 4 Dec, 17:00
    move_to(clock, T0 + DAY)
    earn(api, serial, 1500)  # the next day: 5 Dec

    card = api.get(f"/api/v1/cards/{serial}").json
    assert card["balance"] == card["available_points"] == 0
    assert card["pending_points"] == 1560
    # The first two are due on one day of Jakarta's (in UTC, on two days).
    assert card["next_release"]["points"] == 60
    assert at(card["next_release"]["at"]) == T0 + 7 * DAY
    assert card["next_expiry"] is None

    files = pass_files(app, api, serial)
    back = back_fields(files)
    assert back["pending"]["value"] == "+60 pending until 4 Dec\n+1,500 more pending later"
    assert in_every_language(files, back["pending"]["value"]) == [
        "+60 pending until 4 Dec\n+1,500 more pending later",
        "+60 tertunda hingga 4 Des\n+1.500 lagi tertunda setelahnya",
        "+60 รอเข้าบัญชีถึง 4 ธ.ค.\n+1,500 รอเข้าบัญชีภายหลัง",
        "+60 belum sah sehingga 4 Dis\n+1,500 lagi belum sah kemudian"]
    assert [strings(files, lang)["pending_label"] for lang in LANGUAGES] == [
        "Pending points", "Poin tertunda", "แต้มรอเข้าบัญชี", "Mata belum sah"]
    assert "expiry" not in back
    # A pending earn reads as such, with the points it will bring.
    history = back["history"]["value"].splitlines()
    assert history[0].endswith(" · Earned, pending · +1500")
    assert in_every_language(files, back["history"]["value"])[1].splitlines()[0].endswith(
        " · Diperoleh, tertunda · +1500")

    page = card_page(app, serial, "id")
    assert text_of(page, "balance") == "0"
    assert text_of(page, "pending-1") == "+60 tertunda hingga 4 Des"
    assert text_of(page, "pending-2") == "+1.500 lagi tertunda setelahnya"
    assert text_of(page, "expiry") is None
    english = card_page(app, serial, "en")
    assert text_of(english, "pending-1") == "+60 pending until 4 Dec"

    # 18:00 on 4 Dec in Jakarta: a spend first releases the two lots due that day.
    move_to(clock, T0 + 7 * DAY + timedelta(hours=15))
    assert api.post(f"/api/v1/cards/{serial}/adjust", json={
        "points": -1, "reason": "Correction"}).status_code == 201
    card = api.get(f"/api/v1/cards/{serial}").json
    assert (card["available_points"], card["pending_points"]) == (59, 1500)
    assert card["next_release"] == {"points": 1500, "at": card["next_release"]["at"]}
    assert at(card["next_release"]["at"]) == T0 + 8 * DAY
    files = pass_files(app, api, serial)
    back = back_fields(files)
    assert back["pending"]["value"] == "+1,500 pending until 5 Dec"
    history = back["history"]["value"].splitlines()
    assert [line.split(" · ", 1)[1] for line in history[:3]] == [
        "Adjusted: Correction · -1", "Now available · +20", "Now available · +40"]
    assert in_every_language(files, back["history"]["value"])[2].splitlines()[1].endswith(
        " · ใช้ได้แล้ว · +20")
    assert text_of(card_page(app, serial, "en"), "pending-2") is None


def test_expiring_points_and_the_reminder_window(app: Flask, api: ApiClient,
                                                 clock: FakeClock) -> None:
    serial = new_card(app, api, points_expire_after_days=365, expiry_reminder_days=14)
    earn(api, serial, 120)  # expires 26 Nov 2027 20:00 UTC: 27 Nov 2027 in Jakarta
    move_to(clock, T0 + timedelta(hours=14))
    earn(api, serial, 300)  # 17:00 the same day in Jakarta: expires on the same day
    move_to(clock, T0 + 10 * DAY)
    earn(api, serial, 30)  # (all below Silver's 500: no tier multiplier)

    card = api.get(f"/api/v1/cards/{serial}").json
    assert card["balance"] == card["available_points"] == 450
    assert card["pending_points"] == 0 and card["next_release"] is None
    assert card["next_expiry"]["points"] == 420
    assert at(card["next_expiry"]["at"]) == T0 + 365 * DAY

    # Before the reminder window the passes and the page say nothing of it.
    files = pass_files(app, api, serial)
    assert "expiry" not in back_fields(files)
    assert "pending" not in back_fields(files)
    assert text_of(card_page(app, serial, "en"), "expiry") is None

    # Within it (14 days before), the next change of the card brings the reminder.
    move_to(clock, T0 + (365 - 14) * DAY)
    earn(api, serial, 5)
    files = pass_files(app, api, serial)
    expiry = back_fields(files)["expiry"]
    assert expiry["value"] == "420 Points expire on 27 Nov 2027"
    assert expiry["changeMessage"] == "expiry_change"  # the lock screen says it (once)
    assert {strings(files, lang)["expiry_change"] for lang in LANGUAGES} == {"%@"}
    assert in_every_language(files, expiry["value"]) == [
        "420 Points expire on 27 Nov 2027", "420 Poin kedaluwarsa pada 27 Nov 2027",
        "420 แต้ม จะหมดอายุวันที่ 27 พ.ย. 2027", "420 Mata luput pada 27 Nov 2027"]
    assert text_of(card_page(app, serial, "id"), "expiry") == \
        "420 poin kedaluwarsa pada 27 Nov 2027"
    assert text_of(card_page(app, serial, "th"), "expiry") == \
        "420 แต้ม จะหมดอายุวันที่ 27 พ.ย. 2027"


def test_a_card_without_lots_shows_no_lines(app: Flask, api: ApiClient) -> None:
    serial = new_card(app, api)
    enrolled = api.get(f"/api/v1/cards/{serial}").json
    assert {k: enrolled[k] for k in ("available_points", "pending_points", "next_release",
                                     "next_expiry")} == {
        "available_points": 0, "pending_points": 0, "next_release": None, "next_expiry": None}
    back = back_fields(pass_files(app, api, serial))
    assert not {"pending", "expiry"} & set(back)
    page = card_page(app, serial, "en")
    assert 'class="points-notes"' not in page


def test_every_kind_of_entry_reads_on_the_pass() -> None:
    assert set(ENTRY_WORDS) == set(EntryKind)
