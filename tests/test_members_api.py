"""The members API on SQLite and PostgreSQL: search, a card's ledger pages, lots and wallets,
sending the card link again; the program's members only, 422 on bad input."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.audit import AuditEvent
from app.auth import keys as api_keys
from app.enrollment.links import card_page_path
from app.extensions import db
from tests.factories import ApiClient, card_short_code, create_card, create_program, register_device


@pytest.fixture
def members(api: ApiClient, program: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "siti": create_card(api, program, name="Siti Rahma", email="siti@example.com",
                            phone="+62 812-3456-7890"),
        "budi": create_card(api, program, name="Budi Santoso", phone="0813 5555 1234"),
        "ayu": create_card(api, program, name="Ayu Lestari", email="ayu@kopi.example"),
    }


def _search(api: ApiClient, program: dict[str, Any], **query: Any) -> Any:
    return api.get(f"/api/v1/programs/{program['id']}/members", query_string=query)


def _names(answer: Any) -> list[str]:
    assert answer.status_code == 200, answer.json
    return [m["name"] for m in answer.json["members"]]


def test_search_by_every_field_and_page_by_keyset(
        app: Flask, api: ApiClient, keys: dict[str, str], program: dict[str, Any],
        members: dict[str, dict[str, Any]]) -> None:
    marketer = api.as_(keys["marketer"])
    assert _names(_search(marketer, program)) == ["Ayu Lestari", "Budi Santoso", "Siti Rahma"]
    assert _names(_search(marketer, program, q="RAHMA")) == ["Siti Rahma"]
    assert _names(_search(marketer, program, q="Kopi.Example")) == ["Ayu Lestari"]
    assert _names(_search(marketer, program, q="5555-1234")) == ["Budi Santoso"]
    serial = members["ayu"]["serial_number"]
    assert _names(_search(marketer, program, q=serial[:5].lower())) == ["Ayu Lestari"]
    code = card_short_code(app, members["budi"]["serial_number"])
    assert _names(_search(marketer, program, q=f" {code.lower()} ")) == ["Budi Santoso"]
    found = _search(marketer, program, q="siti").json["members"][0]
    assert found["email"] == "siti@example.com" and found["phone"] == "+62 812-3456-7890"
    assert found["card"] == {"serial_number": members["siti"]["serial_number"],
                             "status": "active", "balance": 0, "lifetime_points": 0,
                             "tier": "Bronze"}
    # Pages of two: newest first, no member twice, none left out.
    first = _search(marketer, program, limit=2).json
    assert [m["name"] for m in first["members"]] == ["Ayu Lestari", "Budi Santoso"]
    second = _search(marketer, program, limit=2, after=first["next_after"]).json
    assert [m["name"] for m in second["members"]] == ["Siti Rahma"]
    assert second["next_after"] is None
    for bad in ({"limit": 0}, {"limit": 101}, {"after": "x"}, {"q": "x" * 201}):
        assert _search(marketer, program, **bad).status_code == 422, bad
    assert _search(api.as_(keys["pos"]), program).status_code == 403
    assert _search(marketer, {"id": 999}).status_code == 404


def test_a_cards_ledger_lots_and_devices(
        app: Flask, api: ApiClient, program: dict[str, Any],
        members: dict[str, dict[str, Any]], keys: dict[str, str]) -> None:
    serial = members["siti"]["serial_number"]
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}",
                       json={"pending_days": 3}).status_code == 200
    assert api.post(f"/api/v1/cards/{serial}/earn",
                    json={"amount": 120_000_000, "currency": "IDR", "reference": "r-1"}
                    ).status_code == 201
    for number in range(3):
        assert api.post(f"/api/v1/cards/{serial}/adjust",
                        json={"points": 10, "reason": f"gift {number}"}).status_code == 201
    marketer = api.as_(keys["marketer"])
    first = marketer.get(f"/api/v1/cards/{serial}/ledger?limit=2").json
    assert [e["reason"] for e in first["entries"]] == ["gift 2", "gift 1"]
    assert first["entries"][0]["who"] == "API key “test admin”"
    assert first["entries"][0]["actor"].startswith("api_key:")
    rest = marketer.get(f"/api/v1/cards/{serial}/ledger?limit=2&before={first['next_before']}"
                        ).json
    assert [(e["kind"], e["points"], e["pending_points"]) for e in rest["entries"]] == [
        ("adjust", 10, 0), ("earn", 0, 120)]
    assert rest["next_before"] is None
    assert marketer.get(f"/api/v1/cards/{serial}/ledger?limit=x").status_code == 422
    lots = marketer.get(f"/api/v1/cards/{serial}/lots").json
    assert (lots["available_points"], lots["pending_points"]) == (30, 120)
    assert [(lot["pending"], lot["remaining"]) for lot in lots["lots"]] == [
        (True, 120), (False, 10), (False, 10), (False, 10)]
    assert lots["next_release"]["points"] == 120
    assert marketer.get(f"/api/v1/cards/{serial}/devices").json == {
        "apple": [], "google": {"status": "not-created", "changed_at": None,
                                "synced_at": None}}
    phone = register_device(app, serial)
    devices = marketer.get(f"/api/v1/cards/{serial}/devices").json
    assert len(devices["apple"]) == 1 and devices["apple"][0]["registered_at"]
    assert devices["apple"][0]["installed"] and devices["apple"][0]["removed_at"] is None
    register_device(app, serial).remove(serial)  # a second iPhone, the pass removed from it
    devices = marketer.get(f"/api/v1/cards/{serial}/devices").json["apple"]
    assert [(d["installed"], d["removed_at"] is None) for d in devices] == [
        (True, True), (False, False)]  # installed ones first
    phone.remove(serial)
    phone.add(serial)  # added again: installed since then
    devices = marketer.get(f"/api/v1/cards/{serial}/devices").json["apple"]
    assert [d["installed"] for d in devices] == [True, False]
    assert marketer.get("/api/v1/cards/NOSUCHCARD/lots").status_code == 404


def test_the_card_link_is_given_only_to_admin_and_marketer_keys(
        app: Flask, api: ApiClient, keys: dict[str, str],
        members: dict[str, dict[str, Any]]) -> None:
    serial = members["budi"]["serial_number"]
    with app.app_context():
        link = f"https://pointpass.test{card_page_path(serial)}"
    answer = api.as_(keys["marketer"]).post(f"/api/v1/cards/{serial}/card-link")
    assert answer.status_code == 200
    assert answer.json == {"sent": False, "result": "no-email", "link": link}
    at_the_till = api.as_(keys["pos"]).post(
        f"/api/v1/cards/{members['siti']['serial_number']}/card-link").json
    assert at_the_till == {"sent": False, "result": "not-configured", "link": None}
    assert api.as_(keys["staff"]).post(f"/api/v1/cards/{serial}/card-link").status_code == 403
    with app.app_context():
        details = [e.details for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "card.resend-link"))]
        db.session.rollback()
    assert details == [{"result": "no-email"}, {"result": "not-configured"}]


def test_another_programs_members_and_cards_are_not_found(
        app: Flask, api: ApiClient, program: dict[str, Any],
        members: dict[str, dict[str, Any]]) -> None:
    other = create_program(api, name="Other Shop", slug="other-shop")
    theirs = create_card(api, other, name="Siti Lain", email="lain@example.com")["serial_number"]
    code = card_short_code(app, theirs)
    with app.app_context():  # an admin key granted only the first program
        api = api.as_(api_keys.create("A's admin", "admin", program_ids=[program["id"]])[1])
    assert _names(_search(api, program, q="siti")) == ["Siti Rahma"]
    assert _names(_search(api, program, q=code)) == []
    assert _names(_search(api, program, q=theirs)) == []
    assert _search(api, other).status_code == 404
    for path in ("ledger", "lots", "devices"):
        assert api.get(f"/api/v1/cards/{theirs}/{path}").status_code == 404, path
    assert api.post(f"/api/v1/cards/{theirs}/card-link").status_code == 404
    # The card services refuse it too: adjusting and voiding another program's card.
    assert api.post(f"/api/v1/cards/{theirs}/adjust",
                    json={"points": 5, "reason": "x"}).status_code == 404
    assert api.post(f"/api/v1/cards/{theirs}/void", json={"reason": "x"}).status_code == 404
    mine = members["siti"]["serial_number"]
    assert api.get(f"/api/v1/cards/{mine}/lots").status_code == 200
    assert api.post(f"/api/v1/cards/{mine}/adjust",
                    json={"points": 5, "reason": "x"}).status_code == 201
    with app.app_context():
        actions = [e.action for e in db.session.scalars(select(AuditEvent))
                   if e.action.startswith("card.")]
        db.session.rollback()
    assert actions == ["card.adjust"]


def test_the_endpoints_are_in_the_openapi_document(app: Flask) -> None:
    paths = app.test_client().get("/api/openapi.json").json["paths"]
    assert "get" in paths["/api/v1/programs/{program_id}/members"]
    for path in ("ledger", "lots", "devices"):
        assert "get" in paths[f"/api/v1/cards/{{serial}}/{path}"]
    assert "post" in paths["/api/v1/cards/{serial}/card-link"]
