"""Apple's PassKit web service through HTTP: every endpoint and status the reference names."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from app.extensions import db
from app.loyalty import changes
from app.loyalty.models import Card
from app.timeutil import utcnow
from app.wallet.apple.models import Device, Registration
from app.wallet.events import WalletEvent
from tests.factories import ApiClient, create_api_key, create_card, create_program, row_counts

DEVICE = "8f14e45fceea167a5a36dedd4bea2543"
TOKEN = "a1" * 32


class Wallet:
    """Speaks to the web service the way an iPhone's Wallet does."""

    def __init__(self, app: Flask, pass_type: str) -> None:
        self.client = app.test_client()
        self.pass_type = pass_type

    def register(self, serial: str, auth: str | None, body: Any = None,
                 device: str = DEVICE, **kwargs: Any) -> Any:
        headers = {"Authorization": f"ApplePass {auth}"} if auth else {}
        return self.client.post(
            f"/passkit/v1/devices/{device}/registrations/{self.pass_type}/{serial}",
            json={"pushToken": TOKEN} if body is None else body, headers=headers, **kwargs)

    def unregister(self, serial: str, auth: str | None, device: str = DEVICE) -> Any:
        headers = {"Authorization": f"ApplePass {auth}"} if auth else {}
        return self.client.delete(
            f"/passkit/v1/devices/{device}/registrations/{self.pass_type}/{serial}",
            headers=headers)

    def serials(self, since: str | None = None, device: str = DEVICE) -> Any:
        query = f"?passesUpdatedSince={since}" if since is not None else ""
        return self.client.get(
            f"/passkit/v1/devices/{device}/registrations/{self.pass_type}{query}")

    def latest(self, serial: str, auth: str | None, method: str = "GET", **headers: str) -> Any:
        if auth:
            headers["Authorization"] = f"ApplePass {auth}"
        return self.client.open(f"/passkit/v1/passes/{self.pass_type}/{serial}",
                                method=method, headers=headers)


@pytest.fixture
def wallet(app: Flask) -> Wallet:
    return Wallet(app, app.extensions["pointpass.apple"].pass_type_id)


def _token(app: Flask, serial: str) -> str:
    with app.app_context():
        token = db.session.scalar(select(Card.authentication_token)
                                  .where(Card.serial_number == serial))
        db.session.rollback()
        return str(token)


def test_register_new_then_again_updates_push_token(app: Flask, wallet: Wallet,
                                                    card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    auth = _token(app, serial)
    assert wallet.register(serial, auth).status_code == 201
    again = wallet.register(serial, auth, body={"pushToken": "b2" * 32})
    assert again.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(Device.push_token)) == "b2" * 32
    assert row_counts(app, Device, Registration) == (1, 1)


@pytest.mark.parametrize(("case", "status"), [
    ("no auth", 401), ("wrong token", 401), ("non-ASCII token", 401), ("wrong scheme", 401),
    ("wrong pass type", 404),
    ("unknown serial", 404), ("bad JSON", 400), ("no push token", 400),
    ("push token not hex", 400), ("body not an object", 400), ("bad device id", 400),
    ("oversized body", 413),
])
def test_bad_registrations_change_nothing(app: Flask, wallet: Wallet, card: dict[str, Any],
                                          case: str, status: int) -> None:
    serial = card["serial_number"]
    auth = _token(app, serial)
    if case == "no auth":
        response = wallet.register(serial, None)
    elif case == "wrong token":
        response = wallet.register(serial, "x" * 32)
    elif case == "non-ASCII token":  # compare_digest raised on it: a 500
        response = wallet.register(serial, "\u00e9" * 32)
    elif case == "wrong scheme":
        response = wallet.client.post(
            f"/passkit/v1/devices/{DEVICE}/registrations/{wallet.pass_type}/{serial}",
            json={"pushToken": TOKEN}, headers={"Authorization": f"Bearer {auth}"})
    elif case == "wrong pass type":
        response = Wallet(app, "pass.com.example.other").register(serial, auth)
    elif case == "unknown serial":
        response = wallet.register("NOSUCHSERIAL", auth)
    elif case == "bad JSON":
        response = wallet.client.post(
            f"/passkit/v1/devices/{DEVICE}/registrations/{wallet.pass_type}/{serial}",
            data="{nope", content_type="application/json",
            headers={"Authorization": f"ApplePass {auth}"})
    elif case == "no push token":
        response = wallet.register(serial, auth, body={"token": TOKEN})
    elif case == "push token not hex":
        response = wallet.register(serial, auth, body={"pushToken": "not-a-token!"})
    elif case == "body not an object":
        response = wallet.register(serial, auth, body=[TOKEN])
    elif case == "bad device id":
        response = wallet.register(serial, auth, device="x" * 200)
    else:
        response = wallet.register(serial, auth, body={"pushToken": TOKEN, "pad": "x" * 70000})
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    assert row_counts(app, Device, Registration) == (0, 0)


