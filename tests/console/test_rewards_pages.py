"""The "Rewards and tiers" and "Earning rules" pages through Flask's test client (SQLite and
PostgreSQL): each form changes what the API then shows, bad input is 422 with the form again,
a post without the CSRF token is refused, another program's pages are 404."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.audit import AuditEvent
from app.extensions import db
from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient, create_program


@pytest.fixture
def marketer(app: Flask, program: dict[str, Any]) -> FlaskClient:
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    assert sign_in(client, "m@example.com").status_code == 303
    return client


def rewards_page(client: FlaskClient, program: dict[str, Any]) -> tuple[str, str]:
    response = client.get(f"/console/programs/{program['id']}/rewards")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return html, form_token(html)


def names(api: ApiClient, program: dict[str, Any]) -> list[tuple[str, bool]]:
    rewards = api.get(f"/api/v1/programs/{program['id']}/rewards").json["rewards"]
    return [(r["name"], r["retired_at"] is None) for r in rewards]


def test_add_move_edit_and_retire_a_reward(app: Flask, api: ApiClient, program: dict[str, Any],
                                           marketer: FlaskClient) -> None:
    base = f"/console/programs/{program['id']}/rewards"
    html, token = rewards_page(marketer, program)
    assert "Coffee" in html and "Rewards and tiers" in html
    response = marketer.post(base, data={"csrf_token": token, "new-name": "Cake",
                                         "new-points_cost": "40", "new-active": "y"})
    assert response.status_code == 303
    assert names(api, program) == [("Coffee", True), ("Cake", True)]
    cake = api.get(f"/api/v1/programs/{program['id']}/rewards").json["rewards"][1]["id"]
    # Up, without htmx: back to the page.
    response = marketer.post(f"{base}/{cake}/move", data={"csrf_token": token,
                                                          "direction": "up"})
    assert response.status_code == 303
    assert names(api, program) == [("Cake", True), ("Coffee", True)]
    # Down, with htmx: the list alone comes back.
    response = marketer.post(f"{base}/{cake}/move", headers={"HX-Request": "true"},
                             data={"csrf_token": token, "direction": "down"})
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert fragment.startswith('\n<ol class="reward-list"') or "<html" not in fragment
    assert fragment.index("Coffee") < fragment.index("Cake")
    # Edit.
    response = marketer.post(f"{base}/{cake}", data={
        "csrf_token": token, f"reward-{cake}-name": "Kue", f"reward-{cake}-points_cost": "45"})
    assert response.status_code == 303
    reward = api.get(f"/api/v1/programs/{program['id']}/rewards").json["rewards"][1]
    assert (reward["name"], reward["points_cost"], reward["active"]) == ("Kue", 45, False)
    # Retire: a confirmation first, then the post.
    confirm = marketer.get(f"{base}/{cake}/retire")
    assert confirm.status_code == 200 and "Retire Kue?" in confirm.get_data(as_text=True)
    assert marketer.post(f"{base}/{cake}/retire",
                         data={"csrf_token": token}).status_code == 303
    assert names(api, program) == [("Coffee", True), ("Kue", False)]
    html, _ = rewards_page(marketer, program)
    retired = html[html.index('id="retired"'):]
    assert "Kue" in retired and re.search(r"<time datetime=\"\d{4}-", retired)
    # Who did it is on record.
    with app.app_context():
        actors = set(db.session.scalars(select(AuditEvent.actor_name).where(
            AuditEvent.program_id == program["id"], AuditEvent.action.like("reward.%"))))
    assert actors == {"m@example.com"}
    # A retired reward cannot be edited or retired again.
    assert marketer.post(f"{base}/{cake}/retire", data={"csrf_token": token}).status_code == 409
    assert marketer.post(f"{base}/{cake}", data={
        "csrf_token": token, f"reward-{cake}-name": "X",
        f"reward-{cake}-points_cost": "5"}).status_code == 409


@pytest.mark.parametrize(("fields", "message"), [
    ({"new-name": "", "new-points_cost": "10"}, "Please enter a name."),
    ({"new-name": "Cake", "new-points_cost": "ten"}, "Not a valid integer value."),
    ({"new-name": "Cake", "new-points_cost": "0"}, "Number must be between"),
    ({"new-name": "Ca\u202eke", "new-points_cost": "10"}, "invisible characters"),
])
def test_bad_input_shows_the_form_again(api: ApiClient, program: dict[str, Any],
                                        marketer: FlaskClient, fields: dict[str, str],
                                        message: str) -> None:
    _, token = rewards_page(marketer, program)
    response = marketer.post(f"/console/programs/{program['id']}/rewards",
                             data={"csrf_token": token, **fields})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert names(api, program) == [("Coffee", True)]


def test_posts_without_the_csrf_token_are_refused(api: ApiClient, program: dict[str, Any],
                                                  marketer: FlaskClient) -> None:
    base = f"/console/programs/{program['id']}"
    coffee = program["rewards"][0]["id"]
    for path, data in [
        (f"{base}/rewards", {"new-name": "Cake", "new-points_cost": "40"}),
        (f"{base}/rewards/{coffee}", {f"reward-{coffee}-name": "X",
                                      f"reward-{coffee}-points_cost": "5"}),
        (f"{base}/rewards/{coffee}/move", {"direction": "down"}),
        (f"{base}/rewards/{coffee}/retire", {}),
        (f"{base}/rules", {"new-kind": "welcome", "new-name": "Hi", "new-points": "5"}),
        (f"{base}/rules/preview", {"try-amount": "10"}),
    ]:
        assert marketer.post(path, data=data).status_code in (400, 403), path
    assert names(api, program) == [("Coffee", True)]


def test_another_programs_pages_are_not_found(api: ApiClient, program: dict[str, Any],
                                              marketer: FlaskClient) -> None:
    other = create_program(api, name="Other", slug="other")
    _, token = rewards_page(marketer, program)
    reward = other["rewards"][0]["id"]
    base = f"/console/programs/{other['id']}"
    assert marketer.get(f"{base}/rewards").status_code == 404
    assert marketer.get(f"{base}/rules").status_code == 404
    assert marketer.post(f"{base}/rewards/{reward}/retire",
                         data={"csrf_token": token}).status_code == 404
    # Another program's reward through this program's URL: not found either.
    assert marketer.post(f"/console/programs/{program['id']}/rewards/{reward}/retire",
                         data={"csrf_token": token}).status_code == 404
    assert names(api, other) == [("Coffee", True)]


def test_tiers_are_for_admins(app: Flask, api: ApiClient, program: dict[str, Any],
                              marketer: FlaskClient, card: dict[str, Any]) -> None:
    silver = program["tiers"][1]["id"]
    html, token = rewards_page(marketer, program)
    assert "An administrator changes tiers." in html
    assert marketer.post(f"/console/programs/{program['id']}/tiers/{silver}", data={
        "csrf_token": token}).status_code == 403
    make_account(app, "a@example.com", "admin")
    admin = app.test_client()
    assert sign_in(admin, "a@example.com").status_code == 303
    _, token = rewards_page(admin, program)
    base = f"/console/programs/{program['id']}/tiers"
    serial = card["serial_number"]
    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 60})
    response = admin.post(f"{base}/{silver}", data={
        "csrf_token": token, f"tier-{silver}-name": "Silver",
        f"tier-{silver}-threshold": "50", f"tier-{silver}-multiplier_percent": "150"})
    assert response.status_code == 303
    assert api.get(f"/api/v1/cards/{serial}").json["tier"] == "Silver"
    response = admin.post(base, data={"csrf_token": token, "new-tier-name": "Gold",
                                      "new-tier-threshold": "50",
                                      "new-tier-multiplier_percent": "200"})
    assert response.status_code == 409
    assert "Another tier has this threshold." in response.get_data(as_text=True)
    assert admin.post(f"{base}/{silver}/delete", data={"csrf_token": token}).status_code == 303
    assert api.get(f"/api/v1/cards/{serial}").json["tier"] == "Bronze"
    bronze = program["tiers"][0]["id"]
    assert admin.post(f"{base}/{bronze}/delete", data={"csrf_token": token}).status_code == 409


def test_rules_create_edit_delete_and_preview(api: ApiClient, program: dict[str, Any],
                                              marketer: FlaskClient) -> None:
    base = f"/console/programs/{program['id']}/rules"
    page = marketer.get(base)
    assert page.status_code == 200
    token = form_token(page.get_data(as_text=True))
    response = marketer.post(base, data={
        "csrf_token": token, "new-kind": "bonus", "new-name": "Weekend", "new-points": "7",
        "new-priority": "0", "new-stackable": "y", "new-days_of_week": ["6", "7"],
        "new-min_amount": "50000"})
    assert response.status_code == 303
    rules = api.get(f"/api/v1/programs/{program['id']}/rules").json["rules"]
    assert len(rules) == 1
    rule = rules[0]
    assert (rule["kind"], rule["points"]) == ("bonus", 7)
    # IDR has 2 minor-unit digits: 50 000 rupiah is 5 000 000 minor units.
    assert rule["conditions"] == {"days_of_week": [6, 7], "min_amount": 5_000_000}
    # A multiplier without its percent: the service's refusal shows on the field.
    response = marketer.post(base, data={"csrf_token": token, "new-kind": "multiplier",
                                         "new-name": "Double", "new-priority": "0"})
    assert response.status_code == 422
    assert "A multiplier rule needs percent." in response.get_data(as_text=True)
    # Edit: conditions replaced as a whole.
    rid = rule["id"]
    response = marketer.post(f"{base}/{rid}", data={
        "csrf_token": token, f"rule-{rid}-name": "Any day", f"rule-{rid}-points": "9",
        f"rule-{rid}-priority": "3"})
    assert response.status_code == 303
    rule = api.get(f"/api/v1/programs/{program['id']}/rules/{rid}").json
    assert (rule["name"], rule["points"], rule["priority"], rule["conditions"],
            rule["stackable"]) == ("Any day", 9, 3, None, False)
    # Preview: htmx gets the fragment, with the rule's points.
    response = marketer.post(f"{base}/preview", headers={"HX-Request": "true"}, data={
        "csrf_token": token, "try-amount": "20000"})
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert "<html" not in fragment and 'id="rules-preview"' in fragment
    # 20 000 rupiah at 1 point per 10 000 (1 000 000 minor units): 2 points, and 9 on top.
    assert "Total: 11 points" in fragment
    bad = marketer.post(f"{base}/preview", data={"csrf_token": token, "try-amount": "x"})
    assert bad.status_code == 422
    # Delete.
    assert marketer.post(f"{base}/{rid}/delete", data={"csrf_token": token}).status_code == 303
    assert api.get(f"/api/v1/programs/{program['id']}/rules").json["rules"] == []
    assert marketer.post(f"{base}/{rid}/delete", data={"csrf_token": token}).status_code == 404


def test_switch_a_rule_off_and_on(api: ApiClient, program: dict[str, Any],
                                  marketer: FlaskClient) -> None:
    base = f"/console/programs/{program['id']}/rules"
    rule = api.post(base.replace("/console", "/api/v1"),
                    json={"kind": "bonus", "name": "Extra", "points": 4}).json
    token = form_token(marketer.get(base).get_data(as_text=True))
    assert marketer.post(f"{base}/{rule['id']}/switch",
                         data={"csrf_token": token, "enabled": "off"}).status_code == 303
    page = marketer.get(base).get_data(as_text=True)
    assert "Switch on Extra" in page and "switched off" in page
    fragment = marketer.post(f"{base}/preview", headers={"HX-Request": "true"}, data={
        "csrf_token": token, "try-amount": "20000"}).get_data(as_text=True)
    assert "Total: 2 points" in fragment and "(switched off)" in fragment
    assert marketer.post(f"{base}/{rule['id']}/switch",
                         data={"csrf_token": token, "enabled": "maybe"}).status_code == 422
    assert marketer.post(f"{base}/{rule['id']}/switch",
                         data={"enabled": "on"}).status_code in (400, 403)
    assert marketer.post(f"{base}/{rule['id']}/switch",
                         data={"csrf_token": token, "enabled": "on"}).status_code == 303
    assert api.get(f"/api/v1/programs/{program['id']}/rules/{rule['id']}").json["enabled"]


@pytest.mark.parametrize("amount", ["NaN", "sNaN", "Infinity", "-5", "0", "1e999999", "1.234",
                                    "", "x"])
def test_amounts_that_are_no_money_are_refused(api: ApiClient, program: dict[str, Any],
                                               marketer: FlaskClient, amount: str) -> None:
    base = f"/console/programs/{program['id']}/rules"
    token = form_token(marketer.get(base).get_data(as_text=True))
    preview = marketer.post(f"{base}/preview", headers={"HX-Request": "true"},
                            data={"csrf_token": token, "try-amount": amount})
    assert preview.status_code == 422
    rule = marketer.post(base, data={"csrf_token": token, "new-kind": "bonus",
                                     "new-name": "B", "new-points": "1", "new-priority": "0",
                                     "new-min_amount": amount})
    assert rule.status_code == (303 if amount == "" else 422)
