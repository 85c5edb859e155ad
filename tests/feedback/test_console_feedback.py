"""The console's "Feedback" page: the answers newest first (time, score, comment, location,
staff member), paged; the NPS of the last 30 days overall and per location; the program's
feedback settings, saved through the same service as the API and recorded in the audit
trail; and, in headless Chromium, axe-core clean on a desktop and a tablet in every language."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser
from sqlalchemy import select

from app.audit import AuditEvent
from app.extensions import db
from app.feedback import service
from tests.browser import ARTIFACTS, axe_violations, offline_page
from tests.clock import FakeClock
from tests.console.conftest import SCREENS, make_account, sign_in
from tests.factories import ApiClient, card_code, create_card
from tests.feedback.conftest import (
    DAY,
    add_location,
    ask_for_feedback,
    earn,
    form_token,
    invitations,
)
from tests.redemption.test_staff_pages import page_token
from tests.staff.conftest import Till


def signed_in_marketer(app: Flask, program: dict) -> FlaskClient:
    make_account(app, "marketer@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    assert sign_in(client, "marketer@example.com").status_code == 303
    return client


@pytest.fixture
def marketer(app: Flask, program: dict) -> FlaskClient:
    return signed_in_marketer(app, program)


def _answer(app: Flask, serial: str, score: int, comment: str | None = None) -> None:
    with app.app_context():
        service.answer(invitations(app, serial)[-1].token, score, comment)


def _rows(html: str) -> list[list[str]]:
    body = html.split('id="answers"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [[re.sub(r"<[^>]+>", "", cell).strip()
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_answers_with_where_and_who_and_the_nps(app: Flask, api: ApiClient, program: dict,
                                                 marketer: FlaskClient,
                                                 clock: FakeClock) -> None:
    ask_for_feedback(api, program, every_days=1)
    till = Till(api)
    kemang = till.location(program, "Kemang")
    sudirman = add_location(api, program, "Sudirman")
    dewi = till.add_staff("Dewi Lestari", "4821", kemang)
    promoter = create_card(api, program, name="Ayu")["serial_number"]
    detractor = create_card(api, program, name="Budi")["serial_number"]

    # A visit at the till in Kemang, served by Dewi (signed in with her PIN).
    counter = app.test_client()
    till.enrol(counter, kemang)
    assert till.type_pin(counter, dewi["id"], "4821").status_code == 303
    csrf = {"X-CSRFToken": page_token(counter)}
    scan = counter.post("/staff/scan", json={"code": card_code(app, promoter)}, headers=csrf)
    assert counter.post("/staff/earn", json={"scan_id": scan.json["scan_id"], "points": 5},
                        headers=csrf).status_code == 201
    _answer(app, promoter, 10, "Dewi was lovely")
    earn(api, detractor, sudirman)
    _answer(app, detractor, 4)
    clock.advance(1)  # the window ends now: answers given before it

    page = marketer.get(f"/console/programs/{program['id']}/feedback")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    rows = _rows(html)
    assert [row[1:] for row in rows] == [["4", "—", "Sudirman", "—"],
                                         ["10", "Dewi was lovely", "Kemang", "Dewi Lestari"]]
    assert re.search(r"id=\"nps-value\">0<", html), html.split("nps-overall", 1)[1][:300]
    by_place = html.split('id="nps-by-location"', 1)[1]
    assert re.search(r"Kemang</td><td[^>]*>\+100</td><td[^>]*>1<", by_place)
    assert re.search(r"Sudirman</td><td[^>]*>-100</td><td[^>]*>1<", by_place)


def test_answers_are_paged_newest_first(app: Flask, api: ApiClient, program: dict,
                                        clock: FakeClock) -> None:
    from app.console.feedback import PAGE_SIZE

    ask_for_feedback(api, program, every_days=1)
    place = add_location(api, program)
    serial = create_card(api, program)["serial_number"]
    for i in range(PAGE_SIZE + 2):
        earn(api, serial, place)
        _answer(app, serial, 10 if i % 2 else 0, f"answer {i}")
        clock.advance(2 * DAY)
    marketer = signed_in_marketer(app, program)  # a session of weeks ago would have ended
    first = marketer.get(f"/console/programs/{program['id']}/feedback").get_data(as_text=True)
    comments = [row[2] for row in _rows(first)]
    assert comments == [f"answer {i}" for i in range(PAGE_SIZE + 1, 1, -1)]
    assert 'rel="next"' in first and 'rel="prev"' not in first
    second = marketer.get(f"/console/programs/{program['id']}/feedback?page=2").get_data(
        as_text=True)
    assert [row[2] for row in _rows(second)] == ["answer 1", "answer 0"]
    assert 'rel="prev"' in second and 'rel="next"' not in second
    # Only the answers of the last 30 days count toward the NPS shown: the last 15 (every
    # second day), 7 of them promoters (odd i from 13 to 25) and 8 detractors.
    nps = first.split('id="nps"', 1)[1].split("</section>", 1)[0]
    assert re.search(r'id="nps-value">-7<', nps), nps
    assert "from 15 answers" in nps


def test_settings_are_saved_and_audited(app: Flask, api: ApiClient, program: dict,
                                        marketer: FlaskClient) -> None:
    path = f"/console/programs/{program['id']}/feedback"
    html = marketer.get(path).get_data(as_text=True)
    saved = marketer.post(f"{path}/settings", data={
        "csrf_token": form_token(html), "every_days": "14", "lock_screen": "y"})
    assert saved.status_code == 303
    shown = api.get(f"/api/v1/programs/{program['id']}").json
    assert (shown["feedback_every_days"], shown["feedback_lock_screen"]) == (14, True)
    with app.app_context():
        record = db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "program.settings").order_by(AuditEvent.id.desc())).first()
        assert record is not None and record.actor_name == "marketer@example.com"
        assert record.details == {"values": {"feedback_every_days": 14,
                                             "feedback_lock_screen": True}}
        db.session.rollback()
    page = marketer.get(saved.headers["Location"]).get_data(as_text=True)
    assert 'role="status"' in page and 'value="14"' in page and "checked" in page

    for bad in ("0", "366", "abc", "1.5"):
        refused = marketer.post(f"{path}/settings", data={
            "csrf_token": form_token(html), "every_days": bad})
        assert refused.status_code == 422, bad
        assert 'aria-invalid="true"' in refused.get_data(as_text=True)
    off = marketer.post(f"{path}/settings", data={"csrf_token": form_token(html),
                                                  "every_days": ""})
    assert off.status_code == 303
    shown = api.get(f"/api/v1/programs/{program['id']}").json
    assert (shown["feedback_every_days"], shown["feedback_lock_screen"]) == (None, False)


@pytest.mark.parametrize(("body", "field"), [
    ({"feedback_every_days": 0}, "feedback_every_days"),
    ({"feedback_every_days": 366}, "feedback_every_days"),
    ({"feedback_every_days": "7"}, "feedback_every_days"),
    ({"feedback_every_days": 7.5}, "feedback_every_days"),
    ({"feedback_lock_screen": "yes"}, "feedback_lock_screen"),
    ({"feedback_lock_screen": None}, "feedback_lock_screen"),
])
def test_the_api_validates_the_settings(api: ApiClient, program: dict, body: dict,
                                        field: str) -> None:
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}", json=body)
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in str(response.json)
    shown = api.get(f"/api/v1/programs/{program['id']}").json
    assert (shown["feedback_every_days"], shown["feedback_lock_screen"]) == (None, False)


# --- In the browser ---------------------------------------------------------------------------


@pytest.mark.parametrize("screen", ["desktop", "tablet"])
def test_the_feedback_page_in_the_browser(sqlite_app: Flask, browser: Browser,
                                          screen: str) -> None:
    from tests.browser import serve
    from tests.factories import admin_api, create_program

    app = sqlite_app
    api = admin_api(app)
    program = create_program(api)
    ask_for_feedback(api, program, every_days=1)
    kemang, sudirman = add_location(api, program, "Kemang"), add_location(api, program,
                                                                           "Sudirman")
    for i, (place, score, comment) in enumerate([
            (kemang, 9, "Kopinya enak sekali!"), (sudirman, 6, "ช้าไปหน่อย"),
            (kemang, 10, None)]):
        serial = create_card(api, program, name=f"Member {i}")["serial_number"]
        earn(api, serial, place)
        _answer(app, serial, score, comment)
    make_account(app, "marketer@example.com", "marketer", programs=[program["id"]])
    ARTIFACTS.mkdir(exist_ok=True)
    with serve(app) as base_url:
        context, page = offline_page(browser, **SCREENS[screen])
        try:
            page.goto(f"{base_url}/console/login")
            page.get_by_label("E-mail").fill("marketer@example.com")
            from tests.console.conftest import PASSWORD
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/console/login" not in url)
            for language in ("en", "id", "th", "ms"):
                page.goto(f"{base_url}/console/programs/{program['id']}/feedback"
                          f"?lang={language}")
                assert page.locator("html").get_attribute("lang") == language
                assert page.locator("#answers tbody tr").count() == 3
                assert page.locator("#nps-value").inner_text() == "+33"
                assert page.locator('nav.sections a[aria-current="page"]').count() == 1
                assert axe_violations(page) == [], language
                page.screenshot(path=str(ARTIFACTS / f"console-feedback-{language}-{screen}.png"),
                                full_page=True)
            page.locator("#every_days").fill("30")
            page.locator("button.primary").click()
            page.wait_for_url("**/feedback?saved=1")
            assert axe_violations(page) == []
            assert page.outside_requests == []  # type: ignore[attr-defined]
        finally:
            context.close()


@pytest.fixture
def sqlite_app(sqlite_database: Any, tmp_path: Any) -> Iterator[Flask]:
    from tests.factories import make_app

    yield from make_app(sqlite_database, tmp_path)
