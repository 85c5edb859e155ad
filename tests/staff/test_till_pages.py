"""The till page's JSON endpoints for adding points and undoing, and what the page shows:
the program's name, colours and word for points in the staff member's language."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import card_code, create_card, ledger_state
from tests.redemption.test_staff_pages import Staff


@pytest.fixture
def staff(app: Any, keys: dict[str, str]) -> Staff:
    return Staff(app.test_client(), keys["staff"])


def _scan_id(app: Any, staff: Staff, serial: str) -> str:
    scan = staff.scan(card_code(app, serial))
    assert scan.status_code == 200, scan.json
    return str(scan.json["scan_id"])


def test_add_points_for_a_typed_amount_then_undo(app: Any, staff: Staff,
                                                 card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    scan_id = _scan_id(app, staff, serial)
    tap = {"Idempotency-Key": "tap-7"}
    body = {"scan_id": scan_id, "amount": "45.000", "locale": "id"}
    first = staff.post("/staff/earn", body, headers=tap)
    assert first.status_code == 201, first.json
    assert first.headers["Cache-Control"] == "no-store"
    assert {k: first.json[k] for k in ("kind", "points", "amount", "currency", "balance",
                                       "undo_seconds")} == {
        "kind": "earn", "points": 4, "amount": 4_500_000, "currency": "IDR", "balance": 4,
        "undo_seconds": 300}
    again = staff.post("/staff/earn", body, headers=tap)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["entry_id"] == first.json["entry_id"]
    assert ledger_state(app, serial) == (4, 4, 1)

    undone = staff.post("/staff/undo", {"entry_id": first.json["entry_id"]})
    assert undone.status_code == 201, undone.json
    assert (undone.json["kind"], undone.json["balance"]) == ("undo", 0)
    twice = staff.post("/staff/undo", {"entry_id": first.json["entry_id"]})
    assert twice.status_code == 409
    assert twice.json["type"] == "urn:pointpass:problem:already-undone"
    assert staff.post("/staff/undo", {"entry_id": undone.json["entry_id"]}).json["type"] == (
        "urn:pointpass:problem:not-your-action")  # an undo is not undone
    assert staff.post("/staff/undo", {}).json["type"] == (
        "urn:pointpass:problem:already-undone")
    assert ledger_state(app, serial) == (0, 0, 2)


@pytest.mark.parametrize("body", [
    {"amount": "abc", "locale": "id"},
    {"amount": "-45.000", "locale": "id"},
    {"amount": "45,000", "locale": "id"},
    {"amount": "1" * 40, "locale": "en"},
    {"amount": "12.50", "locale": "xx"},
    {"amount": "12.50", "points": 3},
    {},
    {"points": 0},
    {"points": "3"},
    {"points": 10**12},
])
def test_bad_input_is_a_problem_and_writes_nothing(app: Any, staff: Staff, card: dict[str, Any],
                                                   body: dict[str, Any]) -> None:
    serial = card["serial_number"]
    response = staff.post("/staff/earn", {"scan_id": _scan_id(app, staff, serial), **body})
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert ledger_state(app, serial) == (0, 0, 0)


def test_another_staff_key_cannot_undo(app: Any, staff: Staff, keys: dict[str, str],
                                       card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    earned = staff.post("/staff/earn", {"scan_id": _scan_id(app, staff, serial), "points": 5})
    assert earned.status_code == 201
    admin = Staff(app.test_client(), keys["admin"])
    refused = admin.post("/staff/undo", {"entry_id": earned.json["entry_id"]})
    assert refused.status_code == 409
    assert refused.json["type"] == "urn:pointpass:problem:not-your-action"
    # Without the page's CSRF token, or signed out: refused before anything happens.
    assert staff.post("/staff/undo", {}, token=None).status_code == 400
    assert app.test_client().post("/staff/undo", json={}).status_code in (400, 401)
    assert ledger_state(app, serial) == (5, 5, 1)


def test_the_page_shows_the_program_in_the_staff_language(app: Any, staff: Staff, api: Any,
                                                          program: dict[str, Any]) -> None:
    api.patch = lambda path, json: api.request("PATCH", path, json=json)
    assert api.patch(f"/api/v1/programs/{program['id']}",
                     {"background_color": "#7C2D12"}).status_code == 200
    page = staff.client.get("/staff?lang=id").get_data(as_text=True)
    assert "Kopi Test" in page and "--brand-bg: #7C2D12" in page
    assert "POINTPASS" not in page.upper().replace("POINTPASS.TEST", "")
    card = create_card(api, program, name="Budi Santoso")
    scan = staff.post("/staff/scan?lang=id", {"code": card_code(app, card["serial_number"])})
    assert scan.json["card"]["points_label"] == "Poin"
    assert scan.json["card"]["member_first_name"] == "Budi"
    assert scan.json["card"]["program"]["name"] == "Kopi Test"
