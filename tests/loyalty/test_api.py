"""The loyalty API through HTTP: programs, rewards, members, cards, earning, adjusting."""

from __future__ import annotations

from typing import Any

from tests.factories import PROGRAM, ledger_state


def test_create_and_get_program(api: Any, program: dict[str, Any]) -> None:
    assert program["slug"] == "kopi-test"
    assert [t["name"] for t in program["tiers"]] == ["Bronze", "Silver"]
    assert program["rewards"][0]["points_cost"] == 100

    response = api.as_(api.key).get(f"/api/v1/programs/{program['id']}")
    assert response.status_code == 200
    assert response.json["name"] == "Kopi Test"


def test_duplicate_slug_is_409(api: Any, program: dict[str, Any]) -> None:
    response = api.post("/api/v1/programs", json=PROGRAM)
    assert response.status_code == 409
    assert response.content_type == "application/problem+json"


def test_roles_are_enforced(api: Any, keys: dict[str, str], program: dict[str, Any]) -> None:
    assert api.as_(keys["marketer"]).post("/api/v1/programs",
                                          json={"name": "X"}).status_code == 403
    reward = {"name": "Cake", "points_cost": 250}
    path = f"/api/v1/programs/{program['id']}/rewards"
    assert api.as_(keys["pos"]).post(path, json=reward).status_code == 403
    response = api.as_(keys["marketer"]).post(path, json=reward)
    assert response.status_code == 201
    assert response.json["points_cost"] == 250
    for role in ("admin", "marketer", "staff", "pos"):
        assert api.as_(keys[role]).get(f"/api/v1/programs/{program['id']}").status_code == 200


def test_enroll_returns_member_and_card(api: Any, keys: dict[str, str],
                                        program: dict[str, Any]) -> None:
    response = api.as_(keys["pos"]).post(
        f"/api/v1/programs/{program['id']}/members",
        json={"name": "Somchai", "email": "Somchai@Example.com", "language": "th"},
    )
    assert response.status_code == 201
    body = response.json
    assert body["language"] == "th"
    assert body["email"] == "somchai@example.com"
    assert len(body["referral_code"]) == 8
    card = body["card"]
    assert card["balance"] == 0
    assert card["tier"] == "Bronze"
    assert len(card["serial_number"]) >= 16
    assert "apple_pass_url" in card and "google_save_url" in card

    again = api.post(f"/api/v1/programs/{program['id']}/members",
                     json={"name": "Other", "email": "somchai@example.com"})
    assert again.status_code == 409


def test_enroll_defaults_to_program_language(api: Any, program: dict[str, Any]) -> None:
    response = api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Ana"})
    assert response.status_code == 201
    assert response.json["language"] == "en"


def test_unknown_referral_code_is_422_and_writes_nothing(api: Any, app: Any,
                                                         program: dict[str, Any]) -> None:
    response = api.post(f"/api/v1/programs/{program['id']}/members",
                        json={"name": "Ana", "referral_code": "NOPE2345"})
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "referral_code"
    with app.app_context():
        from sqlalchemy import func, select

        from app.extensions import db
        from app.loyalty.models import Member

        assert db.session.scalar(select(func.count(Member.id))) == 0


def test_earn_points_and_read_card(api: Any, keys: dict[str, str], card: dict[str, Any],
                                   app: Any) -> None:
    serial = card["serial_number"]
    pos = api.as_(keys["pos"])
    response = pos.post(f"/api/v1/cards/{serial}/earn", json={"points": 40, "reference": "R1"},
                        headers={"Idempotency-Key": "k1"})
    assert response.status_code == 201
    assert response.json["balance"] == 40
    assert response.json["entry"]["kind"] == "earn"
    assert response.json["entry"]["reference"] == "R1"

    detail = api.as_(keys["staff"]).get(f"/api/v1/cards/{serial}").json
    assert detail["balance"] == 40
    assert detail["member_name"] == "Siti"
    assert [e["points"] for e in detail["recent_entries"]] == [40]
    assert ledger_state(app, serial) == (40, 40, 1)


