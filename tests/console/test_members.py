"""The console's Members pages on SQLite and PostgreSQL, as a browser posts them: search by
every field and by short code (the program's members only), a member's page, adjusting points
once however often the form is sent, voiding, sending the card link through a real SMTP server,
CSRF, bad input and another program's members."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.audit import AuditEvent
from app.enrollment.links import card_page_path
from app.extensions import db
from app.loyalty.models import Card, LedgerEntry
from app.wallet.google.models import GoogleObjectState
from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import (
    ApiClient,
    admin_api,
    card_short_code,
    create_card,
    create_program,
    ledger_state,
    make_app,
    register_device,
)


@pytest.fixture
def other(api: ApiClient) -> dict[str, Any]:
    """Another program, with a member whose name matches the first program's Siti."""
    program = create_program(api, name="Other Shop", slug="other-shop")
    create_card(api, program, name="Siti Lain", email="siti.lain@example.com",
                phone="+62 812 3456 0000")
    return program


@pytest.fixture
def people(api: ApiClient, program: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Two members of ``program`` (and one of ``other``); their cards by first name."""
    return {
        "siti": create_card(api, program, name="Siti Rahma", email="Siti.Rahma@Example.com",
                            phone="+62 812-3456-7890", language="id"),
        "budi": create_card(api, program, name="Budi Santoso", email="budi@kopi.example",
                            phone="0813 5555 1234", language="th"),
    }


@pytest.fixture
def marketer(app: Flask, program: dict[str, Any]) -> FlaskClient:
    """A browser signed in as a marketer of ``program`` only."""
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    assert sign_in(client, "m@example.com").status_code == 303
    return client


def _names(html: str) -> list[str]:
    return re.findall(r'/members/\d+">([^<]+)</a>', html)


def _member_id(app: Flask, serial: str) -> int:
    with app.app_context():
        member_id = db.session.scalar(select(Card.member_id).where(Card.serial_number == serial))
        db.session.rollback()
        return int(member_id)


def _member_url(app: Flask, program: dict[str, Any], serial: str) -> str:
    return f"/console/programs/{program['id']}/members/{_member_id(app, serial)}"


def test_search_finds_members_by_every_field_in_any_case(
        app: Flask, program: dict[str, Any], other: dict[str, Any], people: dict[str, Any],
        marketer: FlaskClient) -> None:
    url = f"/console/programs/{program['id']}/members"

    def found(q: str) -> list[str]:
        answer = marketer.get(url, query_string={"q": q})
        assert answer.status_code == 200
        return _names(answer.get_data(as_text=True))

    assert found("") == ["Budi Santoso", "Siti Rahma"]  # newest first
    assert found("siti") == found("SITI") == found("rahm") == ["Siti Rahma"]  # never Lain
    assert found("siti.rahma@example.COM") == ["Siti Rahma"]
    assert found("KOPI.example") == ["Budi Santoso"]
    assert found("812 3456") == found("81234567") == ["Siti Rahma"]
    assert found("0813-5555") == ["Budi Santoso"]
    budi_serial = people["budi"]["serial_number"]
    assert found(budi_serial[:6].lower()) == ["Budi Santoso"]
    assert found(budi_serial) == ["Budi Santoso"]
    code = card_short_code(app, people["siti"]["serial_number"])
    assert found(code) == found(code.replace("-", "").lower()) == ["Siti Rahma"]
    # Another program's member is never found, by name or by their card's short code.
    with app.app_context():
        other_serial = db.session.scalar(select(Card.serial_number).where(
            Card.program_id == other["id"]))
        db.session.rollback()
    assert found("Lain") == []
    assert found(card_short_code(app, other_serial)) == []
    assert found(other_serial) == []
    assert "No member matches." in marketer.get(url, query_string={"q": "zzz"}).get_data(
        as_text=True)


def test_results_come_alone_to_htmx_and_page_by_keyset(
        app: Flask, api: ApiClient, program: dict[str, Any], marketer: FlaskClient) -> None:
    for number in range(27):
        create_card(api, program, name=f"Member {number:02d}")
    url = f"/console/programs/{program['id']}/members"
    page = marketer.get(url, query_string={"q": "member"}).get_data(as_text=True)
    assert page.startswith("<!doctype html>")
    assert 'hx-trigger="input changed delay:300ms' in page
    fragment = marketer.get(url, query_string={"q": "MEMBER"},
                            headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<section aria-labelledby="results-heading">')
    assert '<div id="member-results" aria-live="polite">' in page
    first = _names(fragment)
    assert first == [f"Member {n:02d}" for n in range(26, 1, -1)]  # 25, newest first
    more = re.search(r'href="([^"]+after=\d+)"', fragment)
    assert more
    rest = _names(marketer.get(more.group(1).replace("&amp;", "&")).get_data(as_text=True))
    assert rest == ["Member 01", "Member 00"]
    assert marketer.get(url, query_string={"after": "x"}).status_code == 400


def test_a_members_page_shows_the_card_its_points_ledger_and_wallets(
        app: Flask, api: ApiClient, program: dict[str, Any], people: dict[str, Any],
        marketer: FlaskClient) -> None:
    serial = people["siti"]["serial_number"]
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}",
                       json={"pending_days": 7, "points_expire_after_days": 365,
                             "time_zone": "Asia/Jakarta"}).status_code == 200
    assert api.post(f"/api/v1/cards/{serial}/earn",
                    json={"amount": 250_000_000, "currency": "IDR",
                          "reference": "receipt-77"}).status_code == 201
    assert api.post(f"/api/v1/cards/{serial}/adjust",
                    json={"points": 40, "reason": "Welcome gift"}).status_code == 201
    register_device(app, serial)
    register_device(app, serial).remove(serial)  # a second iPhone the pass was removed from
    with app.app_context():
        card_id = db.session.scalar(select(Card.id).where(Card.serial_number == serial))
        db.session.add(GoogleObjectState(
            card_id=card_id, synced_version=1, synced_balance=0, saved=True,
            saved_changed_at=datetime(2026, 11, 20, 3, 0, tzinfo=UTC)))
        db.session.commit()
    page = marketer.get(_member_url(app, program, serial)).get_data(as_text=True)
    for expected in ("Siti Rahma", "siti.rahma@example.com", "+62 812-3456-7890",
                     "Bahasa Indonesia", serial, "receipt-77", "Welcome gift",
                     "API key “test admin”", "Installed on a device since", "Saved",
                     "Removed from a device at",
                     "<td>earned</td>", "<td>adjusted</td>",
                     # 20 Nov 2026 03:00 UTC is 10:00 in Jakarta
                     "Nov 20, 2026, 10:00:00"):
        assert expected in page, expected
    balance = re.search(r'id="card-balance">(\d+)<', page)
    assert balance and balance.group(1) == "40"
    # 250 pending points (one lot pending for a week), 40 available expiring in a year.
    assert "250 / 250" in page and "40 / 40" in page
    assert page.index("receipt-77") > page.index("Welcome gift")  # newest first
    assert "active" in page and "Bronze" in page


def _adjust_form(client: FlaskClient, url: str) -> dict[str, str]:
    page = client.get(url).get_data(as_text=True)
    key = re.search(r'id="idempotency_key" name="idempotency_key" type="hidden" value="([^"]+)"',
                    page)
    assert key, "the adjust form carries an idempotency key"
    return {"csrf_token": form_token(page), "idempotency_key": key.group(1)}


def _audit(app: Flask) -> list[tuple[str, str | None, dict[str, Any] | None]]:
    with app.app_context():
        events = [(e.action, e.actor, e.details) for e in db.session.scalars(
            select(AuditEvent).order_by(AuditEvent.id))]
        db.session.rollback()
        return events


def test_adjusting_twice_with_one_form_adjusts_once(
        app: Flask, program: dict[str, Any], people: dict[str, Any],
        marketer: FlaskClient) -> None:
    serial = people["budi"]["serial_number"]
    url = _member_url(app, program, serial)
    form = {**_adjust_form(marketer, url), "points": "120", "reason": "Missed stamps"}
    first = marketer.post(f"{url}/adjust", data=form)
    second = marketer.post(f"{url}/adjust", data=form)  # a double click
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == url
    assert ledger_state(app, serial) == (120, 120, 1)
    page = marketer.get(url).get_data(as_text=True)
    assert "Points adjusted: the balance is now 120." in page
    assert "m@example.com" in page and "Missed stamps" in page  # who and why, in the ledger
    assert [(a, actor) for a, actor, _ in _audit(app) if a == "card.adjust"] == [
        ("card.adjust", "account:1")]
    details = next(d for a, _, d in _audit(app) if a == "card.adjust")
    assert details and details["points"] == 120 and details["reason"] == "Missed stamps"
    with app.app_context():
        entry = db.session.scalar(select(LedgerEntry))
        assert entry.actor == "account:1" and entry.reason == "Missed stamps"
        db.session.rollback()
    # A removal beyond the balance is refused, saying why; nothing changes.
    form = {**_adjust_form(marketer, url), "points": "-500", "reason": "Oops"}
    refused = marketer.post(f"{url}/adjust", data=form)
    assert refused.status_code == 422
    assert "The card has 120 points: it cannot give 500." in refused.get_data(as_text=True)
    assert ledger_state(app, serial) == (120, 120, 1)
    form = {**_adjust_form(marketer, url), "points": "-20", "reason": "Correction"}
    assert marketer.post(f"{url}/adjust", data=form).status_code == 303
    assert ledger_state(app, serial) == (100, 100, 2)


@pytest.mark.parametrize("change, message", [
    ({"reason": ""}, "Please say why"),
    ({"points": "ten"}, "Please enter a whole number of points."),
    ({"points": "1.5"}, "Please enter a whole number of points."),
    ({"points": "0"}, "An adjustment cannot be zero."),
    ({"points": "99999999999"}, "Please enter a number between"),
])
def test_bad_adjustments_show_the_form_again(
        app: Flask, program: dict[str, Any], people: dict[str, Any], marketer: FlaskClient,
        change: dict[str, str], message: str) -> None:
    serial = people["siti"]["serial_number"]
    url = _member_url(app, program, serial)
    form = {**_adjust_form(marketer, url), "points": "10", "reason": "Because", **change}
    answer = marketer.post(f"{url}/adjust", data=form)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert message in page and 'aria-invalid="true"' in page
    assert ledger_state(app, serial) == (0, 0, 0)


def test_forms_without_the_csrf_token_are_refused(
        app: Flask, program: dict[str, Any], people: dict[str, Any],
        marketer: FlaskClient) -> None:
    serial = people["siti"]["serial_number"]
    url = _member_url(app, program, serial)
    form = _adjust_form(marketer, url)
    del form["csrf_token"]
    assert marketer.post(f"{url}/adjust", data={**form, "points": "5", "reason": "x"}
                         ).status_code == 400
    assert marketer.post(f"{url}/void", data={"reason": "x", "confirm": "y"}).status_code == 400
    assert marketer.post(f"{url}/card-link").status_code == 400
    assert ledger_state(app, serial) == (0, 0, 0)
    assert [a for a, _, _ in _audit(app) if a.startswith("card.")] == []


def test_voiding_asks_for_a_reason_and_a_confirmation(
        app: Flask, program: dict[str, Any], people: dict[str, Any],
        marketer: FlaskClient) -> None:
    serial = people["siti"]["serial_number"]
    url = _member_url(app, program, serial)
    token = form_token(marketer.get(url).get_data(as_text=True))
    unconfirmed = marketer.post(f"{url}/void", data={"csrf_token": token, "reason": "Lost"})
    assert unconfirmed.status_code == 422
    assert "Please confirm." in unconfirmed.get_data(as_text=True)
    voided = marketer.post(f"{url}/void", data={"csrf_token": token, "reason": "Lost phone",
                                               "confirm": "y"})
    assert voided.status_code == 303
    page = marketer.get(url).get_data(as_text=True)
    assert re.search(r'id="card-status">voided<', page)
    assert "Adjust points" not in page  # a voided card's points cannot change
    with app.app_context():
        assert db.session.scalar(select(Card.status).where(
            Card.serial_number == serial)).value == "voided"
        db.session.rollback()
    assert [(a, d) for a, _, d in _audit(app) if a == "card.void"] == [
        ("card.void", {"reason": "Lost phone"})]


class _Inbox:
    """What a local SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        self.arrived.set()
        return "250 OK"


@pytest.fixture
def smtp(free_port: Any) -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def test_the_card_link_is_sent_by_mail_in_the_members_language(
        database: Any, tmp_path: Path, smtp: tuple[_Inbox, int]) -> None:
    inbox, port = smtp
    for app in make_app(database, tmp_path, SMTP_URL=f"smtp://127.0.0.1:{port}"):
        api = admin_api(app)
        program = create_program(api)
        card = create_card(api, program, name="Siti", email="siti@example.com",
                           language="en")
        make_account(app, "m@example.com", "marketer", programs=[program["id"]])
        client = app.test_client()
        sign_in(client, "m@example.com")
        url = _member_url(app, program, card["serial_number"])
        token = form_token(client.get(url).get_data(as_text=True))
        answer = client.post(f"{url}/card-link", data={"csrf_token": token})
        assert answer.status_code == 303
        assert "The card link was sent to siti@example.com." in client.get(url).get_data(
            as_text=True)
        assert inbox.arrived.wait(5)
        (message,) = inbox.messages
        assert message["To"] == "siti@example.com"
        assert message["Subject"] == "Your Kopi Test card"
        body = message.get_payload(decode=True).decode()
        with app.app_context():
            assert f"https://pointpass.test{card_page_path(card['serial_number'])}" in body
        (event,) = [(a, d) for a, _, d in _audit(app) if a == "card.resend-link"]
        assert event == ("card.resend-link", {"result": "sent"})
        assert "card/" not in str(event)


def test_without_mail_the_card_link_is_shown_to_copy(
        app: Flask, api: ApiClient, program: dict[str, Any], people: dict[str, Any],
        marketer: FlaskClient) -> None:
    url = _member_url(app, program, people["siti"]["serial_number"])
    token = form_token(marketer.get(url).get_data(as_text=True))
    answer = marketer.post(f"{url}/card-link", data={"csrf_token": token})
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "E-mail is not set up." in page
    with app.app_context():
        link = f"https://pointpass.test{card_page_path(people['siti']['serial_number'])}"
    assert f'value="{link}"' in page
    nobody = create_card(api, program, name="No Mail")
    url = _member_url(app, program, nobody["serial_number"])
    page = marketer.post(f"{url}/card-link", data={"csrf_token": token}).get_data(as_text=True)
    assert "This member gave no e-mail address." in page
    assert [d for a, _, d in _audit(app) if a == "card.resend-link"] == [
        {"result": "not-configured"}, {"result": "no-email"}]


def test_another_programs_members_are_not_found(
        app: Flask, api: ApiClient, program: dict[str, Any], other: dict[str, Any],
        people: dict[str, Any], marketer: FlaskClient) -> None:
    with app.app_context():
        other_serial = db.session.scalar(select(Card.serial_number).where(
            Card.program_id == other["id"]))
        db.session.rollback()
    member_id = _member_id(app, other_serial)
    token = form_token(marketer.get(f"/console/programs/{program['id']}/members")
                       .get_data(as_text=True))
    html = {"Accept": "text/html"}
    for url in (f"/console/programs/{other['id']}/members",
                f"/console/programs/{other['id']}/members/{member_id}",
                # the member of another program under this program's URL
                f"/console/programs/{program['id']}/members/{member_id}",
                f"/console/programs/{program['id']}/members/99999"):
        assert marketer.get(url, headers=html).status_code == 404, url
    for action in ("adjust", "void", "card-link"):
        for program_id in (program["id"], other["id"]):
            answer = marketer.post(
                f"/console/programs/{program_id}/members/{member_id}/{action}",
                data={"csrf_token": token, "points": "5", "reason": "x", "confirm": "y",
                      "idempotency_key": "k"}, headers=html)
            assert answer.status_code == 404, (action, program_id)
    assert ledger_state(app, other_serial) == (0, 0, 0)
    # An admin reaches both programs.
    make_account(app, "admin@example.com", "admin")
    admin = app.test_client()
    sign_in(admin, "admin@example.com")
    assert admin.get(f"/console/programs/{other['id']}/members/{member_id}").status_code == 200


def test_the_ledger_pages_back_from_the_newest_entry(
        app: Flask, api: ApiClient, program: dict[str, Any], people: dict[str, Any],
        marketer: FlaskClient) -> None:
    serial = people["budi"]["serial_number"]
    for number in range(27):
        assert api.post(f"/api/v1/cards/{serial}/adjust",
                        json={"points": 1, "reason": f"visit {number:02d}"}).status_code == 201
    url = _member_url(app, program, serial)
    page = marketer.get(url).get_data(as_text=True)
    reasons = re.findall(r"<td>(visit \d\d)</td>", page)
    assert reasons == [f"visit {n:02d}" for n in range(26, 1, -1)]
    older = re.search(r'href="([^"]+before=\d+)#ledger-heading"', page)
    assert older
    rest = marketer.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r"<td>(visit \d\d)</td>", rest) == ["visit 01", "visit 00"]
