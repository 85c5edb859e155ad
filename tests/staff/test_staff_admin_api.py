"""The API behind the console's "Staff and devices" page: a program's locations (list, change),
staff and devices listed per program, unlocking a member, a PIN reset; every change in the
audit trail (never a PIN or a link); objects of programs outside the caller's reach are
neither listed nor found. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from app import access
from app.audit import AuditEvent
from app.errors import NotFound, Unprocessable
from app.extensions import db
from app.staff import devices, members
from tests.factories import ApiClient, create_program
from tests.staff.conftest import Till


@pytest.fixture
def kopi(api: ApiClient, program: dict[str, Any], till: Till) -> dict[str, Any]:
    location = till.location(program, "Kopi Sudirman")
    return {"program": program, "location": location,
            "member": till.add_staff("Dewi", "1234", location)["id"],
            "device": till.new_device(location)["id"]}


@pytest.fixture
def teh(api: ApiClient, till: Till) -> dict[str, Any]:
    program = create_program(api, name="Teh Tarik House", slug="teh-tarik")
    location = till.location(program, "Teh Bangsar")
    return {"program": program, "location": location,
            "member": till.add_staff("Aminah", "9999", location)["id"],
            "device": till.new_device(location)["id"]}


def events(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.id)))


def test_list_and_change_a_programs_locations(app: Flask, api: ApiClient, keys: dict[str, str],
                                              kopi: dict[str, Any], teh: dict[str, Any]) -> None:
    pid, lid = kopi["program"]["id"], kopi["location"]
    listed = api.get(f"/api/v1/programs/{pid}/locations")
    assert listed.status_code == 200
    assert [loc["name"] for loc in listed.json["locations"]] == ["Kopi Sudirman"]
    assert api.get("/api/v1/programs/999/locations").status_code == 404

    marketer = api.as_(keys["marketer"])
    changed = marketer.request("PATCH", f"/api/v1/programs/{pid}/locations/{lid}", json={
        "name": "Kopi Sudirman 2", "relevant_text": "Coffee nearby"})
    assert changed.status_code == 200
    assert changed.json == {"id": lid, "name": "Kopi Sudirman 2", "latitude": -6.2,
                            "longitude": 106.8, "relevant_text": "Coffee nearby"}
    cleared = api.request("PATCH", f"/api/v1/programs/{pid}/locations/{lid}",
                          json={"relevant_text": None})
    assert cleared.json["relevant_text"] is None
    same = api.request("PATCH", f"/api/v1/programs/{pid}/locations/{lid}",
                       json={"latitude": -6.2})
    assert same.status_code == 200
    assert [e.details for e in events(app, "location.update")] == [
        {"name": "Kopi Sudirman 2", "relevant_text": "Coffee nearby"},
        {"relevant_text": None}]  # nothing changed: nothing recorded
    assert [e.target for e in events(app, "location.create")] == [
        f"location:{lid}", f"location:{teh['location']}"]

    # Another program's location under this program's URL: not found, unchanged.
    other = f"/api/v1/programs/{pid}/locations/{teh['location']}"
    assert api.request("PATCH", other, json={"name": "Mine"}).status_code == 404
    path = f"/api/v1/programs/{pid}/locations/{lid}"
    for body in ({}, {"latitude": 91}, {"name": ""}, {"longitude": None}, {"id": 3}):
        answer = api.request("PATCH", path, json=body)
        assert answer.status_code == 422, body
        assert answer.mimetype == "application/problem+json"
    for role in ("staff", "pos"):
        assert api.as_(keys[role]).request("PATCH", path, json={"name": "X"}).status_code == 403
    with app.app_context():
        from app.loyalty.models import ProgramLocation
        assert db.session.get(ProgramLocation, teh["location"]).name == "Teh Bangsar"


def test_staff_and_devices_are_listed_per_program(api: ApiClient, kopi: dict[str, Any],
                                                  teh: dict[str, Any]) -> None:
    everyone = api.get("/api/v1/staff").json["staff"]
    assert {m["name"] for m in everyone} == {"Dewi", "Aminah"}
    at_kopi = api.get(f"/api/v1/staff?program_id={kopi['program']['id']}").json["staff"]
    assert [m["name"] for m in at_kopi] == ["Dewi"]
    devices_at_teh = api.get(f"/api/v1/devices?program_id={teh['program']['id']}")
    assert [d["id"] for d in devices_at_teh.json["devices"]] == [teh["device"]]
    at_location = api.get(f"/api/v1/devices?location_id={kopi['location']}").json["devices"]
    assert [d["id"] for d in at_location] == [kopi["device"]]
    assert api.get("/api/v1/devices?program_id=x").status_code == 422


def test_unlock_and_reset_a_pin(app: Flask, api: ApiClient, kopi: dict[str, Any]) -> None:
    member_id = kopi["member"]
    with app.app_context():
        for _ in range(members.MAX_PIN_ATTEMPTS):
            members.check_pin(member_id, "0000")
    locked = api.get("/api/v1/staff").json["staff"][0]
    assert locked["locked_until"] is not None
    unlocked = api.post(f"/api/v1/staff/{member_id}/unlock")
    assert unlocked.status_code == 200
    assert unlocked.json["locked_until"] is None and unlocked.json["failed_pin_attempts"] == 0
    assert api.post(f"/api/v1/staff/{member_id}/unlock").status_code == 200  # again: fine
    assert len(events(app, "staff.unlock")) == 1  # only the unlock that changed something
    assert api.post("/api/v1/staff/999/unlock").status_code == 404

    reset = api.request("PATCH", f"/api/v1/staff/{member_id}", json={"pin": "87654321"})
    assert reset.status_code == 200 and "pin" not in reset.json
    [pin_event] = events(app, "staff.pin")
    assert pin_event.details is None and pin_event.program_id == kopi["program"]["id"]
    assert events(app, "staff.update") == []
    with app.app_context():
        assert members.check_pin(member_id, "87654321").ok
    for event in events(app, "staff.create"):
        assert "1234" not in str(event.details) and "9999" not in str(event.details)


def test_a_patch_for_one_program_keeps_the_members_other_locations(
        app: Flask, api: ApiClient, till: Till, kopi: dict[str, Any],
        teh: dict[str, Any]) -> None:
    second = till.location(kopi["program"], "Kopi Kemang")
    both = till.add_staff("Budi", "1234", kopi["location"], teh["location"])["id"]
    answer = api.request("PATCH", f"/api/v1/staff/{both}", json={
        "location_ids": [second], "program_id": kopi["program"]["id"]})
    assert answer.status_code == 200
    assert answer.json["location_ids"] == sorted([second, teh["location"]])
    wrong = api.request("PATCH", f"/api/v1/staff/{both}", json={
        "location_ids": [teh["location"]], "program_id": kopi["program"]["id"]})
    assert wrong.status_code == 422  # not a location of that program
    assert api.request("PATCH", f"/api/v1/staff/{both}",
                       json={"program_id": 1}).status_code == 422  # nothing to change
    # Without program_id: the list replaces every location (the admin key reaches all).
    everything = api.request("PATCH", f"/api/v1/staff/{both}",
                             json={"location_ids": [second]})
    assert everything.json["location_ids"] == [second]


def test_device_records_never_hold_the_link(app: Flask, api: ApiClient,
                                            kopi: dict[str, Any]) -> None:
    made = api.post("/api/v1/devices", json={"location_id": kopi["location"], "name": "Back"})
    token = made.json["enrol_url"].rsplit("/", 1)[1]
    assert api.request("DELETE", f"/api/v1/devices/{made.json['id']}").status_code == 204
    assert api.request("DELETE", f"/api/v1/devices/{made.json['id']}").status_code == 204
    enrols = events(app, "device.enrol")
    assert [e.target for e in enrols] == [f"device:{kopi['device']}", f"device:{made.json['id']}"]
    assert enrols[1].details == {"location_id": kopi["location"], "name": "Back"}
    assert all(token not in str(e.details) for e in enrols)
    [revoked] = events(app, "device.revoke")  # revoking again records nothing
    assert revoked.program_id == kopi["program"]["id"]


def test_the_services_keep_a_scoped_caller_to_its_programs(
        app: Flask, kopi: dict[str, Any], teh: dict[str, Any]) -> None:
    """What a caller limited to one program (a marketer's session, a scoped key) may reach."""
    with app.test_request_context():
        access.limit_to(access.Scope(frozenset({kopi["program"]["id"]})))
        assert [m.name for m in members.in_reach()] == ["Dewi"]
        assert [m.name for m in members.in_reach(teh["program"]["id"])] == []
        assert [d.id for d in devices.all_devices()] == [kopi["device"]]
        with pytest.raises(NotFound):
            members.get(teh["member"])
        with pytest.raises(NotFound):
            members.update(teh["member"], active=False)
        with pytest.raises(NotFound):
            members.unlock(teh["member"])
        with pytest.raises(NotFound):
            devices.revoke(teh["device"])
        with pytest.raises(Unprocessable):
            devices.create(teh["location"])
        with pytest.raises(Unprocessable):
            members.create("Eve", "1234", [teh["location"]])
        with pytest.raises(Unprocessable):
            members.update(kopi["member"], location_ids=[teh["location"]])
    with app.app_context():
        both = members.create("Budi", "1234", [kopi["location"], teh["location"]])
        both_id = both.id
    with app.test_request_context():
        access.limit_to(access.Scope(frozenset({kopi["program"]["id"]})))
        # Who also works for the other program is the other program's too: out of reach.
        assert [m.name for m in members.in_reach()] == ["Dewi"]
        with pytest.raises(NotFound):
            members.update(both_id, location_ids=[], program_id=kopi["program"]["id"])
        assert members.get(kopi["member"]).name == "Dewi"
    with app.test_request_context():  # a caller of every program (an admin's session)
        # Naming one program replaces the locations at that program only: the others stay.
        changed = members.update(both_id, location_ids=[], program_id=kopi["program"]["id"])
        assert [loc.id for loc in changed.locations] == [teh["location"]]
    with app.app_context():
        assert members.get(teh["member"]).active
        assert devices.status(devices.get(teh["device"])) == "pending"


def test_the_new_operations_are_in_the_openapi_document(api: ApiClient) -> None:
    document = api.get("/api/openapi.json").json
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/programs/{program_id}/locations"])
    assert "patch" in paths["/api/v1/programs/{program_id}/locations/{location_id}"]
    assert "post" in paths["/api/v1/staff/{member_id}/unlock"]
    parameters = {p["name"] for p in paths["/api/v1/devices"]["get"]["parameters"]}
    assert {"program_id", "location_id"} <= parameters
    schemas = document["components"]["schemas"]
    assert "LocationPatchIn" in schemas and "LocationList" in schemas


def test_unknown_query_parameters_are_refused(api: ApiClient) -> None:
    for path in ("/api/v1/staff?colour=red", "/api/v1/devices?program=1"):
        answer = api.get(path)
        assert answer.status_code == 422, path
        assert answer.mimetype == "application/problem+json"
    assert api.get("/api/v1/staff?program_id=1").status_code == 200


def test_the_command_line_is_recorded_as_such(app: Flask, kopi: dict[str, Any]) -> None:
    from app.cli.cli import cli

    runner = app.test_cli_runner()
    assert runner.invoke(cli, ["staff", "set-pin", str(kopi["member"])],
                         input="2468\n").exit_code == 0
    assert runner.invoke(cli, ["revoke-device", str(kopi["device"])]).exit_code == 0
    made = runner.invoke(cli, ["enrol-device", "--location", str(kopi["location"]), "--no-qr"])
    assert made.exit_code == 0
    token = made.stdout.strip().rsplit("/", 1)[1]
    for action in ("staff.pin", "device.revoke"):
        [event] = events(app, action)
        assert (event.actor, event.actor_name) == ("cli", "command line")
    last = events(app, "device.enrol")[-1]
    assert last.actor == "cli" and token not in str(last.details)
