"""A marketer update's progress counts cards, however many wallets (or none) hold each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.apns_server import APNsTestServer
from tests.factories import (
    ApiClient,
    admin_api,
    apns_settings,
    create_card,
    create_program,
    make_app,
    settle,
)
from tests.google_server import GoogleWalletTestServer
from tests.phones import Phone
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
    response = api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "Hi"})
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
