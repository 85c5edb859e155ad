"""The loyalty engine's program settings through the API: on create, in answers, on PATCH.

A change of settings only does not bump the design version nor rebuild passes, except the
time zone (passes show dates in it). Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.loyalty.models import Card, Program
from tests.factories import create_card, create_program, settle

DEFAULTS = {"points_expire_after_days": None, "expiry_reminder_days": 14, "pending_days": 0,
            "refund_shortfall": "clamp", "time_zone": "UTC", "value_of_1000_points": None}
SETTINGS = {"points_expire_after_days": 365, "expiry_reminder_days": 30, "pending_days": 7,
            "refund_shortfall": "forgive", "time_zone": "Asia/Jakarta",
            "value_of_1000_points": 2_500}


def _versions(app: Any, program_id: int) -> tuple[int, list[int]]:
    """The program's design version and its cards' versions."""
    with app.app_context():
        program = db.session.get(Program, program_id)
        assert program is not None
        cards = list(db.session.scalars(
            select(Card.version).where(Card.program_id == program_id).order_by(Card.id)))
        design = program.design_version
        db.session.rollback()
        return design, cards


def test_a_new_program_has_the_default_settings(api: Any) -> None:
    program = create_program(api)
    assert {name: program[name] for name in DEFAULTS} == DEFAULTS
    fetched = api.get(f"/api/v1/programs/{program['id']}").json
    assert {name: fetched[name] for name in DEFAULTS} == DEFAULTS


def test_settings_given_on_create_are_kept(api: Any) -> None:
    program = create_program(api, **SETTINGS)
    assert {name: program[name] for name in SETTINGS} == SETTINGS
    listed = api.get("/api/v1/programs").json["programs"]
    assert {name: listed[0][name] for name in SETTINGS} == SETTINGS


def test_changing_settings_leaves_the_design_and_the_passes_alone(app: Any, api: Any) -> None:
    program = create_program(api)
    create_card(api, program)
    before = _versions(app, program["id"])
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}", json={
        "points_expire_after_days": 180, "expiry_reminder_days": 7, "pending_days": 3,
        "refund_shortfall": "forgive"})
    assert response.status_code == 200, response.json
    assert response.json["points_expire_after_days"] == 180
    assert response.json["refund_shortfall"] == "forgive"
    assert _versions(app, program["id"]) == before

    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"points_expire_after_days": None})
    assert response.status_code == 200, response.json
    assert response.json["points_expire_after_days"] is None
    assert response.json["pending_days"] == 3
    assert _versions(app, program["id"]) == before

    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"value_of_1000_points": 3_000})
    assert response.status_code == 200, response.json
    assert response.json["value_of_1000_points"] == 3_000
    assert _versions(app, program["id"]) == before


def test_a_new_time_zone_rebuilds_the_passes_but_not_the_design(app: Any, api: Any) -> None:
    program = create_program(api)
    create_card(api, program)
    design, (card_version,) = _versions(app, program["id"])
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"time_zone": "Asia/Bangkok"})
    assert response.status_code == 200, response.json
    assert response.json["time_zone"] == "Asia/Bangkok"
    update = api.get(response.json["pass_update"]).json
    assert update["changed"] == ["time_zone"]
    settle(app)  # the update marks the cards in a job, after the change committed
    assert _versions(app, program["id"]) == (design, [card_version + 1])
    assert api.get(response.json["pass_update"]).json["status"] == "done"
    # The same zone again changes nothing.
    again = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                        json={"time_zone": "Asia/Bangkok"})
    assert again.json["pass_update"] is None
    settle(app)
    assert _versions(app, program["id"]) == (design, [card_version + 1])


def test_design_and_settings_in_one_patch(app: Any, api: Any) -> None:
    program = create_program(api)
    create_card(api, program)
    design, (card_version,) = _versions(app, program["id"])
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"name": "Kopi Baru", "time_zone": "Asia/Kuala_Lumpur",
                                 "pending_days": 2})
    assert response.status_code == 200, response.json
    assert (response.json["name"], response.json["time_zone"], response.json["pending_days"]) \
        == ("Kopi Baru", "Asia/Kuala_Lumpur", 2)
    # One update tells the cards of both changes: each pass gets one new version.
    assert api.get(response.json["pass_update"]).json["changed"] == ["name", "time_zone"]
    settle(app)
    assert _versions(app, program["id"]) == (design + 1, [card_version + 1])


BAD = [
    ("points_expire_after_days", 0), ("points_expire_after_days", 3651),
    ("points_expire_after_days", "30"), ("points_expire_after_days", 1.5),
    ("points_expire_after_days", True),
    ("expiry_reminder_days", -1), ("expiry_reminder_days", 366), ("expiry_reminder_days", None),
    ("pending_days", -1), ("pending_days", 366), ("pending_days", None),
    ("refund_shortfall", "keep"), ("refund_shortfall", None), ("refund_shortfall", "CLAMP"),
    ("time_zone", "Mars/Olympus"), ("time_zone", ""), ("time_zone", "../../etc/passwd"),
    ("time_zone", "asia/jakarta"), ("time_zone", None), ("time_zone", 7),
    ("time_zone", "Asia/Jakarta" * 10), ("time_zone", "Asia/Jak\x00arta"),
    ("value_of_1000_points", -1), ("value_of_1000_points", "2500"),
    ("value_of_1000_points", 2.5), ("value_of_1000_points", True),
    ("value_of_1000_points", 10**16),
]


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}={v!r}" for f, v in BAD])
def test_bad_settings_are_refused_with_a_problem(api: Any, field: str, value: Any) -> None:
    response = api.post("/api/v1/programs", json={"name": "Kopi", field: value})
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == "urn:pointpass:problem:validation"
    assert any(error["field"] == field for error in response.json["errors"]), response.json

    program = create_program(api)
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}", json={field: value})
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    after = api.get(f"/api/v1/programs/{program['id']}").json
    assert {name: after[name] for name in DEFAULTS} == DEFAULTS


def test_a_marketer_may_change_settings_and_pos_may_not(api: Any, keys: dict[str, str]) -> None:
    program = create_program(api)
    url = f"/api/v1/programs/{program['id']}"
    assert api.as_(keys["pos"]).request("PATCH", url, json={"pending_days": 1}).status_code \
        == 403
    response = api.as_(keys["marketer"]).request("PATCH", url, json={"pending_days": 1})
    assert response.status_code == 200, response.json
    assert response.json["pending_days"] == 1