def test_earn_from_amount_uses_rate_and_tier_multiplier(api: Any, card: dict[str, Any],
                                                        app: Any) -> None:
    serial = card["serial_number"]
    # Rp 4.999.999,99 at 1 point per 1.000.000 minor units: 499 points, still Bronze.
    r = api.post(f"/api/v1/cards/{serial}/earn", json={"amount": 499_999_999, "currency": "IDR"})
    assert r.status_code == 201
    assert (r.json["balance"], r.json["tier"]) == (499, "Bronze")
    r = api.post(f"/api/v1/cards/{serial}/earn", json={"amount": 1_000_000, "currency": "IDR"})
    assert (r.json["balance"], r.json["lifetime_points"], r.json["tier"]) == (500, 500, "Silver")
    # Silver earns 1.5x, rounded down.
    r = api.post(f"/api/v1/cards/{serial}/earn", json={"amount": 3_000_000, "currency": "IDR"})
    assert r.json["entry"]["points"] == 4
    assert r.json["entry"]["amount"] == 3_000_000
    assert ledger_state(app, serial) == (504, 504, 3)


def test_earn_in_wrong_currency_is_422(api: Any, card: dict[str, Any], app: Any) -> None:
    serial = card["serial_number"]
    r = api.post(f"/api/v1/cards/{serial}/earn", json={"amount": 100_000, "currency": "THB"})
    assert r.status_code == 422
    assert r.json["errors"][0]["field"] == "currency"
    assert ledger_state(app, serial) == (0, 0, 0)


def test_idempotency_key_credits_once(api: Any, card: dict[str, Any], app: Any) -> None:
    serial = card["serial_number"]
    first = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 10},
                     headers={"Idempotency-Key": "order-77"})
    second = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 10},
                      headers={"Idempotency-Key": "order-77"})
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json["entry"]["id"] == first.json["entry"]["id"]
    assert ledger_state(app, serial) == (10, 10, 1)

    reused = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 99},
                      headers={"Idempotency-Key": "order-77"})
    assert reused.status_code == 422
    assert reused.json["type"].endswith("idempotency-key-reused")
    assert ledger_state(app, serial) == (10, 10, 1)


def test_adjust_is_signed_needs_reason_and_cannot_overdraw(api: Any, card: dict[str, Any],
                                                           app: Any) -> None:
    serial = card["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/adjust",
                    json={"points": 30, "reason": "goodwill"}).status_code == 201
    r = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -12, "reason": "correction"})
    assert r.status_code == 201
    assert r.json["balance"] == 18
    assert r.json["lifetime_points"] == 0  # adjustments are not earnings
    r = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -19, "reason": "too much"})
    assert r.status_code == 409
    assert r.json["type"].endswith("insufficient-points")
    assert r.json["balance"] == 18
    assert ledger_state(app, serial) == (18, 18, 2)


def test_openapi_document_describes_the_api(app: Any) -> None:
    spec = app.test_client().get("/api/openapi.json").json
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in ("/api/v1/programs", "/api/v1/programs/{program_id}/members",
                 "/api/v1/cards/{serial}/earn", "/api/v1/cards/{serial}/adjust"):
        assert path in paths
    earn = paths["/api/v1/cards/{serial}/earn"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in earn["parameters"])
    assert "BearerAuth" in spec["components"]["securitySchemes"]
    assert spec["components"]["schemas"]["EarnIn"]["additionalProperties"] is False
    # Errors are documented as what they are: problem details, including 400 for bad JSON.
    for operations in paths.values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"]
            assert "400" in operation["responses"]
    members = paths["/api/v1/programs/{program_id}/members"]["post"]
    assert members["requestBody"]["required"] is True  # a member needs a name
    assert members["parameters"][0]["schema"] == {"type": "integer", "minimum": 1,
                                                  "maximum": 2**31 - 1}


def test_revoked_key_is_refused(api: Any, app: Any, keys: dict[str, str],
                                program: dict[str, Any]) -> None:
    from sqlalchemy import select

    from app.auth import keys as api_keys
    from app.auth.models import ApiKey
    from app.extensions import db

    pos = api.as_(keys["pos"])
    assert pos.get(f"/api/v1/programs/{program['id']}").status_code == 200
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.name == "test pos"))
        api_keys.revoke(key_id)
    assert pos.get(f"/api/v1/programs/{program['id']}").status_code == 401
