"""Staff accounts with a PIN on enrolled till devices, through the admin API and the pages.

Runs on SQLite and PostgreSQL. Time is the app's fake clock (``CLOCK``), moved by the tests:
the enrolment link expires after 24 hours, a PIN lock ends after 15 minutes.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.loyalty.models import LedgerEntry
from app.redemption.models import Redemption
from app.staff.models import StaffMember
from tests.clock import FakeClock
from tests.factories import ApiClient, card_code, create_card, create_program
from tests.staff.conftest import Till, enrol_path, form_token


@pytest.fixture
def location(till: Till, program: dict[str, Any]) -> int:
    return till.location(program)


@pytest.fixture
def budi(till: Till, location: int) -> dict[str, Any]:
    return till.add_staff("Budi Santoso", "2468", location, language="id")


def page_token(client: Any) -> str:
    page = client.get("/staff")
    assert page.status_code == 200, page.headers.get("Location")
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.get_data(as_text=True))
    assert match
    return match.group(1)


def scan(client: Any, code: str, token: str) -> Any:
    return client.post("/staff/scan", json={"code": code}, headers={"X-CSRFToken": token})


# --- Staff members and their PINs -----------------------------------------------------------


def test_the_pin_is_kept_only_as_a_salted_slow_hash(app: Any, api: ApiClient, till: Till,
                                                    location: int) -> None:
    first = till.add_staff("Ana", "135790", location)
    second = till.add_staff("Bea", "135790", location)
    assert "pin" not in first and "pin_hash" not in first
    assert first["location_ids"] == [location] and first["active"] is True
    with app.app_context():
        hashes = [db.session.get(StaffMember, m["id"]).pin_hash for m in (first, second)]
        db.session.rollback()
    for stored in hashes:
        assert "135790" not in stored
        scheme, n, r, p, salt, digest = stored.split("$")
        assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
        # The test suite's cost (POINTPASS_ENV=testing); elsewhere 2^14 (the test below).
        assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**4, 8, 1)
    assert hashes[0] != hashes[1]  # salted: the same PIN hashes differently
    listed = api.get("/api/v1/staff").json["staff"]
    assert [m["name"] for m in listed] == ["Ana", "Bea"]
    assert "135790" not in str(listed)


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Ana", "pin": "123", "location_ids": [1]}, "pin"),
    ({"name": "Ana", "pin": "123456789", "location_ids": [1]}, "pin"),
    ({"name": "Ana", "pin": "12a4", "location_ids": [1]}, "pin"),
    ({"name": "Ana", "pin": 1234, "location_ids": [1]}, "pin"),
    ({"name": "", "pin": "1234", "location_ids": [1]}, "name"),
    ({"name": "Ana", "pin": "1234", "location_ids": []}, "location_ids"),
    ({"name": "Ana", "pin": "1234", "location_ids": [999]}, "location_ids"),
    ({"name": "Ana", "pin": "1234", "location_ids": [1], "language": "fr"}, "language"),
])
def test_bad_staff_input_is_a_problem_and_writes_nothing(api: ApiClient, location: int,
                                                         body: dict[str, Any], field: str) -> None:
    assert location == 1
    response = api.post("/api/v1/staff", json=body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.get_data(as_text=True)
    assert api.get("/api/v1/staff").json["staff"] == []


def test_only_admins_manage_staff_and_devices(api: ApiClient, keys: dict[str, str],
                                              budi: dict[str, Any], location: int) -> None:
    for role in ("staff", "pos", "marketer"):
        other = api.as_(keys[role])
        assert other.get("/api/v1/staff").status_code == 403
        assert other.post("/api/v1/devices", json={"location_id": location}).status_code == 403
        assert other.request("PATCH", f"/api/v1/staff/{budi['id']}",
                             json={"active": False}).status_code == 403
    assert api.as_(None).get("/api/v1/devices").status_code == 401
    assert api.request("PATCH", "/api/v1/staff/999", json={"active": False}).status_code == 404
    assert api.request("PATCH", f"/api/v1/staff/{budi['id']}", json={}).status_code == 422
    assert api.request("DELETE", "/api/v1/devices/999").status_code == 404


# --- Enrolling a device ---------------------------------------------------------------------


def test_the_enrolment_link_works_once_and_sets_a_device_cookie(
        app: Any, api: ApiClient, till: Till, location: int) -> None:
    device = till.new_device(location)
    assert device["status"] == "pending" and device["location_id"] == location
    assert device["enrol_url"].startswith("https://pointpass.test/staff/enrol/")
    client = app.test_client()
    path = enrol_path(device)
    page = client.get(path)
    assert page.status_code == 200
    assert "Kopi Sudirman" in page.get_data(as_text=True)
    # Without the form's CSRF token nothing is enrolled.
    assert client.post(path).status_code == 400
    response = client.post(path, data={"csrf_token": form_token(page.get_data(as_text=True))})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/staff/login")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("pp_till="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    # Used up: another visit, or another phone, gets a clear 410 page.
    for other in (client, app.test_client()):
        gone = other.get(path)
        assert gone.status_code == 410
        assert "already used, has expired" in gone.get_data(as_text=True)
        assert other.post(path).status_code == 410
    listed = api.get("/api/v1/devices").json["devices"]
    assert [(d["id"], d["status"]) for d in listed] == [(device["id"], "enrolled")]
    assert "enrol_url" not in listed[0]


def test_the_enrolment_link_expires_after_a_day(app: Any, api: ApiClient, till: Till,
                                               location: int, clock: FakeClock) -> None:
    device = till.new_device(location)
    clock.advance(24 * 3600 + 1)
    client = app.test_client()
    assert client.get(enrol_path(device)).status_code == 410
    assert api.get("/api/v1/devices").json["devices"][0]["status"] == "expired"


def test_an_unknown_enrolment_link_is_gone_too(app: Any) -> None:
    response = app.test_client().get("/staff/enrol/not-a-token?lang=th")
    assert response.status_code == 410
    assert '<html lang="th">' in response.get_data(as_text=True)


# --- Signing in with a PIN, and what the till records ---------------------------------------


def test_a_member_signs_in_with_a_pin_and_their_redemption_names_them(
        app: Any, api: ApiClient, till: Till, program: dict[str, Any], location: int,
        budi: dict[str, Any]) -> None:
    elsewhere = till.location(program, "Kopi Bangsar")
    till.add_staff("Chai Only Elsewhere", "1111", elsewhere)
    gone = till.add_staff("Dewi Gone", "2222", location)
    assert api.request("PATCH", f"/api/v1/staff/{gone['id']}",
                       json={"active": False}).json["active"] is False
    card = create_card(api, program, email="siti@example.com")
    assert api.post(f"/api/v1/cards/{card['serial_number']}/earn",
                    json={"points": 250}).status_code == 201

    client = app.test_client()
    device = till.enrol(client, location)
    names = client.get("/staff/login").get_data(as_text=True)
    assert "Budi Santoso" in names and f"/staff/pin/{budi['id']}?lang=id" in names
    assert "Chai Only Elsewhere" not in names and "Dewi Gone" not in names
    assert 'name="key"' not in names  # an enrolled device signs in with PINs
    pin_page = client.get(f"/staff/pin/{budi['id']}?lang=id").get_data(as_text=True)
    assert 'inputmode="numeric"' in pin_page and '<html lang="id">' in pin_page

    response = till.type_pin(client, budi["id"], "2468")
    assert response.status_code == 303 and response.headers["Location"].endswith("/staff")
    with client.session_transaction() as session:
        assert session["staff_member_id"] == budi["id"]
        assert session["staff_device_id"] == device["id"]
        assert "2468" not in repr(dict(session))
    token = page_token(client)
    scanned = scan(client, card_code(app, card["serial_number"]), token)
    assert scanned.status_code == 200, scanned.json
    reward_id = scanned.json["rewards"][0]["id"]
    redeemed = client.post("/staff/redeem", json={"scan_id": scanned.json["scan_id"],
                                                  "reward_id": reward_id},
                           headers={"X-CSRFToken": token})
    assert redeemed.status_code == 201, redeemed.json
    assert redeemed.json["location_id"] == location
    with app.app_context():
        entry = db.session.scalar(select(LedgerEntry).order_by(LedgerEntry.id.desc()))
        assert (entry.actor, entry.staff_member_id, entry.device_id, entry.location_id) == (
            f"staff:{budi['id']}", budi["id"], device["id"], location)
        redemption = db.session.scalar(select(Redemption))
        assert (redemption.staff_key_id, redemption.staff_member_id, redemption.device_id,
                redemption.location_id) == (None, budi["id"], device["id"], location)
        db.session.rollback()


def test_a_member_cannot_sign_in_where_they_do_not_work(app: Any, till: Till,
                                                        program: dict[str, Any],
                                                        budi: dict[str, Any]) -> None:
    client = app.test_client()
    till.enrol(client, till.location(program, "Kopi Bangsar"))
    response = client.get(f"/staff/pin/{budi['id']}")
    assert response.status_code == 303 and response.headers["Location"].endswith("/staff/login")
    # Nor without an enrolled device at all.
    assert app.test_client().get(f"/staff/pin/{budi['id']}").status_code == 303


def test_another_programs_card_is_no_card_for_a_member(app: Any, api: ApiClient, till: Till,
                                                       location: int,
                                                       budi: dict[str, Any]) -> None:
    other = create_program(api, slug="teh-lain", name="Teh Lain")
    card = create_card(api, other, email="ana@example.com")
    client = app.test_client()
    till.enrol(client, location)
    assert till.type_pin(client, budi["id"], "2468").status_code == 303
    response = scan(client, card_code(app, card["serial_number"]), page_token(client))
    assert response.status_code == 404
    assert "Siti" not in response.get_data(as_text=True)


def test_five_wrong_pins_lock_the_member_for_15_minutes(app: Any, api: ApiClient, till: Till,
                                                        location: int, budi: dict[str, Any],
                                                        clock: FakeClock) -> None:
    client = app.test_client()
    till.enrol(client, location)
    for left in (4, 3, 2, 1):
        wrong = till.type_pin(client, budi["id"], "0000")
        assert wrong.status_code == 422
        assert f"{left} " in wrong.get_data(as_text=True)
    # Indonesian: Budi's language.
    assert "1 percobaan lagi" in wrong.get_data(as_text=True)
    locked = till.type_pin(client, budi["id"], "0000")
    assert locked.status_code == 423
    assert "15 menit" in locked.get_data(as_text=True)
    # While locked, not even the right PIN signs in; every instance reads the lock from the
    # database (the API sees it too).
    token = form_token(wrong.get_data(as_text=True))
    assert till.type_pin(client, budi["id"], "2468", token).status_code == 423
    assert api.get("/api/v1/staff").json["staff"][0]["locked_until"] is not None
    clock.advance(14 * 60)
    page = client.get(f"/staff/pin/{budi['id']}?lang=en").get_data(as_text=True)
    assert "try again in 1 minute" in page and 'name="pin"' not in page
    clock.advance(60)
    assert till.type_pin(client, budi["id"], "2468").status_code == 303
    assert api.get("/api/v1/staff").json["staff"][0]["locked_until"] is None


def test_a_manager_can_unlock_a_member_at_once(app: Any, api: ApiClient, till: Till,
                                               location: int, budi: dict[str, Any]) -> None:
    client = app.test_client()
    till.enrol(client, location)
    token = form_token(client.get(f"/staff/pin/{budi['id']}").get_data(as_text=True))
    for _ in range(5):
        till.type_pin(client, budi["id"], "9999", token)
    assert till.type_pin(client, budi["id"], "2468", token).status_code == 423
    unlocked = api.request("PATCH", f"/api/v1/staff/{budi['id']}", json={"unlock": True})
    assert unlocked.status_code == 200 and unlocked.json["locked_until"] is None
    assert till.type_pin(client, budi["id"], "2468").status_code == 303


def test_a_new_pin_replaces_the_old_one(app: Any, api: ApiClient, till: Till, location: int,
                                        budi: dict[str, Any]) -> None:
    assert api.request("PATCH", f"/api/v1/staff/{budi['id']}",
                       json={"pin": "97531", "name": "Budi S."}).status_code == 200
    client = app.test_client()
    till.enrol(client, location)
    assert till.type_pin(client, budi["id"], "2468").status_code == 422
    assert till.type_pin(client, budi["id"], "97531").status_code == 303
    assert "Budi S." in client.get("/staff").get_data(as_text=True)


def test_deactivating_a_member_signs_them_out_at_once(app: Any, api: ApiClient, till: Till,
                                                      location: int,
                                                      budi: dict[str, Any]) -> None:
    client = app.test_client()
    till.enrol(client, location)
    till.type_pin(client, budi["id"], "2468")
    token = page_token(client)
    api.request("PATCH", f"/api/v1/staff/{budi['id']}", json={"active": False})
    assert scan(client, "PP1:whatever", token).status_code == 401
    assert client.get("/staff").status_code == 303


def test_taking_a_member_off_the_location_signs_them_out(app: Any, api: ApiClient, till: Till,
                                                         program: dict[str, Any], location: int,
                                                         budi: dict[str, Any]) -> None:
    client = app.test_client()
    till.enrol(client, location)
    till.type_pin(client, budi["id"], "2468")
    elsewhere = till.location(program, "Kopi Bangsar")
    api.request("PATCH", f"/api/v1/staff/{budi['id']}", json={"location_ids": [elsewhere]})
    assert client.get("/staff").status_code == 303


def test_revoking_the_device_ends_its_sessions_at_once(app: Any, api: ApiClient, till: Till,
                                                       location: int,
                                                       budi: dict[str, Any]) -> None:
    client = app.test_client()
    device = till.enrol(client, location)
    till.type_pin(client, budi["id"], "2468")
    token = page_token(client)
    assert api.request("DELETE", f"/api/v1/devices/{device['id']}").status_code == 204
    assert api.request("DELETE", f"/api/v1/devices/{device['id']}").status_code == 204
    assert scan(client, "PP1:whatever", token).status_code == 401
    assert client.get("/staff").status_code == 303
    # The device is a stranger again: the key form, and no PIN pad.
    assert 'name="key"' in client.get("/staff/login").get_data(as_text=True)
    assert client.get(f"/staff/pin/{budi['id']}").status_code == 303
    assert api.get("/api/v1/devices").json["devices"][0]["status"] == "revoked"


def test_a_revoked_link_cannot_enrol(app: Any, api: ApiClient, till: Till,
                                     location: int) -> None:
    device = till.new_device(location)
    assert api.request("DELETE", f"/api/v1/devices/{device['id']}").status_code == 204
    assert app.test_client().get(enrol_path(device)).status_code == 410


def test_a_forged_device_cookie_is_no_device(app: Any, till: Till, location: int,
                                             budi: dict[str, Any]) -> None:
    client = app.test_client()
    device = till.enrol(client, location)
    stranger = app.test_client()
    stranger.set_cookie("pp_till", f"{device['id']}.not-the-secret", path="/staff")
    assert 'name="key"' in stranger.get("/staff/login").get_data(as_text=True)
    assert stranger.get(f"/staff/pin/{budi['id']}").status_code == 303


def test_wrong_pins_at_once_on_many_tills_lock_after_exactly_five(pg_app: Any) -> None:
    """Eight tills send a wrong PIN for one member at the same moment (PostgreSQL, threads):
    the member's row lock counts each one, so four are told the attempts left and the fifth
    and later ones find the lock."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.factories import admin_api

    till = Till(admin_api(pg_app))
    location = till.location(create_program(till.api))
    member = till.add_staff("Budi", "2468", location)
    clients = [pg_app.test_client() for _ in range(8)]
    tokens = []
    for client in clients:
        till.enrol(client, location)
        tokens.append(form_token(client.get(f"/staff/pin/{member['id']}")
                                 .get_data(as_text=True)))
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(
            lambda pair: till.type_pin(pair[0], member["id"], "0000", pair[1]).status_code,
            zip(clients, tokens, strict=True)))
    assert sorted(statuses) == [422] * 4 + [423] * 4
    assert till.type_pin(clients[0], member["id"], "2468", tokens[0]).status_code == 423


def test_pins_get_the_slow_parameters_outside_the_test_suite() -> None:
    from flask import Flask

    from app.staff import pins

    assert pins.hash_pin("2468").split("$")[1] == str(2**14)  # no app
    for env, n in (("production", 2**14), ("development", 2**14), ("testing", 2**4)):
        bare = Flask(__name__)
        bare.config["ENV"] = env
        with bare.app_context():
            stored = pins.hash_pin("2468")
            assert stored.split("$")[1:4] == [str(n), "8", "1"], env
            assert pins.check_pin("2468", stored) and not pins.check_pin("2469", stored)
