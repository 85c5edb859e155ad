"""The challenges API: admins and marketers manage a program's challenges; every field is
validated (problem+json 422, nothing written); changes are in the audit trail; another
program's challenge is 404; a retired one cannot change (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.audit import AuditEvent
from app.extensions import db
from app.loyalty.ledger import MAX_POINTS
from app.loyalty.models import Challenge
from tests.factories import ApiClient, create_program

VALID = {"kind": "visits", "name": "5 visits in 30 days", "target": 5, "window_days": 30,
         "bonus_points": 50}


def path(program: dict[str, Any]) -> str:
    return f"/api/v1/programs/{program['id']}/challenges"


def challenge_rows(app: Flask) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count(Challenge.id)))
        db.session.rollback()
    return int(count or 0)


def test_create_list_change_and_retire(app: Flask, api: ApiClient, keys: dict[str, str],
                                       program: dict[str, Any]) -> None:
    marketer = api.as_(keys["marketer"])
    made = marketer.post(path(program), json={**VALID, "texts": {"th": "มา 5 ครั้ง"}})
    assert made.status_code == 201, made.json
    body = made.json
    assert (body["kind"], body["target"], body["window_days"], body["bonus_points"],
            body["texts"], body["retired_at"]) == ("visits", 5, 30, 50, {"th": "มา 5 ครั้ง"},
                                                   None)
    ever = marketer.post(path(program), json={"kind": "locations", "name": "3 shops",
                                              "target": 3}).json
    assert (ever["window_days"], ever["bonus_points"], ever["position"]) == (None, None, 1)

    changed = marketer.request("PATCH", f"{path(program)}/{body['id']}",
                               json={"target": 6, "window_days": None, "texts": None})
    assert changed.status_code == 200, changed.json
    assert (changed.json["target"], changed.json["window_days"], changed.json["texts"]) == (
        6, None, None)
    assert marketer.request("DELETE", f"{path(program)}/{body['id']}").status_code == 204
    assert marketer.request("DELETE", f"{path(program)}/{body['id']}").status_code == 204
    listed = marketer.get(path(program)).json["challenges"]
    assert [(c["name"], c["retired_at"] is None) for c in listed] == [
        ("3 shops", True), ("5 visits in 30 days", False)]
    refused = marketer.request("PATCH", f"{path(program)}/{body['id']}", json={"target": 2})
    assert refused.status_code == 409
    assert refused.json["type"].endswith("challenge-retired")

    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action).where(
            AuditEvent.program_id == program["id"], AuditEvent.action.like("challenge.%"))
            .order_by(AuditEvent.id)).all()
        db.session.rollback()
    assert actions == ["challenge.create", "challenge.create", "challenge.update",
                       "challenge.retire"]


@pytest.mark.parametrize("role", ["staff", "pos"])
def test_only_admins_and_marketers(api: ApiClient, keys: dict[str, str], program: dict[str, Any],
                                   role: str) -> None:
    other = api.as_(keys[role])
    assert other.get(path(program)).status_code == 403
    assert other.post(path(program), json=VALID).status_code == 403


@pytest.mark.parametrize(("change", "field"), [
    ({"kind": "purchases"}, "kind"),
    ({"kind": None}, "kind"),
    ({"target": 0}, "target"),
    ({"target": 1001}, "target"),
    ({"target": "5"}, "target"),
    ({"target": 5.5}, "target"),
    ({"target": True}, "target"),
    ({"window_days": 0}, "window_days"),
    ({"window_days": 3661}, "window_days"),
    ({"bonus_points": 0}, "bonus_points"),
    ({"bonus_points": -5}, "bonus_points"),
    ({"bonus_points": MAX_POINTS + 1}, "bonus_points"),
    ({"name": ""}, "name"),
    ({"name": "x" * 121}, "name"),
    ({"name": "Hid\u200bden"}, "name"),
    ({"texts": {"fr": "Cinq visites"}}, "texts"),
    ({"texts": {"th": ""}}, "texts"),
    ({"texts": ["th"]}, "texts"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_challenges_are_refused(app: Flask, api: ApiClient, program: dict[str, Any],
                                        change: dict[str, Any], field: str) -> None:
    answer = api.post(path(program), json={**VALID, **change})
    assert answer.status_code == 422, answer.json
    assert answer.content_type == "application/problem+json"
    assert field in str(answer.json)
    assert challenge_rows(app) == 0


@pytest.mark.parametrize("missing", ["kind", "name", "target"])
def test_required_fields(app: Flask, api: ApiClient, program: dict[str, Any],
                         missing: str) -> None:
    body = {name: value for name, value in VALID.items() if name != missing}
    answer = api.post(path(program), json=body)
    assert answer.status_code == 422 and missing in str(answer.json)
    assert challenge_rows(app) == 0


@pytest.mark.parametrize("change", [{}, {"kind": "rewards"}, {"target": 0},
                                    {"window_days": 0}, {"name": None}])
def test_invalid_changes_are_refused(api: ApiClient, program: dict[str, Any],
                                     change: dict[str, Any]) -> None:
    made = api.post(path(program), json=VALID).json
    answer = api.request("PATCH", f"{path(program)}/{made['id']}", json=change)
    assert answer.status_code == 422, answer.json
    assert api.get(path(program)).json["challenges"][0] == made


def test_another_programs_challenge_is_not_found(api: ApiClient,
                                                 program: dict[str, Any]) -> None:
    other = create_program(api, name="Teh", slug="teh")
    theirs = api.post(path(other), json=VALID).json
    for method, json in (("PATCH", {"target": 2}), ("DELETE", None)):
        answer = api.request(method, f"{path(program)}/{theirs['id']}", json=json)
        assert answer.status_code == 404
        assert answer.content_type == "application/problem+json"
    assert api.get(path(other)).json["challenges"][0] == theirs
    assert api.get("/api/v1/programs/999999/challenges").status_code == 404
