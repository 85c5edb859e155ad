"""Google syncs counted by outcome in ``GET /metrics``, against the local Google test server."""

from __future__ import annotations

from flask import Flask

from app import background
from tests.factories import admin_api, create_card, create_program
from tests.google_server import GoogleWalletTestServer
from tests.prometheus import moved, scrape
from tests.wallet.google.conftest import ISSUER_ID

SYNCS = "pointpass_google_syncs_total"


def _settle(app: Flask) -> None:
    with app.app_context():
        background.dispatcher().wait()


def test_sent_and_refused_syncs_are_counted(google_app: Flask,
                                            wallet_server: GoogleWalletTestServer) -> None:
    api = admin_api(google_app)
    program = create_program(api)
    start = scrape(api.client)
    serial = create_card(api, program)["serial_number"]
    _settle(google_app)
    enrolled = scrape(api.client)
    assert moved(start, enrolled, SYNCS, outcome="sent") == 1  # the new card's object

    wallet_server.fail("*", f"{ISSUER_ID}.{serial}", 400, "invalidArgument", times=None)
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5}).status_code == 201
    _settle(google_app)
    refused = scrape(api.client)
    assert moved(enrolled, refused, SYNCS, outcome="refused") == 1
    assert moved(enrolled, refused, SYNCS, outcome="sent") == 0
