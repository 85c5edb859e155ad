"""The console's "Staff and devices" page through the test client, on SQLite and PostgreSQL:
locations, staff members (PINs, locks), till devices (enrolment links, revoking), each change
through the till's services with its audit record; bad input is 422, forms need their CSRF
token, another program's objects are 404 and never listed; marketers are kept out as the API
keeps them out."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.audit import AuditEvent
from app.extensions import db
from app.staff import members, pins
from app.staff.models import StaffMember, TillDevice
from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient, create_program
from tests.staff.conftest import form_token as till_form_token


@pytest.fixture
def other(api: ApiClient) -> dict[str, Any]:
    """A second program, with a location, a staff member and a device there."""
    program = create_program(api, name="Teh Tarik House", slug="teh-tarik")
    location = api.post(f"/api/v1/programs/{program['id']}/locations",
                        json={"name": "Teh Bangsar", "latitude": 3.13, "longitude": 101.67})
    member = api.post("/api/v1/staff", json={"name": "Aminah Other", "pin": "9999",
                                            "location_ids": [location.json["id"]]})
    device = api.post("/api/v1/devices", json={"location_id": location.json["id"]})
    return {"program": program, "location": location.json["id"], "member": member.json["id"],
            "device": device.json["id"]}


@pytest.fixture
def location(api: ApiClient, program: dict[str, Any]) -> int:
    answer = api.post(f"/api/v1/programs/{program['id']}/locations",
                      json={"name": "Kopi Sudirman", "latitude": -6.2, "longitude": 106.8})
    return int(answer.json["id"])


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    make_account(app, "admin@example.com", "admin")
    client = app.test_client()
    assert sign_in(client, "admin@example.com").status_code == 303
    return client


def page_of(client: FlaskClient, program: dict[str, Any]) -> tuple[str, str]:
    """The page's HTML and its form token."""
    page = client.get(f"/console/programs/{program['id']}/staff")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    return html, form_token(html)


def events(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.id)))


def test_add_and_edit_a_location(app: Flask, admin: FlaskClient,
                                 program: dict[str, Any]) -> None:
    html, token = page_of(admin, program)
    assert "No locations yet" in html
    base = f"/console/programs/{program['id']}/staff"
    added = admin.post(f"{base}/locations", data={
        "csrf_token": token, "location-name": " Kopi  Thamrin ", "location-latitude": "-6.19",
        "location-longitude": "106.82", "location-relevant_text": "Your coffee is near"})
    assert added.status_code == 303
    html, _ = page_of(admin, program)
    assert "Kopi Thamrin" in html and "Your coffee is near" in html
    [created] = events(app, "location.create")
    assert created.actor_name == "admin@example.com"
    assert created.details == {"name": "Kopi Thamrin", "latitude": -6.19, "longitude": 106.82,
                               "relevant_text": "Your coffee is near"}
    location_id = int(created.target.split(":")[1])
    edit = admin.get(f"{base}/locations/{location_id}")
    assert edit.status_code == 200 and 'value="Kopi Thamrin"' in edit.get_data(as_text=True)
    changed = admin.post(f"{base}/locations/{location_id}", data={
        "csrf_token": token, "name": "Kopi Thamrin", "latitude": "-6.2", "longitude": "106.82",
        "relevant_text": ""})
    assert changed.status_code == 303
    [updated] = events(app, "location.update")
    assert updated.details == {"latitude": -6.2, "relevant_text": None}


@pytest.mark.parametrize("fields", [
    {"location-name": "", "location-latitude": "1", "location-longitude": "1"},
    {"location-name": "   ", "location-latitude": "1", "location-longitude": "1"},
    {"location-name": "X", "location-latitude": "91", "location-longitude": "1"},
    {"location-name": "X", "location-latitude": "nan", "location-longitude": "1"},
    {"location-name": "X", "location-latitude": "1", "location-longitude": "-inf"},
    {"location-name": "X", "location-latitude": "1,5", "location-longitude": "1"},
    {"location-name": "X" * 121, "location-latitude": "1", "location-longitude": "1"},
])
def test_a_bad_location_is_shown_again_with_its_errors(
        app: Flask, admin: FlaskClient, program: dict[str, Any], fields: dict[str, str]) -> None:
    _, token = page_of(admin, program)
    answer = admin.post(f"/console/programs/{program['id']}/staff/locations",
                        data={"csrf_token": token, **fields})
    assert answer.status_code == 422
    assert 'aria-invalid="true"' in answer.get_data(as_text=True)
    assert events(app, "location.create") == []


