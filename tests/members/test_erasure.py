"""Erasing a member (``DELETE /api/v1/members/<id>``, app.members.rights): afterwards no
column of any table holds their name, e-mail address, phone number or birthday; balances,
ledger sums and the analytics' figures are what they were; the card's pass URLs answer 410;
the Google test server saw the object expire; a second erasure answers 410 and changes
nothing; a failure half-way writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import JSON, Date, MetaData, String, Text, func, select

from app.enrollment.links import card_page_token
from app.extensions import db
from app.feedback import service as feedback
from app.feedback.models import FeedbackInvitation
from app.loyalty.models import Card, LedgerEntry
from app.members import rights
from app.wallet.apple.models import Device, Registration
from tests.factories import (
    ApiClient,
    admin_api,
    card_code,
    create_card,
    create_program,
    make_app,
    register_device,
    row_counts,
    settle,
)
from tests.google_server import GoogleWalletTestServer
from tests.test_program_scope import database_state
from tests.wallet.google.conftest import ISSUER_ID, google_settings

NAME = "Siti Nurhaliza Rahmawati"
EMAIL = "siti.rahma@example.com"
PHONE = "+62 812 5555 0199"
BIRTHDAY = "1990-05-17"
PERSONAL = (NAME, EMAIL, PHONE, BIRTHDAY)


@pytest.fixture
def google_app(database: Any, tmp_path: Path,
               wallet_server: GoogleWalletTestServer) -> Iterator[Flask]:
    yield from make_app(database, tmp_path, **google_settings(wallet_server))


def _forms(value: str) -> set[str]:
    """How a value may be stored: as typed, lower-cased, and inside JSON (escaped)."""
    forms = {value.lower(), json.dumps(value)[1:-1].lower()}
    if value == PHONE:
        forms.add(value.replace(" ", ""))  # its digits typed without spaces
    return forms


def personal_data_found(app: Flask, values: tuple[str, ...] = PERSONAL) -> list[str]:
    """Every (table, column) of the database whose text, JSON or date holds one of
    ``values``: the tables are reflected from the database itself, not the models."""
    found = []
    wanted = {form: value for value in values for form in _forms(value)}
    with app.app_context():
        metadata = MetaData()
        metadata.reflect(bind=db.engine)
        for table in metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, Date):
                    dates = [date.fromisoformat(v) for v in values if len(v) == 10
                             and v[4] == "-"]
                    hits = db.session.scalar(select(func.count()).select_from(table).where(
                        column.in_(dates))) if dates else 0
                    if hits:
                        found.append(f"{table.name}.{column.name}")
                    continue
                if not isinstance(column.type, String | Text | JSON):
                    continue
                for (value,) in db.session.execute(select(column).where(column.is_not(None))):
                    text = (value if isinstance(value, str) else json.dumps(value)).lower()
                    for form, original in wanted.items():
                        if form in text:
                            found.append(f"{table.name}.{column.name}: {original}")
        db.session.rollback()
    return found


def _totals(app: Flask, api: ApiClient, program_id: int) -> dict[str, Any]:
    with app.app_context():
        balances = dict(db.session.execute(select(Card.serial_number, Card.balance).where(
            Card.program_id == program_id)).all())
        ledger = db.session.execute(select(
            func.count(), func.sum(LedgerEntry.points), func.sum(LedgerEntry.pending_points),
            func.sum(LedgerEntry.amount)).join(Card, Card.id == LedgerEntry.card_id)
            .where(Card.program_id == program_id)).one()
        db.session.rollback()
    stats = api.get(f"/api/v1/programs/{program_id}/stats")
    assert stats.status_code == 200, stats.json
    return {"balances": balances, "ledger": tuple(ledger),
            "figures": {k: v["value"] for k, v in stats.json["figures"].items()}}


def test_erasure_leaves_no_personal_data_and_keeps_the_totals(
        google_app: Flask, wallet_server: GoogleWalletTestServer) -> None:
    app = google_app
    api = admin_api(app)
    program = create_program(api, feedback_every_days=30)
    pid = program["id"]
    location = api.post(f"/api/v1/programs/{pid}/locations", json={
        "name": "Kemang", "latitude": -6.26, "longitude": 106.81}).json["id"]
    joined = api.post(f"/api/v1/programs/{pid}/members", json={
        "name": NAME, "email": EMAIL, "phone": PHONE, "birthday": BIRTHDAY, "language": "id",
        "consent_terms": True, "consent_marketing": True})
    assert joined.status_code == 201, joined.json
    member_id, serial = joined.json["id"], joined.json["card"]["serial_number"]
    other = create_card(api, program, name="Budi Santoso")["serial_number"]
    pass_url = joined.json["card"]["apple_pass_url"]

    # What people write about her: a receipt reference, an adjustment's reason, a feedback
    # comment, a marketer's message, and the same about the other member (his stay).
    for card, reference in ((serial, f"receipt {NAME}"), (other, "receipt 7")):
        assert api.post(f"/api/v1/cards/{card}/earn", json={
            "amount": 250_000_000, "currency": "IDR", "reference": reference,
            "location_id": location}).status_code == 201
    assert api.post(f"/api/v1/cards/{serial}/adjust", json={
        "points": 40, "reason": f"goodwill, asked by {EMAIL}"}).status_code == 201
    assert api.post(f"/api/v1/cards/{other}/adjust", json={
        "points": 5, "reason": f"Budi brought {NAME} ({PHONE})"}).status_code == 201
    redeemed = api.post("/api/v1/redemptions", json={
        "code": card_code(app, serial), "reward_id": program["rewards"][0]["id"]})
    assert redeemed.status_code == 201, redeemed.json
    with app.app_context():
        token = db.session.scalar(select(FeedbackInvitation.token).join(
            Card, Card.id == FeedbackInvitation.card_id).where(Card.serial_number == serial))
        assert token is not None
        feedback.answer(token, 9, f"Lovely. Call me on {PHONE}")
    assert api.post(f"/api/v1/programs/{pid}/updates", json={
        "message": f"Selamat ulang tahun, {NAME}!"}).status_code in (200, 201, 202)
    phone = register_device(app, serial)
    settle(app)
    object_id = f"{ISSUER_ID}.{serial}"
    assert wallet_server.objects[object_id]["accountName"] == NAME
    assert phone.fetch(serial)["serialNumber"] == serial  # signed and cached
    cache = Path(app.instance_path) / "pass-cache"
    assert list(cache.glob(f"{serial}-*.pkpass"))
    assert personal_data_found(app)  # the scan finds what is there

    before = _totals(app, api, pid)
    with app.app_context():
        other_version = db.session.scalar(select(Card.version).where(
            Card.serial_number == other))
        db.session.rollback()
    erased = api.request("DELETE", f"/api/v1/members/{member_id}")
    assert erased.status_code == 200, erased.json
    assert erased.json["serial_number"] == serial
    assert erased.json["apple_devices_deleted"] == 1
    settle(app)

    assert personal_data_found(app) == []
    after = _totals(app, api, pid)
    assert after["balances"] == before["balances"]
    assert after["ledger"] == before["ledger"]
    # The erased member's card is voided: the member count drops by one (as for any voided
    # card); Apple no longer holds it. Every other figure stays.
    assert after["figures"]["members"] == before["figures"]["members"] - 1
    changed = {k for k in before["figures"] if before["figures"][k] != after["figures"][k]}
    assert changed <= {"members", "apple_installed_now"}, changed

    # The card's pass URLs are gone; the card API says so too.
    download = api.client.get(pass_url.removeprefix("https://pointpass.test"))
    assert download.status_code == 410
    assert download.content_type == "application/problem+json"
    assert download.json["type"].endswith("card-erased")
    fetched = phone.client.get(f"/passkit/v1/passes/{phone.pass_type}/{serial}",
                               headers=phone.auth(serial))
    assert fetched.status_code == 410 and fetched.content_type == "application/problem+json"
    again = phone.client.post(
        f"/passkit/v1/devices/{phone.device}/registrations/{phone.pass_type}/{serial}",
        json={"pushToken": phone.token}, headers=phone.auth(serial))
    assert again.status_code == 410  # no device may register for it again
    with app.app_context():
        page_path = f"/card/{serial}/{card_page_token(serial)}"
    page = api.client.get(f"{page_path}?lang=th")
    assert page.status_code == 410 and page.mimetype == "text/html"
    assert "บัตรนี้ไม่มีอยู่แล้ว" in page.get_data(as_text=True)
    card = api.get(f"/api/v1/cards/{serial}")
    assert card.status_code == 410 and card.json["type"].endswith("card-erased")
    assert api.get(f"/api/v1/cards/{other}").status_code == 200
    with app.app_context():  # the other card's copy of the marketer's message, told again
        message, version = db.session.execute(select(Card.message, Card.version).where(
            Card.serial_number == other)).one()
        db.session.rollback()
    assert message == f"Selamat ulang tahun, {rights.REDACTED}!" and version > other_version

    assert not list(cache.glob(f"{serial}-*.pkpass"))  # the signed passes named her
    # Apple: the device and its push token are gone. Google: the object expired.
    assert row_counts(app, Device, Registration) == (0, 0)
    expired = wallet_server.objects[object_id]
    assert expired["state"] == "EXPIRED"
    assert expired["accountName"] == rights.PSEUDONYM
    assert [r.body.get("state") for r in wallet_server.api_requests()
            if r.resource_id == object_id and r.body and "state" in r.body][-1] == "EXPIRED"
    assert wallet_server.objects[f"{ISSUER_ID}.{other}"]["state"] == "ACTIVE"

    # The audit trail has the erasure, by ids.
    trail = api.get(f"/api/v1/audit?program_id={pid}").json
    events = trail["events"] if isinstance(trail, dict) else trail
    erase = next(e for e in events if e["action"] == "member.erase")
    assert erase["target"] == f"member:{member_id}"

    # Again: 410, the same problem each time, and nothing changes.
    state = database_state(app)
    for _ in range(2):
        second = api.request("DELETE", f"/api/v1/members/{member_id}")
        assert second.status_code == 410, second.json
        assert second.content_type == "application/problem+json"
        assert second.json["type"].endswith("member-erased")
    assert api.get(f"/api/v1/members/{member_id}/export").status_code == 410
    assert database_state(app) == state


def test_a_failed_erasure_writes_nothing(app: Flask, api: ApiClient,
                                         program: dict[str, Any],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    joined = api.post(f"/api/v1/programs/{program['id']}/members", json={
        "name": NAME, "email": EMAIL, "consent_terms": True, "consent_marketing": True})
    serial = joined.json["card"]["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/adjust", json={
        "points": 40, "reason": f"for {NAME}"}).status_code == 201
    register_device(app, serial)
    state = database_state(app)

    def fails(erasure: rights.Erasure) -> None:
        raise RuntimeError("the webhook's outbox is down")

    monkeypatch.setattr(rights, "_announce_erasure", fails)
    with app.app_context(), pytest.raises(RuntimeError):
        rights.erase(joined.json["id"])
    assert database_state(app) == state
    monkeypatch.undo()
    assert api.request("DELETE", f"/api/v1/members/{joined.json['id']}").status_code == 200
    assert personal_data_found(app, (NAME, EMAIL)) == []


def test_erasure_input_and_roles(app: Flask, api: ApiClient, keys: dict[str, str],
                                 card: dict[str, Any]) -> None:
    member_id = api.get(f"/api/v1/programs/{card['program_id']}/members").json[
        "members"][0]["id"]
    for path in ("/api/v1/members/999999", "/api/v1/members/0", "/api/v1/members/abc",
                 "/api/v1/members/99999999999999999999999"):
        answer = api.request("DELETE", path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer.content_type == "application/problem+json"
    for role in ("marketer", "staff", "pos"):
        refused = api.as_(keys[role]).request("DELETE", f"/api/v1/members/{member_id}")
        assert refused.status_code == 403
        assert api.as_(keys[role]).get(f"/api/v1/members/{member_id}/export").status_code == 403
    assert api.as_(None).request("DELETE", f"/api/v1/members/{member_id}").status_code == 401
    assert api.request("DELETE", f"/api/v1/members/{member_id}").status_code == 200


def test_the_command_line_erases_with_confirmation(app: Flask, api: ApiClient,
                                                   program: dict[str, Any]) -> None:
    from app.cli.cli import cli

    joined = api.post(f"/api/v1/programs/{program['id']}/members", json={
        "name": NAME, "email": EMAIL, "phone": PHONE, "birthday": BIRTHDAY})
    member_id = str(joined.json["id"])
    runner = app.test_cli_runner()
    declined = runner.invoke(cli, ["erase-member", member_id], input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert personal_data_found(app)
    done = runner.invoke(cli, ["erase-member", member_id], input="y\n")
    assert done.exit_code == 0, done.output
    assert f"Erased member {member_id}" in done.output
    assert personal_data_found(app) == []
    again = runner.invoke(cli, ["erase-member", member_id, "--yes"])
    assert again.exit_code == 0 and "Nothing to do" in again.output
    unknown = runner.invoke(cli, ["erase-member", "999999", "--yes"])
    assert unknown.exit_code == 1 and "No member with id 999999" in unknown.output
    with app.app_context():
        assert db.session.scalar(select(Card.status).where(
            Card.serial_number == joined.json["card"]["serial_number"])).value == "voided"
        db.session.rollback()


def test_two_erasures_at_once_erase_once(pg_app: Flask) -> None:
    """On PostgreSQL, two DELETEs of one member at the same moment: one erases, the other
    waits for the card's lock and answers 410; one audit record."""
    import threading

    from app.audit import AuditEvent

    api = admin_api(pg_app)
    program = create_program(api)
    joined = api.post(f"/api/v1/programs/{program['id']}/members", json={
        "name": NAME, "email": EMAIL}).json
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def erase() -> None:
        client = ApiClient(pg_app.test_client(), api.key)
        barrier.wait()
        answers.append(client.request("DELETE", f"/api/v1/members/{joined['id']}").status_code)

    threads = [threading.Thread(target=erase) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == [200, 410]
    with pg_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "member.erase")) == 1
        db.session.rollback()


def test_the_redis_pass_store_forgets_a_cards_passes() -> None:
    import uuid

    from redis import Redis

    from app.wallet.apple.store import RedisPassStore
    from tests.factories import REDIS_URL

    store = RedisPassStore(Redis.from_url(REDIS_URL))
    serial, other = uuid.uuid4().hex.upper(), uuid.uuid4().hex.upper()
    for key in (f"{serial}-1-x", f"{serial}-2-x", f"{other}-1-x"):
        store.put(key, b"pass", f"{key.split('-')[0]}-")
    store.forget(f"{serial}-")
    assert store.get(f"{serial}-1-x") is None and store.get(f"{serial}-2-x") is None
    assert store.get(f"{other}-1-x") == b"pass"
    store.forget(f"{other}-")
    assert store.get(f"{other}-1-x") is None
