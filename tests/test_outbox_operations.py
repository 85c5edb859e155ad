"""Operators see the outbox (``pointpass outbox``, ``/api/v1/admin/outbox``), rows past their
retry limit stay out of the drain until retried, and update progress says what was skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from app import background
from app.cli.cli import cli
from app.extensions import db
from app.loyalty import fanout
from app.outbox import drain as outbox
from app.outbox.models import OutboxEntry
from app.timeutil import utcnow
from tests.apns_server import APNsTestServer
from tests.factories import (
    DEV_CERTS,
    ApiClient,
    admin_api,
    create_api_key,
    create_card,
    create_program,
    make_app,
    make_worker_app,
    register_device,
)


def _settle(app: Flask) -> None:
    with app.app_context():
        background.dispatcher().wait()


def _status(api: ApiClient) -> dict[str, dict[str, Any]]:
    response = api.get("/api/v1/admin/outbox")
    assert response.status_code == 200, response.json
    return {c["channel"]: c for c in response.json["channels"]}


def _run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(cli, list(args))


@pytest.fixture
def queued_app(database: Any, tmp_path: Path, apns_app_settings: dict[str, Any],
               free_port: Any) -> Iterator[Flask]:
    """Apple pushes and Google syncs configured, jobs on an rq queue no worker serves: the
    outbox rows stay where they are. (Nothing listens at the Google URL.)"""
    yield from make_worker_app(database, tmp_path, **apns_app_settings,
                               GOOGLE_ISSUER_ID="3388000000012345678",
                               GOOGLE_SERVICE_ACCOUNT=str(DEV_CERTS["google_service_account"]),
                               GOOGLE_API_URL=f"http://127.0.0.1:{free_port()}/v1")


def test_status_counts_rows_and_ages_per_channel(queued_app: Flask) -> None:
    api = admin_api(queued_app)
    program = create_program(api)
    before = utcnow()
    first, _ = (create_card(api, program)["serial_number"] for _ in range(2))
    register_device(queued_app, first)
    assert api.post(f"/api/v1/cards/{first}/earn", json={"points": 5}).status_code == 201
    status = _status(api)
    after = utcnow()

    # Google: both new cards, then the earn; Apple: the earn, for the registered phone.
    assert {name: (c["rows"], c["due"], c["past_limit"]) for name, c in status.items()} == {
        "apple": (1, 1, 0), "google": (3, 3, 0)}
    oldest = {name: datetime.fromisoformat(c["oldest_created_at"]) for name, c in status.items()}
    assert before <= oldest["google"] < oldest["apple"] <= after
    for name, channel in status.items():
        assert 0 <= channel["oldest_age_seconds"] <= (after - oldest[name]).total_seconds()

    table = _run(queued_app, "outbox", "status")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["CHANNEL", "ROWS", "DUE", "PAST", "LIMIT", "OLDEST"]
    assert lines[1].split()[:4] == ["apple", "1", "1", "0"]
    assert lines[2].split()[:4] == ["google", "3", "3", "0"]
    as_json = json.loads(_run(queued_app, "outbox", "status", "--json").output)
    assert as_json["max_attempts"] == 20
    assert [(c["channel"], c["rows"]) for c in as_json["channels"]] == [("apple", 1),
                                                                         ("google", 3)]
    # Nothing is past its limit or waiting: retry changes nothing, even with --all.
    assert _run(queued_app, "outbox", "retry", "--all").output == "Retried 0 outbox rows.\n"


@pytest.fixture
def flaky_app(database: Any, tmp_path: Path,
              apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    """Pushing to the APNs test server; a row is given up on after its first failed try."""
    yield from make_app(database, tmp_path, **apns_app_settings, OUTBOX_MAX_ATTEMPTS=1,
                        APNS_RETRIES=1)


def test_a_row_past_its_limit_waits_for_retry_then_is_delivered(
    flaky_app: Flask, apns: APNsTestServer
) -> None:
    api = admin_api(flaky_app)
    program = create_program(api)
    serial = create_card(api, program)["serial_number"]
    phone = register_device(flaky_app, serial)
    _settle(flaky_app)
    apns.reset()
    apns.respond(phone.token, 503, "ServiceUnavailable", times=2)  # a try and its retry

    pass_update = api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "Hi"})
    _settle(flaky_app)
    assert len(apns.requests_for(phone.token)) == 2
    progress = api.get(pass_update.json["url"]).json
    # Given up on: the update is done, its card counted, the failure too.
    assert (progress["status"], progress["cards_done"], progress["failures"]) == ("done", 1, 1)
    assert _status(api)["apple"]["past_limit"] == 1

    with flaky_app.app_context():  # however long after, drains (the sweep's) leave it alone
        db.session.execute(update(OutboxEntry).values(available_at=utcnow()))
        db.session.commit()
        assert outbox.drain().rows == 0
    assert len(apns.requests_for(phone.token)) == 2
    assert _status(api)["apple"] | {"oldest_created_at": None, "oldest_age_seconds": None} == {
        "channel": "apple", "rows": 1, "due": 0, "past_limit": 1,
        "oldest_created_at": None, "oldest_age_seconds": None}

    retried = _run(flaky_app, "outbox", "retry", "--channel", "apple")
    assert retried.output == "Retried 1 outbox row.\n", retried.output
    _settle(flaky_app)
    assert [r.status for r in apns.requests_for(phone.token)][-1] == 200
    assert len(apns.requests_for(phone.token)) == 3
    assert _status(api)["apple"]["rows"] == 0
    # Idempotent, through either door.
    assert _run(flaky_app, "outbox", "retry").output == "Retried 0 outbox rows.\n"
    assert api.post("/api/v1/admin/outbox/retry", json={}).json == {"retried": 0}
    # The update's counts were settled when the row was given up on.
    assert api.get(pass_update.json["url"]).json["cards_done"] == 1


def test_outbox_operations_are_for_admins_only(app: Flask) -> None:
    api = admin_api(app)
    for role in ("staff", "pos", "marketer"):
        other = api.as_(create_api_key(app, role))
        assert other.get("/api/v1/admin/outbox").status_code == 403
        assert other.post("/api/v1/admin/outbox/retry", json={}).status_code == 403
    assert api.as_(None).get("/api/v1/admin/outbox").status_code == 401

    assert api.post("/api/v1/admin/outbox/retry",
                    json={"channel": "apple", "all": True}).json == {"retried": 0}
    unknown = api.post("/api/v1/admin/outbox/retry", json={"channel": "fax"})
    assert unknown.status_code == 422
    assert unknown.headers["Content-Type"] == "application/problem+json"
    assert "channel" in json.dumps(unknown.json["errors"])
    assert api.post("/api/v1/admin/outbox/retry", json={"all": 1}).status_code == 422

    refused = _run(app, "outbox", "retry", "--channel", "fax")
    assert refused.exit_code == 2 and "Unknown channel 'fax'" in refused.output


def test_update_counts_cards_without_wallets_and_pushes_skipped(app: Flask) -> None:
    """Development certificates and no POINTPASS_APNS_URL: APNs is not configured."""
    api = admin_api(app)
    program = create_program(api)
    serials = [create_card(api, program)["serial_number"] for _ in range(20)]
    for serial in serials[:10]:  # ten phones, one card each; the other ten on none
        register_device(app, serial)
    _settle(app)

    response = api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "Hi"})
    _settle(app)
    progress = api.get(response.json["url"]).json
    assert progress["status"] == "done"
    assert {key: progress[key] for key in (
        "cards_total", "cards_done", "cards_with_wallet", "devices_pushed", "devices_skipped",
        "skipped", "failures")} == {
        "cards_total": 20, "cards_done": 20, "cards_with_wallet": 10, "devices_pushed": 0,
        "devices_skipped": 10, "skipped": {"apns-not-configured": 10}, "failures": 0}


@pytest.fixture
def queued_once_app(database: Any, tmp_path: Path,
                    apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    """Jobs on an rq queue no worker serves; one attempt per outbox row."""
    yield from make_worker_app(database, tmp_path, **apns_app_settings, OUTBOX_MAX_ATTEMPTS=1)


def test_a_row_whose_last_attempt_died_is_given_up_and_its_update_finishes(
    queued_once_app: Flask, apns: APNsTestServer
) -> None:
    app = queued_once_app
    api = admin_api(app)
    program = create_program(api)
    register_device(app, create_card(api, program)["serial_number"])
    pass_update = api.post(f"/api/v1/programs/{program['id']}/updates", json={}).json
    with app.app_context():
        fanout.run(pass_update["id"])  # the update's job, run here: it marks the card
        assert len(outbox.claim("apple", 100, lease_seconds=0)) == 1  # leased, then it dies
        outbox.drain()  # the next drain (the sweep's) finds the lease run out

    progress = api.get(pass_update["url"]).json
    assert (progress["status"], progress["cards_done"], progress["failures"]) == ("done", 1, 1)
    assert apns.requests == []  # given up on, not pushed
    assert {name: c["past_limit"] for name, c in _status(api).items()} == {"apple": 1, "google": 0}


def test_a_push_the_outbox_retries_successfully_is_no_failure(
    database: Any, tmp_path: Path, apns_app_settings: dict[str, Any], apns: APNsTestServer
) -> None:
    for app in make_app(database, tmp_path, **apns_app_settings, APNS_RETRIES=1):
        api = admin_api(app)
        program = create_program(api)
        phone = register_device(app, create_card(api, program)["serial_number"])
        _settle(app)
        apns.respond(phone.token, 503, "ServiceUnavailable", times=2)  # a try and its retry
        pass_update = api.post(f"/api/v1/programs/{program['id']}/updates", json={}).json
        _settle(app)
        assert api.get(pass_update["url"]).json["status"] == "pushing"  # backing off
        with app.app_context():  # the backoff passes; the next drain delivers
            db.session.execute(update(OutboxEntry).values(available_at=utcnow()))
            db.session.commit()
            assert outbox.drain().rows == 1

        progress = api.get(pass_update["url"]).json
        assert (progress["status"], progress["devices_pushed"], progress["failures"]) == (
            "done", 1, 0)


def test_rows_left_for_a_wallet_no_longer_configured_are_skipped_with_the_reason(
    queued_app: Flask, database: Any, tmp_path: Path
) -> None:
    api = admin_api(queued_app)
    program = create_program(api)
    create_card(api, program)  # its Google object is to be created: a "google" row
    pass_update = api.post(f"/api/v1/programs/{program['id']}/updates", json={}).json
    with queued_app.app_context():
        fanout.run(pass_update["id"])  # the update's job, run here: it marks the card

    (tmp_path / "restarted").mkdir()
    # The same database, served again without Google Wallet configured.
    for plain in make_app(database, tmp_path / "restarted",
                          DATABASE_URL=queued_app.config["DATABASE_URL"]):
        with plain.app_context():
            outbox.drain()
        progress = ApiClient(plain.test_client(), api.key).get(pass_update["url"]).json
        assert {key: progress[key] for key in (
            "status", "cards_done", "cards_with_wallet", "devices_skipped", "skipped")} == {
            "status": "done", "cards_done": 1, "cards_with_wallet": 1, "devices_skipped": 1,
            "skipped": {"google-not-configured": 1}}