def add_staff(client: FlaskClient, program: dict[str, Any], token: str, **fields: Any) -> Any:
    data = {"csrf_token": token, "staff-name": "Siti Aminah", "staff-language": "id",
            "staff-pin": "4821", "staff-pin_again": "4821", **fields}
    return client.post(f"/console/programs/{program['id']}/staff/members", data=data)


def test_add_a_staff_member_with_a_hashed_pin(app: Flask, admin: FlaskClient,
                                              program: dict[str, Any], location: int) -> None:
    _, token = page_of(admin, program)
    assert add_staff(admin, program, token, **{"staff-location_ids": [str(location)]}) \
        .status_code == 303
    html, _ = page_of(admin, program)
    assert "Siti Aminah" in html and "Kopi Sudirman" in html and "Bahasa Indonesia" in html
    with app.app_context():
        member = db.session.scalar(db.select(StaffMember))
        assert member.language == "id" and [loc.id for loc in member.locations] == [location]
        assert "4821" not in member.pin_hash and pins.check_pin("4821", member.pin_hash)
    [created] = events(app, "staff.create")
    assert created.program_id == program["id"] and created.target == f"staff:{member.id}"
    assert created.details == {"name": "Siti Aminah", "language": "id",
                               "location_ids": [location]}
    assert "4821" not in str(created.details)


@pytest.mark.parametrize(("fields", "message"), [
    ({"staff-pin": "482", "staff-pin_again": "482"}, "4 to 8 digits"),
    ({"staff-pin": "123456789", "staff-pin_again": "123456789"}, "4 to 8 digits"),
    ({"staff-pin": "48a1", "staff-pin_again": "48a1"}, "4 to 8 digits"),
    ({"staff-pin": "4821", "staff-pin_again": "4822"}, "The two PINs differ"),
    ({"staff-name": "  "}, "1 to 120 characters"),
    ({"staff-language": "fr"}, "Not a valid choice"),
    ({"staff-location_ids": []}, "Choose at least one location"),
    ({"staff-location_ids": ["999"]}, "not a valid choice"),
])
def test_bad_staff_input_is_422_and_adds_nobody(
        app: Flask, admin: FlaskClient, program: dict[str, Any], location: int,
        fields: dict[str, Any], message: str) -> None:
    _, token = page_of(admin, program)
    answer = add_staff(admin, program, token,
                       **{"staff-location_ids": [str(location)], **fields})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert message in html
    assert 'value="4821"' not in html  # a PIN is never sent back
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(StaffMember)) == 0


def test_another_programs_location_cannot_be_given(
        app: Flask, admin: FlaskClient, program: dict[str, Any], location: int,
        other: dict[str, Any]) -> None:
    _, token = page_of(admin, program)
    answer = add_staff(admin, program, token,
                       **{"staff-location_ids": [str(location), str(other["location"])]})
    assert answer.status_code == 422
    device = admin.post(f"/console/programs/{program['id']}/staff/devices",
                        data={"csrf_token": token, "device-location_id": other["location"]})
    assert device.status_code == 422
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(TillDevice)) == 1


