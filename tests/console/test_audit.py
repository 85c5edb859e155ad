"""The audit trail: the console's pages (a program's records; every record for admins), paged
back with "Older", and ``GET /api/v1/audit``. Marketers read only their programs' records."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from app import audit
from app.extensions import db
from tests.console.conftest import make_account, sign_in
from tests.factories import ApiClient, create_program


def record_many(app: Flask, program_id: int | None, count: int, action: str) -> None:
    with app.app_context():
        for i in range(count):
            audit.record(action, program_id=program_id, target=f"reward:{i}",
                         details={"name": f"Reward {i}", "points": i},
                         actor=audit.Actor("account:99", "nok@example.com"))
        db.session.commit()


def test_a_program_s_audit_trail_shows_who_did_what_newest_first_in_pages(
        app: Flask, program: dict[str, Any]) -> None:
    record_many(app, program["id"], 60, "reward.create")
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    sign_in(client, "m@example.com")
    path = f"/console/programs/{program['id']}/audit"
    first = client.get(path).get_data(as_text=True)
    assert 'aria-current="page">Audit trail</a>' in first
    assert first.count("<code>reward.create</code>") == 50
    assert "nok@example.com" in first and "reward:59" in first and "reward:10" in first
    assert "reward:9<" not in first
    assert first.index("reward:59") < first.index("reward:58")
    assert "<dt>points</dt><dd>59</dd>" in first
    older = re.search(r'href="([^"]+)" rel="next">Older', first)
    assert older
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert second.count("<code>reward.create</code>") == 10
    assert "reward:9<" in second and "reward:0<" in second and "reward:10<" not in second
    assert 'rel="next"' not in second


def test_a_marketer_reads_only_their_programs_trail(app: Flask, api: ApiClient,
                                                    program: dict[str, Any]) -> None:
    other = create_program(api, name="Other Shop", slug="other-shop")
    record_many(app, other["id"], 1, "reward.retire")
    record_many(app, program["id"], 1, "reward.create")
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    sign_in(client, "m@example.com")
    assert client.get(f"/console/programs/{other['id']}/audit").status_code == 404
    assert client.get("/console/audit").status_code == 403
    own = client.get(f"/console/programs/{program['id']}/audit").get_data(as_text=True)
    assert "reward.create" in own and "reward.retire" not in own
    assert "Audit trail (all)" not in own


def test_an_admin_reads_every_record_including_accounts(app: Flask, api: ApiClient,
                                                         program: dict[str, Any]) -> None:
    record_many(app, program["id"], 1, "reward.create")
    make_account(app, "admin@example.com", "admin")
    make_account(app, "m@example.com", "marketer")  # account.create, of no program
    client = app.test_client()
    sign_in(client, "admin@example.com")
    page = client.get("/console/audit").get_data(as_text=True)
    assert "account.create" in page and "reward.create" in page
    assert program["name"] in page
    assert 'aria-current="page">Audit trail (all)</a>' in page
    assert client.get("/console/audit?before=abc").status_code == 200


def test_the_audit_api_pages_back_and_keeps_to_the_key_s_role(
        app: Flask, api: ApiClient, keys: dict[str, str], program: dict[str, Any]) -> None:
    record_many(app, program["id"], 5, "reward.create")
    record_many(app, None, 1, "account.invite")
    first = api.get("/api/v1/audit?limit=3")
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert [e["action"] for e in body["events"]] == ["account.invite", "reward.create",
                                                      "reward.create"]
    assert body["events"][0]["program_id"] is None
    assert body["events"][1]["details"] == {"name": "Reward 4", "points": 4}
    assert body["events"][1]["actor_name"] == "nok@example.com"
    rest = api.get(f"/api/v1/audit?limit=3&before={body['next_before']}").get_json()
    assert [e["target"] for e in rest["events"]] == ["reward:2", "reward:1", "reward:0"]
    # Older still: only what the test's fixtures made (keys, the program), then the end.
    older = api.get(f"/api/v1/audit?limit=50&before={rest['next_before']}").get_json()
    misspelt = api.get("/api/v1/audit?limt=3")
    assert misspelt.status_code == 422
    assert misspelt.get_json()["errors"][0]["message"] == "Unknown parameter."
    assert {e["action"] for e in older["events"]} == {"key.create", "program.create"}
    assert older["next_before"] is None
    only = api.get(f"/api/v1/audit?program_id={program['id']}").get_json()
    assert [e["action"] for e in only["events"]] == ["reward.create"] * 5 + ["program.create"]
    assert all(e["program_id"] == program["id"] for e in only["events"])
    assert api.get("/api/v1/audit?program_id=99999").status_code == 404
    assert api.get("/api/v1/audit?limits=3").status_code == 422
    bad = api.get("/api/v1/audit?limit=0")
    assert bad.status_code == 422 and bad.content_type == "application/problem+json"
    assert api.as_(keys["marketer"]).get("/api/v1/audit").status_code == 200
    assert api.as_(keys["pos"]).get("/api/v1/audit").status_code == 403
    assert api.as_(None).get("/api/v1/audit").status_code == 401
    spec = api.get("/api/openapi.json")
    assert spec.status_code == 200, spec.get_data(as_text=True)[:800]
    assert "/api/v1/audit" in spec.get_json()["paths"]
