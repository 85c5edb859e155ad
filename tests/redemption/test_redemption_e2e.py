"""One-tap redemption through real parts: pass -> QR -> scan -> redeem -> push -> new code."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.apns_server import APNsTestServer
from tests.factories import (
    admin_api,
    apns_settings,
    create_api_key,
    create_card,
    create_program,
    make_app,
    register_device,
    settle,
)


@pytest.fixture
def e2e_app(database: Any, tmp_path: Path, apns: APNsTestServer,
            apns_certs: dict[str, Path]) -> Iterator[Flask]:
    yield from make_app(database, tmp_path, **apns_settings(apns, apns_certs))


def _qr_roundtrip(message: str) -> str:
    """What a till's scanner reads from the pass's barcode: render the QR, decode it."""
    import qrcode
    import zxingcpp

    image = qrcode.make(message, border=4).get_image().convert("L")
    decoded = zxingcpp.read_barcodes(image)
    assert len(decoded) == 1
    return str(decoded[0].text)


def _pass(app: Flask, url: str) -> dict[str, Any]:
    response = app.test_client().get(url.removeprefix(app.config["BASE_URL"]))
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        return json.loads(archive.read("pass.json"))  # type: ignore[no-any-return]


def test_scan_redeem_push_new_code(e2e_app: Flask, apns: APNsTestServer) -> None:
    app = e2e_app
    admin = admin_api(app)
    staff = admin.as_(create_api_key(app, "staff", "till 1"))
    program = create_program(admin)
    card = create_card(admin, program, name="Nur Aisyah", language="ms")
    serial = card["serial_number"]
    admin.post(f"/api/v1/cards/{serial}/earn", json={"points": 180})
    phone = register_device(app, serial)
    settle(app)
    apns.reset()

    old_pass = _pass(app, card["apple_pass_url"])
    old_code = _qr_roundtrip(old_pass["barcodes"][0]["message"])
    assert old_code == old_pass["barcodes"][0]["message"]

    scan = staff.post("/api/v1/scans", json={"code": old_code})
    assert scan.status_code == 200
    assert scan.json["card"]["member_first_name"] == "Nur"
    reward = scan.json["rewards"][0]
    redeemed = staff.post("/api/v1/redemptions",
                          json={"scan_id": scan.json["scan_id"], "reward_id": reward["id"]},
                          headers={"Idempotency-Key": "e2e-1"})
    assert redeemed.status_code == 201
    assert redeemed.json["balance"] == 80
    settle(app)

    assert len(apns.requests_for(phone.token)) == 1
    assert phone.changed() == [serial]
    new_pass = phone.fetch(serial)
    assert new_pass["storeCard"]["headerFields"][0]["value"] == 80
    new_code = _qr_roundtrip(new_pass["barcodes"][0]["message"])
    assert new_code != old_code

    again = staff.post("/api/v1/scans", json={"code": old_code})
    assert again.status_code == 409
    assert staff.post("/api/v1/scans", json={"code": new_code}).status_code == 200