def test_edit_a_member_keeps_their_other_programs_locations(
        app: Flask, api: ApiClient, admin: FlaskClient, program: dict[str, Any],
        location: int, other: dict[str, Any]) -> None:
    second = api.post(f"/api/v1/programs/{program['id']}/locations",
                      json={"name": "Kopi Kemang", "latitude": -6.26, "longitude": 106.81})
    both = api.post("/api/v1/staff", json={"name": "Budi", "pin": "1234",
                                          "location_ids": [location, other["location"]]})
    member_id = both.json["id"]
    base = f"/console/programs/{program['id']}/staff/members/{member_id}"
    page = admin.get(base)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Kopi Kemang" in html and "Teh Bangsar" not in html  # this program's only
    token = form_token(html)
    changed = admin.post(base, data={"csrf_token": token, "name": "Budi Santoso",
                                     "location_ids": [str(second.json["id"])],
                                     "language": "ms"})  # no "active": deactivated
    assert changed.status_code == 303
    with app.app_context():
        member = members.get(member_id)
        assert [loc.id for loc in member.locations] == sorted(
            [second.json["id"], other["location"]])
        assert (member.name, member.language, member.active) == ("Budi Santoso", "ms", False)
    # One record in each program's trail: the member works at both.
    updated = events(app, "staff.update")
    assert [e.program_id for e in updated] == [program["id"], other["program"]["id"]]
    for event in updated:
        assert event.details == {"name": "Budi Santoso", "language": "ms", "active": False,
                                 "location_ids": sorted([second.json["id"],
                                                         other["location"]])}
    html, _ = page_of(admin, program)
    assert "Deactivated" in html and "Teh Bangsar" not in html
    bad = admin.post(base, data={"csrf_token": token, "name": "Budi", "language": "ms",
                                 "location_ids": [str(other["location"])]})
    assert bad.status_code == 422


def test_reset_the_pin_and_unlock(app: Flask, api: ApiClient, admin: FlaskClient,
                                  program: dict[str, Any], location: int) -> None:
    member_id = api.post("/api/v1/staff", json={"name": "Dewi", "pin": "1234",
                                               "location_ids": [location]}).json["id"]
    with app.app_context():
        for _ in range(members.MAX_PIN_ATTEMPTS):
            members.check_pin(member_id, "0000")
    html, token = page_of(admin, program)
    assert "Locked until" in html
    base = f"/console/programs/{program['id']}/staff/members/{member_id}"
    assert "Locked after five wrong PINs" in admin.get(base).get_data(as_text=True)
    assert admin.post(f"{base}/unlock", data={"csrf_token": token}).status_code == 303
    html, _ = page_of(admin, program)
    assert "Locked until" not in html
    assert len(events(app, "staff.unlock")) == 1

    for pin, again in (("12", "12"), ("5678", "5679"), ("", "")):
        refused = admin.post(f"{base}/pin", data={"csrf_token": token, "pin": pin,
                                                  "pin_again": again})
        assert refused.status_code == 422
    assert admin.post(f"{base}/pin", data={"csrf_token": token, "pin": "5678",
                                           "pin_again": "5678"}).status_code == 303
    with app.app_context():
        assert members.check_pin(member_id, "5678").ok
    [reset] = events(app, "staff.pin")
    assert reset.details is None and reset.target == f"staff:{member_id}"


def test_enrol_a_device_shows_the_link_once_and_revoke_it(
        app: Flask, admin: FlaskClient, program: dict[str, Any], location: int) -> None:
    _, token = page_of(admin, program)
    answer = admin.post(f"/console/programs/{program['id']}/staff/devices",
                        data={"csrf_token": token, "device-location_id": str(location),
                              "device-name": "Front till"})
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    link = re.search(r'class="enrol-link" href="([^"]+)"', html)
    assert link is not None
    assert "<svg" in html and 'aria-label="QR code of the enrolment link"' in html
    path = link.group(1).removeprefix("https://pointpass.test")
    [enrolled] = events(app, "device.enrol")
    assert enrolled.details == {"location_id": location, "name": "Front till"}
    assert path.rsplit("/", 1)[1] not in str(enrolled.details)
    html, _ = page_of(admin, program)
    assert "Front till" in html and "Waiting for enrolment" in html
    assert path not in html  # shown once only

    device_id = int(enrolled.target.split(":")[1])
    status_path = f"/console/programs/{program['id']}/staff/devices/{device_id}/status"
    waiting = admin.get(status_path).get_data(as_text=True)
    assert "Waiting for the device" in waiting and 'hx-trigger="every 3s"' in waiting

    # The till's phone opens the link and enrols.
    phone = app.test_client()
    confirm = phone.get(path)
    assert confirm.status_code == 200
    assert phone.post(path, data={"csrf_token": till_form_token(confirm.get_data(as_text=True))}
                      ).status_code == 303
    html, _ = page_of(admin, program)
    assert "Enrolled" in html
    assert "Kopi Sudirman" in phone.get("/staff/login").get_data(as_text=True)
    done = admin.get(status_path).get_data(as_text=True)
    assert "Enrolled" in done and "hx-trigger" not in done  # polling stops

    revoke = f"/console/programs/{program['id']}/staff/devices/{device_id}/revoke"
    confirm_page = admin.get(revoke)
    assert confirm_page.status_code == 200 and "Revoke the device" in \
        confirm_page.get_data(as_text=True)
    assert admin.post(revoke, data={"csrf_token": token}).status_code == 303
    with app.app_context():
        assert db.session.get(TillDevice, device_id).revoked_at is not None
    assert len(events(app, "device.revoke")) == 1
    html, _ = page_of(admin, program)
    assert "Revoked" in html
    assert "Kopi Sudirman" not in phone.get("/staff/login").get_data(as_text=True)


