"""A marketer update's progress counts cards, however many wallets (or none) hold each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.extensions import db
from app.outbox import drain as outbox
from tests.apns_server import APNsTestServer
from tests.factories import (
    ApiClient,
    admin_api,
    apns_settings,
    create_card,
    create_program,
    make_app,
    make_worker_app,
    settle,
)
from tests.google_server import GoogleWalletTestServer
from tests.phones import Phone
from tests.processes import start_worker, wait_until
from tests.wallet.google.conftest import ISSUER_ID, google_settings


@pytest.fixture
def both_app(database: Any, tmp_path: Path, apns: APNsTestServer,
             apns_certs: dict[str, Path],
             wallet_server: GoogleWalletTestServer) -> Iterator[Flask]:
    """Apple pushes to the APNs test server and Google sync to the Google test server."""
    yield from make_app(database, tmp_path, **apns_settings(apns, apns_certs),
                        **google_settings(wallet_server))


def _enroll(api: ApiClient, program: dict[str, Any]) -> str:
    return str(create_card(api, program, name="Ayu")["serial_number"])


def _update(api: ApiClient, app: Flask, program: dict[str, Any]) -> dict[str, Any]:
    # To a segment (every member here speaks English): Google gets it object by object.
    response = api.post(f"/api/v1/programs/{program['id']}/updates",
                        json={"message": "Hi", "segment": {"language": "en"}})
    assert response.status_code == 202, response.json
    settle(app)
    progress: dict[str, Any] = api.get(response.json["url"]).json
    return progress


def test_cards_no_wallet_holds_count_as_done(push_app: Flask) -> None:
    api = admin_api(push_app)
    program = create_program(api)
    held = [_enroll(api, program) for _ in range(2)]
    _enroll(api, program)  # on no phone: nothing to tell, but the update covered it
    phone = Phone(push_app)
    for serial in held:
        phone.add(serial)
    settle(push_app)

    progress = _update(api, push_app, program)
    assert progress["status"] == "done"
    assert (progress["cards_total"], progress["cards_done"]) == (3, 3)
    assert progress["devices_pushed"] == 1


def test_a_card_on_apple_and_google_counts_once(both_app: Flask, apns: APNsTestServer,
                                                wallet_server: GoogleWalletTestServer) -> None:
    api = admin_api(both_app)
    program = create_program(api)
    serials = [_enroll(api, program) for _ in range(2)]
    settle(both_app)
    Phone(both_app).add(serials[0])  # the first card is on an iPhone and in Google Wallet
    settle(both_app)

    progress = _update(api, both_app, program)
    assert progress["status"] == "done"
    assert (progress["cards_total"], progress["cards_done"]) == (2, 2)
    assert progress["devices_pushed"] == 1
    messages = {r.resource_id for r in wallet_server.api_requests("addMessage")}
    assert messages == {f"{ISSUER_ID}.{s}" for s in serials}



@pytest.fixture
def both_rq_app(postgres_database: Any, tmp_path: Path, apns: APNsTestServer,
                apns_certs: dict[str, Path],
                wallet_server: GoogleWalletTestServer) -> Iterator[Flask]:
    """:func:`both_app` on PostgreSQL with its jobs on rq, for one ``pointpass worker``;
    updates mark two cards per chunk and the outbox leases two rows per batch, so Apple's and
    Google's rows alternate in the order a drain takes them."""
    yield from make_worker_app(postgres_database, tmp_path, **apns_settings(apns, apns_certs),
                               **google_settings(wallet_server), UPDATE_CHUNK=2,
                               OUTBOX_BATCH=2)


@pytest.mark.postgres
@pytest.mark.redis
def test_apple_pushes_do_not_wait_for_google(both_rq_app: Flask, apns: APNsTestServer,
                                             wallet_server: GoogleWalletTestServer) -> None:
    """Google's objects go at its quota's pace (20 a second): a campaign's iPhones must not
    wait for them behind the one worker. With Google answering nothing, every iPhone is
    still pushed."""
    app = both_rq_app
    api = admin_api(app)
    program = create_program(api)
    serials = [_enroll(api, program) for _ in range(6)]
    phones = [Phone(app) for _ in serials]
    for phone, serial in zip(phones, serials, strict=True):
        phone.add(serial)
    worker = start_worker(app.config["TEST_WORKER_ENV"])
    try:
        wait_until(lambda: _outbox_empty(app), "the Google objects to be made", timeout=120)
        apns.reset()
        held = wallet_server.hold("addMessage", None)  # Google takes one message, no more
        response = api.post(f"/api/v1/programs/{program['id']}/updates",  # to a segment:
                            json={"message": "Hi", "segment": {"language": "en"}})  # per object
        assert response.status_code == 202, response.json
        assert held.arrived.wait(60)
        try:
            wait_until(lambda: len(apns.requests) >= 6, "every iPhone pushed while Google "
                       "holds its first message", timeout=8)
        finally:
            held.release()
        url = response.json["url"]
        wait_until(lambda: api.get(url).json["status"] == "done", "the update", timeout=60)
    finally:
        worker.terminate()
        worker.wait(10)

    assert {r.token for r in apns.requests} == {phone.token for phone in phones}
    progress = api.get(url).json
    assert (progress["cards_total"], progress["cards_done"], progress["devices_pushed"]) == (
        6, 6, 6)  # every card in both wallets, counted once
    messages = {r.resource_id for r in wallet_server.api_requests("addMessage")}
    assert messages == {f"{ISSUER_ID}.{s}" for s in serials}


def _outbox_empty(app: Flask) -> bool:
    with app.app_context():
        empty = outbox.pending() == 0
        db.session.rollback()
    return empty