def test_serial_list_needs_no_authorization_and_tracks_every_change(
    app: Flask, api: Any, wallet: Wallet, program: dict[str, Any], card: dict[str, Any]
) -> None:
    first = card["serial_number"]
    second = create_card(api, program, name="Budi")["serial_number"]
    assert wallet.serials().status_code == 204  # nothing registered yet
    for serial in (first, second):
        assert wallet.register(serial, _token(app, serial)).status_code == 201

    listed = wallet.serials()
    assert listed.status_code == 200  # no Authorization header was sent
    assert sorted(listed.json["serialNumbers"]) == sorted([first, second])
    tag = listed.json["lastUpdated"]
    assert isinstance(tag, str)
    tag = _settled_tag(wallet, tag)

    api.post(f"/api/v1/cards/{first}/earn", json={"points": 5})
    api.post(f"/api/v1/cards/{second}/earn", json={"points": 7})
    changed = wallet.serials(tag)
    assert changed.status_code == 200
    assert sorted(changed.json["serialNumbers"]) == sorted([first, second])
    _settled_tag(wallet, changed.json["lastUpdated"])

    assert wallet.serials("not-a-tag").status_code == 400


def _settled_tag(wallet: Wallet, tag: str) -> str:
    """Follow tags until the list is empty, and return that tag.

    On PostgreSQL the tag is the cluster's oldest running transaction, so activity in other
    databases can hold it back and a serial is listed again (harmless: Wallet then gets a 304
    for the pass). With nothing changing here, the list must empty within a few calls.
    """
    for _ in range(200):  # 10 s: other test databases' transactions hold the tag back
        response = wallet.serials(tag)
        if response.status_code == 204:
            return tag
        tag = response.json["lastUpdated"]
        time.sleep(0.05)
    raise AssertionError("the serial list never emptied although nothing changed")


def test_change_committed_after_a_later_one_is_not_missed(
    pg_app: Flask, keys: Any = None
) -> None:
    """PostgreSQL commits out of order: the tag must still cover the earlier transaction."""
    app = pg_app
    api = ApiClient(app.test_client(), create_api_key(app, "admin", "a"))
    program = create_program(api)
    serials = [create_card(api, program, name=n)["serial_number"] for n in ("A", "B")]
    wallet = Wallet(app, app.extensions["pointpass.apple"].pass_type_id)
    for serial in serials:
        wallet.register(serial, _token(app, serial))
    tag = wallet.serials().json["lastUpdated"]

    slow_started, finish_slow = threading.Event(), threading.Event()

    def slow_change() -> None:  # changes card A, commits only when told
        with app.app_context():
            db.session.execute(update(Card).where(Card.serial_number == serials[0])
                               .values(**changes.bump(utcnow())))
            slow_started.set()
            finish_slow.wait(10)
            db.session.commit()

    thread = threading.Thread(target=slow_change)
    thread.start()
    assert slow_started.wait(10)
    api.post(f"/api/v1/cards/{serials[1]}/earn", json={"points": 3})  # commits first
    middle = wallet.serials(tag).json
    assert middle["serialNumbers"] == [serials[1]]
    finish_slow.set()
    thread.join(10)
    later = wallet.serials(middle["lastUpdated"]).json
    assert serials[0] in later["serialNumbers"]


def test_latest_pass_get_head_and_304(app: Flask, api: Any, wallet: Wallet,
                                      card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    auth = _token(app, serial)
    response = wallet.latest(serial, auth)
    assert response.status_code == 200
    assert response.content_type == "application/vnd.apple.pkpass"
    last_modified = response.headers["Last-Modified"]

    head = wallet.latest(serial, auth, method="HEAD")
    assert head.status_code == 200
    assert head.headers["Last-Modified"] == last_modified
    assert head.data == b""

    assert wallet.latest(serial, auth, **{"If-Modified-Since": last_modified}).status_code == 304
    assert wallet.latest(serial, None).status_code == 401
    assert wallet.latest(serial, "y" * 32).status_code == 401
    assert Wallet(app, "pass.com.example.other").latest(serial, auth).status_code == 404

    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 9})
    newer = wallet.latest(serial, auth, **{"If-Modified-Since": last_modified})
    assert newer.status_code == 200
    assert newer.headers["Last-Modified"] != last_modified


