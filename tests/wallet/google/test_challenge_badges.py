"""A badge on the Google Wallet object: the visit that reaches a challenge updates the object
(through the outbox and the local Google test server, which checks every body against
Google's schema) with a "Badges" text module naming it once, in every language."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.factories import admin_api, create_card, create_program, make_app, settle
from tests.google_server import GoogleWalletTestServer
from tests.wallet.google.conftest import ISSUER_ID, google_settings


@pytest.fixture
def app(database: Any, tmp_path: Path, wallet_server: GoogleWalletTestServer) -> Iterator[Flask]:
    yield from make_app(database, tmp_path, **google_settings(wallet_server))


def _texts(localized: dict[str, Any]) -> dict[str, str]:
    return {t["language"]: t["value"] for t in localized["translatedValues"]}


def test_the_object_names_the_badge_once(app: Flask,
                                         wallet_server: GoogleWalletTestServer) -> None:
    api = admin_api(app)
    program = create_program(api)
    assert api.post(f"/api/v1/programs/{program['id']}/challenges", json={
        "kind": "visits", "name": "2 visits", "target": 2, "bonus_points": 20,
        "texts": {"id": "2 kunjungan"}}).status_code == 201
    serial = create_card(api, program, name="Ari")["serial_number"]
    object_id = f"{ISSUER_ID}.{serial}"
    for visit in range(3):
        assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5},
                        headers={"Idempotency-Key": f"v{visit}"}).status_code == 201
        settle(app)
        modules = {m["id"]: m for m in wallet_server.objects[object_id].get(
            "textModulesData", [])}
        if visit == 0:
            assert "badges" not in modules
            continue
        badges = modules["badges"]
        assert (badges["header"], badges["body"]) == ("Badges", "2 visits")
        assert _texts(badges["localizedBody"]) == {
            "en": "2 visits", "id": "2 kunjungan", "th": "2 visits", "ms": "2 visits"}
        assert wallet_server.objects[object_id]["loyaltyPoints"]["balance"] == {
            "int": 5 * (visit + 1) + 20}
    assert wallet_server.schema.errors("LoyaltyObject", wallet_server.objects[object_id]) == []
