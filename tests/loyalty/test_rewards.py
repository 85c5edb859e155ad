"""Rewards and tiers as marketers manage them, through the API (SQLite and PostgreSQL): the
program's order, reorder validation, editing, retiring (gone from the pass, the join page and
the till, refused at redemption, kept in history), tier edits that re-tier cards, and the
audit trail of every change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.audit import AuditEvent
from app.extensions import db
from app.loyalty import programs
from app.loyalty.models import Card
from app.wallet.apple.pass_files import next_reward
from tests.factories import ApiClient, card_code, create_card, create_program, settle


def rewards_of(api: ApiClient, program: dict[str, Any]) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/programs/{program['id']}/rewards")
    assert response.status_code == 200, response.json
    return response.json["rewards"]  # type: ignore[no-any-return]


def add(api: ApiClient, program: dict[str, Any], name: str, cost: int) -> dict[str, Any]:
    response = api.post(f"/api/v1/programs/{program['id']}/rewards",
                        json={"name": name, "points_cost": cost})
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def audit_actions(app: Any, program_id: int) -> list[tuple[str, str | None]]:
    with app.app_context():
        rows = db.session.execute(select(AuditEvent.action, AuditEvent.target).where(
            AuditEvent.program_id == program_id).order_by(AuditEvent.id)).all()
        return [tuple(row) for row in rows]  # type: ignore[misc]


def card_version(app: Any, serial: str) -> int:
    with app.app_context():
        return db.session.scalar(select(Card.version).where(Card.serial_number == serial)) or 0


def test_new_rewards_go_last_and_the_order_is_the_programs(
        app: Any, api: ApiClient, program: dict[str, Any]) -> None:
    cake = add(api, program, "Cake", 40)  # cheaper than Coffee (100), still listed after it
    assert cake["position"] == 1 and cake["retired_at"] is None
    assert [r["name"] for r in rewards_of(api, program)] == ["Coffee", "Cake"]
    assert [r["name"] for r in api.get(f"/api/v1/programs/{program['id']}").json["rewards"]] \
        == ["Coffee", "Cake"]
    ids = [r["id"] for r in rewards_of(api, program)]
    response = api.request("PUT", f"/api/v1/programs/{program['id']}/rewards/order",
                           json={"reward_ids": ids[::-1]})
    assert response.status_code == 200, response.json
    assert [r["name"] for r in response.json["rewards"]] == ["Cake", "Coffee"]
    assert [r["name"] for r in rewards_of(api, program)] == ["Cake", "Coffee"]
    assert ("reward.reorder", None) in audit_actions(app, program["id"])
    # The join page lists them in that order too.
    page = api.client.get("/join/kopi-test").get_data(as_text=True)
    assert page.index("Cake") < page.index("Coffee")


def test_an_order_must_name_every_current_reward_once(
        api: ApiClient, program: dict[str, Any]) -> None:
    other = create_program(api, name="Other", slug="other")
    coffee = rewards_of(api, program)[0]["id"]
    cake = add(api, program, "Cake", 40)["id"]
    foreign = other["rewards"][0]["id"]
    path = f"/api/v1/programs/{program['id']}/rewards/order"
    for ids in ([coffee], [coffee, cake, cake], [coffee, cake, foreign], []):
        response = api.request("PUT", path, json={"reward_ids": ids})
        assert response.status_code == 422, ids
        assert response.json["errors"][0]["field"] == "reward_ids"
    assert api.request("PUT", path, json={"reward_ids": "1,2"}).status_code == 422
    assert [r["id"] for r in rewards_of(api, program)] == [coffee, cake]


def test_edit_a_reward_and_every_pass_follows(
        app: Any, api: ApiClient, program: dict[str, Any], card: dict[str, Any]) -> None:
    coffee = rewards_of(api, program)[0]
    before = card_version(app, card["serial_number"])
    path = f"/api/v1/programs/{program['id']}/rewards/{coffee['id']}"
    response = api.request("PATCH", path, json={"name": "Kopi", "points_cost": 120})
    assert response.status_code == 200, response.json
    assert (response.json["name"], response.json["points_cost"]) == ("Kopi", 120)
    settle(app)  # every card is marked by the update the change started
    assert card_version(app, card["serial_number"]) > before
    assert api.request("PATCH", path, json={}).status_code == 422
    assert api.request("PATCH", path, json={"points_cost": 0}).status_code == 422
    assert ("reward.update", f"reward:{coffee['id']}") in audit_actions(app, program["id"])
    with app.app_context():
        assert next_reward(programs.get(program["id"]), 0).reward_name == "Kopi"  # type: ignore[union-attr]


def test_retire_removes_the_reward_everywhere_but_history(
        app: Any, api: ApiClient, keys: dict[str, str], program: dict[str, Any],
        card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    staff = api.as_(keys["staff"])
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 300}).status_code == 201
    coffee = rewards_of(api, program)[0]
    cake = add(api, program, "Cake", 40)
    # Redeem the coffee once, so the ledger names it.
    scan = staff.post("/api/v1/scans", json={"code": card_code(app, serial)}).json
    assert [r["name"] for r in scan["rewards"]] == ["Coffee", "Cake"]
    redeemed = staff.post("/api/v1/redemptions",
                          json={"scan_id": scan["scan_id"], "reward_id": coffee["id"]})
    assert redeemed.status_code == 201, redeemed.json

    before = card_version(app, serial)
    response = api.post(f"/api/v1/programs/{program['id']}/rewards/{coffee['id']}/retire")
    assert response.status_code == 200, response.json
    assert response.json["retired_at"] is not None
    settle(app)  # every card is marked by the update the change started
    assert card_version(app, serial) > before
    # Listed as retired, after the current ones; gone from the program's own list.
    listed = rewards_of(api, program)
    assert [(r["name"], r["retired_at"] is None) for r in listed] == [
        ("Cake", True), ("Coffee", False)]
    assert [r["name"] for r in api.get(f"/api/v1/programs/{program['id']}").json["rewards"]] \
        == ["Cake"]
    # Not on the pass, the join page or at the till; redeeming it is refused.
    with app.app_context():
        progress = next_reward(programs.get(program["id"]), 0)
        assert progress is not None and progress.reward_name == "Cake"
    assert "Coffee" not in api.client.get("/join/kopi-test").get_data(as_text=True)
    scan = staff.post("/api/v1/scans", json={"code": card_code(app, serial)}).json
    assert [r["name"] for r in scan["rewards"]] == ["Cake"]
    refused = staff.post("/api/v1/redemptions",
                         json={"scan_id": scan["scan_id"], "reward_id": coffee["id"]})
    assert refused.status_code == 409 and refused.json["type"].endswith("reward-retired")
    # History keeps its name.
    entries = api.get(f"/api/v1/cards/{serial}").json["recent_entries"]
    assert any(e["kind"] == "redeem" and e["reason"] == "Coffee" for e in entries)
    # A retired reward cannot change, come back or be retired twice, nor be in an order.
    path = f"/api/v1/programs/{program['id']}/rewards/{coffee['id']}"
    assert api.request("PATCH", path, json={"active": True}).status_code == 409
    assert api.post(path + "/retire").status_code == 409
    assert api.request("PUT", f"/api/v1/programs/{program['id']}/rewards/order",
                       json={"reward_ids": [cake["id"], coffee["id"]]}).status_code == 422
    assert ("reward.retire", f"reward:{coffee['id']}") in audit_actions(app, program["id"])


def test_another_programs_reward_is_not_found(api: ApiClient, program: dict[str, Any]) -> None:
    other = create_program(api, name="Other", slug="other")
    foreign = other["rewards"][0]["id"]
    path = f"/api/v1/programs/{program['id']}/rewards/{foreign}"
    assert api.request("PATCH", path, json={"name": "X"}).status_code == 404
    assert api.post(path + "/retire").status_code == 404
    assert api.get("/api/v1/programs/999999/rewards").status_code == 404
    tier = other["tiers"][1]["id"]
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}/tiers/{tier}",
                       json={"name": "X"}).status_code == 404
    assert api.request("DELETE",
                       f"/api/v1/programs/{program['id']}/tiers/{tier}").status_code == 404


def test_marketers_manage_rewards_but_not_tiers(
        api: ApiClient, keys: dict[str, str], program: dict[str, Any]) -> None:
    marketer = api.as_(keys["marketer"])
    reward = program["rewards"][0]["id"]
    assert marketer.request("PATCH", f"/api/v1/programs/{program['id']}/rewards/{reward}",
                            json={"active": False}).status_code == 200
    silver = program["tiers"][1]["id"]
    assert marketer.request("PATCH", f"/api/v1/programs/{program['id']}/tiers/{silver}",
                            json={"threshold": 10}).status_code == 403
    assert api.as_(keys["pos"]).post(
        f"/api/v1/programs/{program['id']}/rewards/{reward}/retire").status_code == 403


def tier_of(api: ApiClient, serial: str) -> str | None:
    return api.get(f"/api/v1/cards/{serial}").json["tier"]  # type: ignore[no-any-return]


def test_tier_edits_re_tier_the_cards(
        app: Any, api: ApiClient, program: dict[str, Any], card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 300}).status_code == 201
    assert tier_of(api, serial) == "Bronze"
    tiers = {t["name"]: t["id"] for t in api.get(
        f"/api/v1/programs/{program['id']}/tiers").json["tiers"]}
    path = f"/api/v1/programs/{program['id']}/tiers"
    before = card_version(app, serial)
    response = api.request("PATCH", f"{path}/{tiers['Silver']}", json={"threshold": 250})
    assert response.status_code == 200, response.json
    assert tier_of(api, serial) == "Silver" and card_version(app, serial) > before
    # A new name shows; the base tier stays at 0; thresholds stay unique.
    assert api.request("PATCH", f"{path}/{tiers['Silver']}",
                       json={"name": "Perak"}).status_code == 200
    assert tier_of(api, serial) == "Perak"
    base = api.request("PATCH", f"{path}/{tiers['Bronze']}", json={"threshold": 5})
    assert base.status_code == 409 and base.json["type"].endswith("base-tier")
    taken = api.request("PATCH", f"{path}/{tiers['Silver']}", json={"threshold": 0})
    assert taken.status_code == 409
    # Deleting Silver moves the card back to Bronze; the base tier cannot go.
    assert api.request("DELETE", f"{path}/{tiers['Silver']}").status_code == 204
    assert tier_of(api, serial) == "Bronze"
    assert api.request("DELETE", f"{path}/{tiers['Bronze']}").status_code == 409
    assert [t["name"] for t in api.get(path).json["tiers"]] == ["Bronze"]
    assert [a for a, _ in audit_actions(app, program["id"]) if a.startswith("tier.")] == [
        "tier.update", "tier.update", "tier.delete"]


def test_a_tier_named_by_a_rule_follows_a_rename_and_cannot_be_deleted(
        api: ApiClient, program: dict[str, Any]) -> None:
    rule = api.post(f"/api/v1/programs/{program['id']}/rules", json={
        "kind": "bonus", "name": "Silver bonus", "points": 5,
        "conditions": {"tiers": ["Silver"]}}).json
    silver = program["tiers"][1]["id"]
    path = f"/api/v1/programs/{program['id']}/tiers/{silver}"
    assert api.request("PATCH", path, json={"name": "Perak"}).status_code == 200
    stored = api.get(f"/api/v1/programs/{program['id']}/rules/{rule['id']}").json
    assert stored["conditions"]["tiers"] == ["Perak"]
    refused = api.request("DELETE", path)
    assert refused.status_code == 409 and refused.json["type"].endswith("tier-in-use")


def test_rule_changes_are_audited(app: Any, api: ApiClient, program: dict[str, Any]) -> None:
    path = f"/api/v1/programs/{program['id']}/rules"
    rule = api.post(path, json={"kind": "welcome", "name": "Hello", "points": 10}).json
    assert api.request("PATCH", f"{path}/{rule['id']}", json={"points": 20}).status_code == 200
    assert api.request("DELETE", f"{path}/{rule['id']}").status_code == 204
    target = f"rule:{rule['id']}"
    assert [(a, t) for a, t in audit_actions(app, program["id"]) if a.startswith("rule.")] == [
        ("rule.create", target), ("rule.update", target), ("rule.delete", target)]
    with app.app_context():
        details = db.session.scalars(select(AuditEvent.details).where(
            AuditEvent.action == "rule.update")).one()
        assert details == {"points": 20}


def test_a_new_card_and_the_create_call_keep_the_order(api: ApiClient) -> None:
    program = create_program(api, name="Ordered", slug="ordered", rewards=[
        {"name": "Big", "points_cost": 900}, {"name": "Small", "points_cost": 10}])
    assert [r["name"] for r in program["rewards"]] == ["Big", "Small"]
    create_card(api, program, email="a@example.com")
    assert [r["position"] for r in rewards_of(api, program)] == [0, 1]


def test_a_rule_switched_off_applies_to_nothing_until_switched_on(
        app: Any, api: ApiClient, program: dict[str, Any], card: dict[str, Any]) -> None:
    path = f"/api/v1/programs/{program['id']}/rules"
    rule = api.post(path, json={"kind": "bonus", "name": "Extra", "points": 4,
                                "conditions": {"min_amount": 100}}).json
    assert rule["enabled"] is True
    off = api.request("PATCH", f"{path}/{rule['id']}", json={"enabled": False})
    assert off.status_code == 200 and off.json["enabled"] is False
    assert off.json["conditions"] == {"min_amount": 100}
    preview = api.post(f"{path}/preview", json={"amount": 2_000_000, "currency": "IDR",
                                                "tier": "Bronze"}).json
    assert preview["rules"][0]["reason"] == "disabled" and preview["total_points"] == 2
    earned = api.post(f"/api/v1/cards/{card['serial_number']}/earn",
                      json={"amount": 2_000_000, "currency": "IDR"}).json
    assert earned["total_points"] == 2
    # An edit keeps it off; switching on again makes it apply.
    assert api.request("PATCH", f"{path}/{rule['id']}",
                       json={"points": 5}).json["enabled"] is False
    assert api.request("PATCH", f"{path}/{rule['id']}",
                       json={"enabled": True}).json["enabled"] is True
    preview = api.post(f"{path}/preview", json={"amount": 2_000_000, "currency": "IDR",
                                                "tier": "Bronze"}).json
    assert preview["total_points"] == 7
    with app.app_context():
        details = db.session.scalars(select(AuditEvent.details).where(
            AuditEvent.action == "rule.update").order_by(AuditEvent.id)).all()
    assert details == [{"enabled": False}, {"points": 5}, {"enabled": True}]
    created_off = api.post(path, json={"kind": "welcome", "name": "Hi", "points": 3,
                                       "enabled": False}).json
    assert created_off["enabled"] is False and created_off["conditions"] is None
