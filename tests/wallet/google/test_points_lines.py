"""Pending and expiring points on the Google Wallet object, through the API, the outbox and
the local Google test server (which checks every body against Google's schema)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from app.extensions import db
from app.loyalty.models import Program
from tests.clock import FakeClock
from tests.factories import admin_api, create_card, create_program, make_app, settle
from tests.google_server import GoogleWalletTestServer
from tests.wallet.google.conftest import ISSUER_ID, google_settings

JAKARTA = ZoneInfo("Asia/Jakarta")
DAY = timedelta(days=1)
# The test ends at the real time: the outbox drains the changes due by the real clock.
START = datetime.now(UTC).replace(microsecond=0) - 359 * DAY


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=START.timestamp())


def local_day(when: datetime, year: bool) -> str:
    day = when.astimezone(JAKARTA)
    return f"{day.day} {day:%b}" + (f" {day.year}" if year else "")


@pytest.fixture
def app(database: Any, tmp_path: Path, clock: FakeClock,
        wallet_server: GoogleWalletTestServer) -> Iterator[Flask]:
    yield from make_app(database, tmp_path, CLOCK=clock, **google_settings(wallet_server))


def _texts(localized: dict[str, Any]) -> dict[str, str]:
    return {t["language"]: t["value"] for t in localized["translatedValues"]}


def _modules(server: GoogleWalletTestServer, serial: str) -> dict[str, dict[str, Any]]:
    stored = server.objects[f"{ISSUER_ID}.{serial}"]
    return {m["id"]: m for m in stored.get("textModulesData", [])}


def test_the_object_shows_pending_then_expiring_points(
        app: Flask, wallet_server: GoogleWalletTestServer, clock: FakeClock) -> None:
    api = admin_api(app)
    program = create_program(api)
    with app.app_context():
        row = db.session.get(Program, program["id"])
        assert row is not None
        row.time_zone, row.pending_days = "Asia/Jakarta", 7
        row.points_expire_after_days, row.expiry_reminder_days = 365, 14
        db.session.commit()
    serial = create_card(api, program, name="Ari")["serial_number"]
    settle(app)
    assert _modules(wallet_server, serial) == {}

    assert api.post(f"/api/v1/cards/{serial}/earn", json={
        "amount": 40_000_000, "currency": "IDR"}).status_code == 201
    settle(app)
    release = local_day(START + 7 * DAY, year=False)
    pending = _modules(wallet_server, serial)["pending"]
    assert (pending["header"], pending["body"]) == (
        "Pending points", f"+40 pending until {release}")
    assert _texts(pending["localizedHeader"])["id"] == "Poin tertunda"
    assert _texts(pending["localizedBody"])["th"].startswith("+40 รอเข้าบัญชีถึง ")
    assert "expiry" not in _modules(wallet_server, serial)

    # 13 days before the lot expires (365 days after it became available), a spend (which
    # first releases the lot) brings the reminder, and the pending line is gone.
    clock.advance(359 * DAY.total_seconds())
    assert api.post(f"/api/v1/cards/{serial}/adjust", json={
        "points": -1, "reason": "Correction"}).status_code == 201
    settle(app)
    modules = _modules(wallet_server, serial)
    assert "pending" not in modules
    expiry = modules["expiry"]
    expires = local_day(START + (7 + 365) * DAY, year=True)
    assert (expiry["header"], expiry["body"]) == ("Points expiring",
                                                  f"39 Points expire on {expires}")
    assert _texts(expiry["localizedBody"])["th"].startswith("39 แต้ม จะหมดอายุวันที่ ")
    assert wallet_server.schema.errors("LoyaltyObject",
                                       wallet_server.objects[f"{ISSUER_ID}.{serial}"]) == []