def test_unregister(app: Flask, wallet: Wallet, card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    auth = _token(app, serial)
    wallet.register(serial, auth)
    assert wallet.unregister(serial, "z" * 32).status_code == 401
    assert row_counts(app, Device, Registration) == (1, 1)
    assert wallet.unregister(serial, auth).status_code == 200
    # The registration is kept, marked removed, and no longer listed.
    assert row_counts(app, Device, Registration) == (1, 1)
    removed_at = _removed_at(app)
    assert removed_at is not None
    assert wallet.unregister(serial, auth).status_code == 200  # already gone: still 200
    assert _removed_at(app) == removed_at  # the first removal's time stays
    assert wallet.unregister(serial, auth, device="f" * 32).status_code == 200  # unknown
    assert wallet.serials().status_code == 204
    # Added again: a new registration to Apple (201), installed again, listed again.
    assert wallet.register(serial, auth).status_code == 201
    assert _removed_at(app) is None
    assert row_counts(app, Device, Registration) == (1, 1)
    assert wallet.serials().json["serialNumbers"] == [serial]
    assert wallet.register(serial, auth).status_code == 200
    # The history the analytics count installs and removals from (app.wallet.events).
    with app.app_context():
        events = db.session.execute(select(WalletEvent.platform, WalletEvent.kind).order_by(
            WalletEvent.id)).all()
        db.session.rollback()
    assert [tuple(e) for e in events] == [
        ("apple", "installed"), ("apple", "removed"), ("apple", "installed")]


def _removed_at(app: Flask) -> Any:
    with app.app_context():
        removed_at = db.session.scalar(select(Registration.removed_at))
        db.session.rollback()
        return removed_at


def test_log_endpoint(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    caplog.set_level("WARNING", logger="pointpass.apple.device_log")
    response = client.post("/passkit/v1/log", json={"logs": ["Pass signature invalid"]})
    assert response.status_code == 200
    assert "Pass signature invalid" in caplog.text
    assert client.post("/passkit/v1/log", json={"logs": "x"}).status_code == 400
    assert client.post("/passkit/v1/log", data="{", content_type="application/json"
                       ).status_code == 400


FORGED = "2026-11-28 15:00:00,000 ERROR pointpass.auth: FORGED admin key accepted"


def _device_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pointpass.apple.device_log"]


def test_device_log_cannot_forge_lines(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    """A newline made a forged ERROR line of its own; ANSI and bidi controls went through."""
    caplog.set_level("WARNING", logger="pointpass.apple.device_log")
    logs = [f"Pass ok\n{FORGED}\r\n\x1b[2K\x1b[31mred\x1b[0m",
            "\u202egnp.exe \u2066x\u2069 \u200f \x7f \x85 \\ \u2028"]
    response = app.test_client().post("/passkit/v1/log", json={"logs": logs})
    assert response.status_code == 200
    assert _device_lines(caplog) == [
        f"Wallet: Pass ok\\n{FORGED}\\r\\n\\x1b[2K\\x1b[31mred\\x1b[0m",
        "Wallet: \\u202egnp.exe \\u2066x\\u2069 \\u200f \\x7f \\x85 \\\\ \\u2028"]
    # Written as the log handler formats it: one line per message, none starting as ours do.
    lines = caplog.text.splitlines()
    assert len(lines) == 2
    assert not any(line.startswith("2026-11-28") for line in lines)


def test_device_log_caps_what_one_request_writes(
        app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="pointpass.apple.device_log")
    client = app.test_client()
    assert client.post("/passkit/v1/log", json={"logs": ["x" * 60_000]}).status_code == 200
    assert _device_lines(caplog) == ["Wallet: " + "x" * 1000 + "... [59000 more characters]"]
    caplog.clear()
    assert client.post("/passkit/v1/log",
                       json={"logs": [f"m{i}" for i in range(25)]}).status_code == 200
    assert _device_lines(caplog) == [*(f"Wallet: m{i}" for i in range(20)),
                                     "Wallet: ... 5 more messages not logged"]


def test_device_log_is_rate_limited_per_address(
        app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    """150 posts of 60 KB grew the log by 9 MiB; now 30 a minute per address are read."""
    caplog.set_level("WARNING", logger="pointpass.apple.device_log")
    client = app.test_client()
    body = {"logs": ["y" * 20_000] * 3}  # 60 KB
    statuses = [client.post("/passkit/v1/log", json=body).status_code for _ in range(150)]
    assert statuses == [200] * 30 + [429] * 120
    refused = client.post("/passkit/v1/log", json=body)
    assert refused.content_type == "application/problem+json"
    assert refused.json["type"] == "urn:pointpass:problem:rate-limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    logged = sum(len(line) for line in _device_lines(caplog))
    assert logged < 30 * 3 * 1100  # 30 requests x 3 messages x ~1,000 characters
    # Counted per address: another device is not refused.
    other = client.post("/passkit/v1/log", json={"logs": ["z"]},
                        environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert other.status_code == 200