def test_a_device_needs_a_location_of_the_program(
        admin: FlaskClient, program: dict[str, Any], location: int) -> None:
    _, token = page_of(admin, program)
    for value in ("", "999", "x"):
        answer = admin.post(f"/console/programs/{program['id']}/staff/devices",
                            data={"csrf_token": token, "device-location_id": value})
        assert answer.status_code == 422, value


def test_forms_without_the_csrf_token_are_refused(
        app: Flask, admin: FlaskClient, program: dict[str, Any], location: int) -> None:
    base = f"/console/programs/{program['id']}/staff"
    posts = [(f"{base}/locations", {"location-name": "X", "location-latitude": "1",
                                    "location-longitude": "1"}),
             (f"{base}/members", {"staff-name": "X", "staff-pin": "1234",
                                  "staff-pin_again": "1234",
                                  "staff-location_ids": [str(location)]}),
             (f"{base}/devices", {"device-location_id": str(location)}),
             (f"{base}/locations/{location}", {"name": "Y", "latitude": "1",
                                               "longitude": "1"})]
    for path, data in posts:
        assert admin.post(path, data=data).status_code == 400, path
        assert admin.post(path, data={**data, "csrf_token": "forged"}).status_code == 400
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(StaffMember)) == 0
        assert db.session.scalar(db.select(db.func.count()).select_from(TillDevice)) == 0
    assert events(app, "location.update") == []


def test_another_programs_objects_are_404_and_never_listed(
        app: Flask, admin: FlaskClient, program: dict[str, Any], location: int,
        other: dict[str, Any]) -> None:
    html, token = page_of(admin, program)
    assert "Aminah Other" not in html and "Teh Bangsar" not in html
    base = f"/console/programs/{program['id']}/staff"
    for path in (f"{base}/locations/{other['location']}",
                 f"{base}/members/{other['member']}",
                 f"{base}/devices/{other['device']}/revoke"):
        assert admin.get(path).status_code == 404, path
        assert admin.post(path, data={"csrf_token": token}).status_code == 404, path
    assert admin.get(f"{base}/devices/{other['device']}/status").status_code == 404
    for path in (f"{base}/members/{other['member']}/pin",
                 f"{base}/members/{other['member']}/unlock"):
        assert admin.post(path, data={"csrf_token": token, "pin": "1111",
                                      "pin_again": "1111"}).status_code == 404, path
    with app.app_context():
        assert db.session.get(TillDevice, other["device"]).revoked_at is None
        assert pins.check_pin("9999", members.get(other["member"]).pin_hash)


def test_marketers_cannot_manage_staff_and_devices(
        app: Flask, program: dict[str, Any], location: int) -> None:
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    sign_in(client, "m@example.com")
    assert client.get(f"/console/programs/{program['id']}/staff").status_code == 403
    home = client.get(f"/console/programs/{program['id']}").get_data(as_text=True)
    assert "Staff and devices" not in home
    make_account(app, "other@example.com", "marketer")
    stranger = app.test_client()
    sign_in(stranger, "other@example.com")
    assert stranger.get(f"/console/programs/{program['id']}/staff").status_code in (403, 404)


def test_the_language_links_of_a_forms_answer_lead_back_to_the_page(
        admin: FlaskClient, program: dict[str, Any], location: int) -> None:
    base = f"/console/programs/{program['id']}/staff"
    for action in ("locations", "members", "devices"):
        answer = admin.get(f"{base}/{action}?lang=th")
        assert answer.status_code == 303
        assert answer.headers["Location"] == f"{base}?lang=th"
