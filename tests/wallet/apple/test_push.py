"""Balance changes reach every registered iPhone: PassKit + outbox + APNs over HTTP/2 + TLS.

A local APNs test server (tests/apns_server.py) requires a client certificate chained to the
development CA, as APNs requires the Pass Type ID certificate.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq import Queue
from sqlalchemy import func, select, update

from app.extensions import db
from app.loyalty.models import Card
from app.outbox import drain as outbox
from app.outbox.models import OutboxEntry
from app.timeutil import utcnow
from app.wallet.apple.models import Device
from app.wallet.events import WalletEvent, WalletEventKind
from tests.apns_server import APNsTestServer
from tests.factories import (
    ApiClient,
    admin_api,
    create_api_key,
    create_card,
    create_program,
    make_worker_app,
    register_device,
    settle,
)
from tests.phones import Phone
from tests.processes import start_worker, wait_until

BIN = Path(sys.executable).parent


def _enroll(api: ApiClient, program: dict[str, Any], **member: Any) -> str:
    serial = str(create_card(api, program, name="Ayu", **member)["serial_number"])
    settle(api.client.application)  # the new card's own announcement, before any phone
    return serial


def _phone_with_card(app: Flask) -> tuple[ApiClient, str, Phone]:
    """An admin API client, a new card (announced) and a phone that added it."""
    api = admin_api(app)
    serial = _enroll(api, create_program(api))
    return api, serial, register_device(app, serial)


def _phones_with_cards(app: Flask, count: int) -> tuple[ApiClient, list[tuple[Phone, str]]]:
    """An admin API client and ``count`` phones, each holding a card of its own."""
    api = admin_api(app)
    program = create_program(api)
    phones = [(register_device(app, serial), serial)
              for serial in [_enroll(api, program) for _ in range(count)]]
    settle(app)
    return api, phones


def _devices(app: Flask) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count(Device.id))) or 0
        db.session.rollback()
        return count


def test_earning_pushes_the_phone_which_fetches_the_new_balance(
    push_app: Flask, apns: APNsTestServer
) -> None:
    api, serial, phone = _phone_with_card(push_app)
    assert phone.changed() == [serial]  # the first list call returns every pass
    settle(push_app)
    apns.reset()

    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 42}).status_code == 201
    settle(push_app)

    pushes = apns.requests_for(phone.token)
    assert len(pushes) == 1
    push = pushes[0]
    assert push.topic == push_app.extensions["pointpass.apple"].pass_type_id
    assert push.path == f"/3/device/{phone.token}"
    assert json.loads(push.body) == {}
    assert phone.changed() == [serial]
    pass_json = phone.fetch(serial)
    assert pass_json["storeCard"]["headerFields"][0]["value"] == 42
    # On PostgreSQL the tag is the oldest transaction still running anywhere on the server
    # (pg_snapshot_xmin): while another one is open the change may be listed again, which
    # Wallet takes in its stride. Nothing more changed, so the list soon empties.
    wait_until(lambda: phone.changed() == [], "the serial list to empty", timeout=10)
    with push_app.app_context():
        assert outbox.pending() == 0


def test_a_changed_pass_is_signed_once_however_many_phones_fetch_it(
    push_app: Flask, apns: APNsTestServer
) -> None:
    api = admin_api(push_app)
    program = create_program(api)
    serial = _enroll(api, program)
    phones = [Phone(push_app) for _ in range(3)]
    for phone in phones:
        phone.add(serial)
    wallet = push_app.extensions["pointpass.apple"]
    before = wallet.signatures
    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 3})
    settle(push_app)
    balances = {phone.fetch(serial)["storeCard"]["headerFields"][0]["value"] for phone in phones}
    assert balances == {3}
    assert wallet.signatures == before + 1  # by the delivery's pre-build, or the first fetch
    assert all(len(apns.requests_for(phone.token)) == 1 for phone in phones)


def test_410_removes_the_device_unless_it_registered_again_later(
    push_app: Flask, apns: APNsTestServer
) -> None:
    api, [(gone, gone_serial), (back, back_serial)] = _phones_with_cards(push_app, 2)
    now_ms = int(time.time() * 1000)
    apns.respond(gone.token, 410, "Unregistered", timestamp_ms=now_ms + 60_000)
    apns.respond(back.token, 410, "Unregistered", timestamp_ms=now_ms - 60_000)

    api.post(f"/api/v1/cards/{gone_serial}/earn", json={"points": 1})
    api.post(f"/api/v1/cards/{back_serial}/earn", json={"points": 1})
    settle(push_app)
    assert len(apns.requests_for(gone.token)) == 1
    with push_app.app_context():
        tokens = set(db.session.scalars(select(Device.push_token)))
        # The dead device's pass counts as removed (app.wallet.events); the live one's not.
        removed = db.session.execute(select(Card.serial_number).join(
            WalletEvent, WalletEvent.card_id == Card.id).where(
            WalletEvent.kind == WalletEventKind.REMOVED)).scalars().all()
        db.session.rollback()
    assert tokens == {back.token}  # registered after Apple's timestamp: kept
    assert removed == [gone_serial]


def test_bad_device_token_is_removed_and_429_is_retried(
    push_app: Flask, apns: APNsTestServer
) -> None:
    api, [(bad, bad_serial), (busy, busy_serial)] = _phones_with_cards(push_app, 2)
    apns.respond(bad.token, 400, "BadDeviceToken")
    apns.respond(busy.token, 429, "TooManyRequests", times=2)

    api.post(f"/api/v1/cards/{bad_serial}/earn", json={"points": 1})
    api.post(f"/api/v1/cards/{busy_serial}/earn", json={"points": 1})
    settle(push_app)
    assert len(apns.requests_for(busy.token)) == 3  # two 429s, then delivered
    with push_app.app_context():
        assert set(db.session.scalars(select(Device.push_token))) == {busy.token}
        assert outbox.pending() == 0
        counters = push_app.extensions["pointpass.apns"]["client"].counters
    assert counters["delivered"] >= 1 and counters["bad_token"] == 1


def test_marketer_update_pushes_each_token_once_and_reports_progress(
    push_app: Flask, apns: APNsTestServer
) -> None:
    api = admin_api(push_app)
    program = create_program(api)
    phone = Phone(push_app)
    serials = [_enroll(api, program, language="th") for _ in range(3)]
    other = _enroll(api, program, language="id")
    for serial in serials:
        phone.add(serial)
    phone.changed()
    settle(push_app)
    apns.reset()

    response = api.post(f"/api/v1/programs/{program['id']}/updates",
                        json={"message": "Promo 2.2: double points!",
                              "segment": {"language": "th"}})
    assert response.status_code == 202
    assert response.headers["Location"] == response.json["url"]
    settle(push_app)

    assert len(apns.requests_for(phone.token)) == 1  # one push for three changed cards
    progress = api.get(response.json["url"]).json
    assert progress["status"] == "done"
    assert (progress["cards_total"], progress["cards_done"]) == (3, 3)
    assert progress["devices_pushed"] == 1 and progress["failures"] == 0
    assert sorted(phone.changed()) == sorted(serials)

    files = phone.fetch_files(serials[0])
    back = json.loads(files["pass.json"])["storeCard"]["backFields"]
    message = next(f for f in back if f["value"] == "Promo 2.2: double points!")
    # changeMessage is a key; each language's pass.strings gives the text with %@.
    for lang in ("en", "id", "th", "ms"):
        strings = files[f"{lang}.lproj/pass.strings"].decode()
        key = f'"{message["changeMessage"]}"'
        assert "%@" in next(x for x in strings.splitlines() if x.startswith(key))
    staff = api.get(f"/api/v1/cards/{other}").json
    assert staff["serial_number"] == other  # outside the segment: untouched
    with push_app.app_context():
        assert db.session.scalar(select(Card.message).where(Card.serial_number == other)) is None


def test_marketer_update_bad_input(push_app: Flask) -> None:
    api = admin_api(push_app)
    program = create_program(api)
    path = f"/api/v1/programs/{program['id']}/updates"
    assert api.post(path, json={"segment": {"tier": "Diamond"}}).status_code == 422
    assert api.post(path, json={"segment": {"language": "fr"}}).status_code == 422
    assert api.post(path, json={"message": ""}).status_code == 422
    assert api.post(path, json={"message": "x" * 501}).status_code == 422
    assert api.post(path, json={"colour": "red"}).status_code == 422
    assert api.post("/api/v1/programs/999/updates", json={}).status_code == 404
    assert api.get("/api/v1/updates/999").status_code == 404
    with push_app.app_context():
        from app.outbox.models import PassUpdate

        assert db.session.scalar(select(func.count(PassUpdate.id))) == 0
    assert api.as_(create_api_key(push_app, "pos")).post(path, json={}).status_code == 403


def test_unreachable_apns_keeps_the_change_until_it_can_be_sent(
    push_app: Flask, apns: APNsTestServer
) -> None:
    api, serial, phone = _phone_with_card(push_app)
    settle(push_app)
    apns.respond(phone.token, 503, "ServiceUnavailable", times=4)  # one drain: 1 + 3 retries

    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 1})
    settle(push_app)
    with push_app.app_context():
        assert outbox.pending() == 1  # kept, to be retried later
        db.session.execute(update(OutboxEntry).values(available_at=utcnow()))
        db.session.commit()
        outbox.drain()
        assert outbox.pending() == 0
    assert len(apns.requests_for(phone.token)) == 4 + 1  # 1 + 3 retries, then delivered


def test_development_certificates_skip_pushes_with_a_log_line(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="pointpass.apple.push")
    api, serial, _ = _phone_with_card(app)
    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 1})
    settle(app)
    assert "APNs pushes skipped" in caplog.text
    with app.app_context():
        assert outbox.pending() == 0


@pytest.fixture
def rq_push_app(database: Any, tmp_path: Path,
                apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    yield from make_worker_app(database, tmp_path, **apns_app_settings, OUTBOX_LEASE_SECONDS=2)


@pytest.mark.redis
def test_killed_worker_and_redis_outage_delay_pushes_but_lose_none(
    rq_push_app: Flask, apns: APNsTestServer
) -> None:
    app = rq_push_app
    api, serial, phone = _phone_with_card(app)

    # 1. The worker takes the push, APNs stalls, the worker is killed mid-push.
    apns.latency = 30
    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5})
    worker = start_worker(app.config["TEST_WORKER_ENV"])
    # A worker process imports and starts the whole app first: give it time on a busy box.
    wait_until(lambda: apns.requests_for(phone.token), "the push to reach APNs", timeout=120)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    assert _pending(app) == 1  # the earn's row: leased by the dead worker, not lost

    # 2. A new worker's sweep sends it once the lease has run out.
    apns.latency = 0
    apns.reset()
    worker = start_worker(app.config["TEST_WORKER_ENV"])
    try:
        wait_until(lambda: apns.requests_for(phone.token), "the push after the restart",
              timeout=120)
        wait_until(lambda: _pending(app) == 0, "the outbox to empty", timeout=60)
    finally:
        worker.terminate()
        worker.wait(10)

    # 3. Redis goes away: the change still reaches the phone.
    dispatcher = app.extensions["pointpass.jobs"]
    dispatcher.connection = Redis.from_url("redis://127.0.0.1:1/0")
    dispatcher.queue = Queue(app.config["RQ_QUEUE"], connection=dispatcher.connection)
    apns.reset()
    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 6})
    settle(app)
    assert len(apns.requests_for(phone.token)) == 1
    assert _pending(app) == 0
    assert phone.fetch(serial)["storeCard"]["headerFields"][0]["value"] == 11


def _pending(app: Flask) -> int:
    with app.app_context():
        count = outbox.pending()
        db.session.rollback()
        return count


def test_a_removed_pass_is_neither_pushed_listed_nor_counted_until_added_again(
    push_app: Flask, apns: APNsTestServer
) -> None:
    api = admin_api(push_app)
    program = create_program(api)
    kept, removed = _enroll(api, program), _enroll(api, program)
    phone = Phone(push_app)
    phone.add(kept)
    phone.add(removed)
    assert sorted(phone.changed()) == sorted([kept, removed])
    phone.remove(removed)
    settle(push_app)
    apns.reset()

    assert api.post(f"/api/v1/cards/{removed}/earn", json={"points": 5}).status_code == 201
    settle(push_app)
    assert apns.requests_for(phone.token) == []  # its only registration left is removed
    assert phone.changed() == []
    apple = api.get(f"/api/v1/cards/{removed}/devices").json["apple"]
    assert len(apple) == 1 and not apple[0]["installed"] and apple[0]["removed_at"]

    # A marketer's update counts the cards a wallet holds: the removed one is not among them.
    response = api.post(f"/api/v1/programs/{program['id']}/updates",
                        json={"message": "Hello"})
    assert response.status_code == 202
    settle(push_app)
    progress = api.get(response.json["url"]).json
    assert (progress["status"], progress["cards_total"]) == ("done", 2)
    assert progress["cards_with_wallet"] == 1 and progress["devices_pushed"] == 1
    assert phone.changed() == [kept]

    other = Phone(push_app)  # another iPhone holds the card: it is pushed, the first is not
    other.add(removed)
    settle(push_app)
    apns.reset()
    assert api.post(f"/api/v1/cards/{removed}/earn", json={"points": 5}).status_code == 201
    settle(push_app)
    assert (len(apns.requests_for(other.token)), apns.requests_for(phone.token)) == (1, [])

    phone.add(removed)  # added again: installed, pushed and listed again
    apple = api.get(f"/api/v1/cards/{removed}/devices").json["apple"]
    assert [(d["installed"], d["removed_at"]) for d in apple] == [(True, None), (True, None)]
    phone.changed()
    settle(push_app)
    apns.reset()
    assert api.post(f"/api/v1/cards/{removed}/earn", json={"points": 5}).status_code == 201
    settle(push_app)
    assert len(apns.requests_for(phone.token)) == 1
    assert removed in phone.changed()
