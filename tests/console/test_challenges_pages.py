"""The "Challenges" page through Flask's test client (SQLite and PostgreSQL): each form
changes what the API then shows, bad input is 422 with the form again and writes nothing, a
post without the CSRF token is refused, another program's challenges are 404."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.audit import AuditEvent
from app.extensions import db
from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient, create_program

NEW = {"new-kind": "visits", "new-name": "5 visits in 30 days", "new-target": "5",
       "new-window_days": "30", "new-bonus_points": "50", "new-name_th": "มา 5 ครั้ง"}


@pytest.fixture
def marketer(app: Flask, program: dict[str, Any]) -> FlaskClient:
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    assert sign_in(client, "m@example.com").status_code == 303
    return client


def page(client: FlaskClient, program: dict[str, Any]) -> tuple[str, str]:
    response = client.get(f"/console/programs/{program['id']}/challenges")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return html, form_token(html)


def listed(api: ApiClient, program: dict[str, Any]) -> list[dict[str, Any]]:
    return api.get(f"/api/v1/programs/{program['id']}/challenges").json[  # type: ignore[no-any-return]
        "challenges"]


def test_add_edit_and_retire_a_challenge(app: Flask, api: ApiClient, program: dict[str, Any],
                                         marketer: FlaskClient) -> None:
    base = f"/console/programs/{program['id']}/challenges"
    html, token = page(marketer, program)
    assert "No challenges yet." in html
    # The section is in the navigation, right after rewards.
    links = [f">{name}</a>" for name in ("Rewards and tiers", "Challenges", "Earning rules")]
    assert html.index(links[0]) < html.index(links[1]) < html.index(links[2])
    response = marketer.post(base, data={"csrf_token": token, **NEW})
    assert response.status_code == 303
    [made] = listed(api, program)
    assert (made["kind"], made["name"], made["target"], made["window_days"],
            made["bonus_points"], made["texts"]) == (
        "visits", "5 visits in 30 days", 5, 30, 50, {"th": "มา 5 ครั้ง"})
    cid = made["id"]
    html, _ = page(marketer, program)
    assert f'id="challenge-{cid}"' in html and "earned by 0 members" in html

    # Edit: no window, no bonus, another target; the kind stays.
    response = marketer.post(f"{base}/{cid}", data={
        "csrf_token": token, f"challenge-{cid}-name": "Regular",
        f"challenge-{cid}-target": "8", f"challenge-{cid}-window_days": "",
        f"challenge-{cid}-bonus_points": "", f"challenge-{cid}-kind": "locations"})
    assert response.status_code == 303
    [edited] = listed(api, program)
    assert (edited["kind"], edited["name"], edited["target"], edited["window_days"],
            edited["bonus_points"], edited["texts"]) == ("visits", "Regular", 8, None, None,
                                                         None)
    # Retire: a confirmation first, then the post.
    confirm = marketer.get(f"{base}/{cid}/retire")
    assert confirm.status_code == 200 and "Retire Regular?" in confirm.get_data(as_text=True)
    assert marketer.post(f"{base}/{cid}/retire", data={"csrf_token": token}).status_code == 303
    assert listed(api, program)[0]["retired_at"] is not None
    html, _ = page(marketer, program)
    assert "Regular" in html[html.index('id="retired"'):]
    # A retired challenge cannot be edited or retired again.
    assert marketer.post(f"{base}/{cid}/retire", data={"csrf_token": token}).status_code == 409
    assert marketer.post(f"{base}/{cid}", data={
        "csrf_token": token, f"challenge-{cid}-name": "X",
        f"challenge-{cid}-target": "2"}).status_code == 409
    with app.app_context():
        actions = db.session.execute(select(AuditEvent.action, AuditEvent.actor_name).where(
            AuditEvent.program_id == program["id"], AuditEvent.action.like("challenge.%"))
            .order_by(AuditEvent.id)).all()
        db.session.rollback()
    assert [tuple(a) for a in actions] == [
        ("challenge.create", "m@example.com"), ("challenge.update", "m@example.com"),
        ("challenge.retire", "m@example.com")]


@pytest.mark.parametrize(("fields", "message"), [
    ({"new-name": ""}, "Please enter a name."),
    ({"new-target": "0"}, "Number must be between 1 and 1000."),
    ({"new-target": "five"}, "Not a valid integer value."),
    ({"new-window_days": "3661"}, "Number must be between 1 and 3660."),
    ({"new-bonus_points": "0"}, "Number must be between 1 and"),
    ({"new-kind": "purchases"}, "Not a valid choice"),
    ({"new-name_id": "x" * 121}, "Field cannot be longer than 120 characters."),
    ({"new-name": "Ca\u202eke"}, "invisible characters"),
])
def test_bad_input_shows_the_form_again(api: ApiClient, program: dict[str, Any],
                                        marketer: FlaskClient, fields: dict[str, str],
                                        message: str) -> None:
    _, token = page(marketer, program)
    response = marketer.post(f"/console/programs/{program['id']}/challenges",
                             data={"csrf_token": token, **NEW, **fields})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html and 'aria-invalid="true"' in html
    assert listed(api, program) == []


def test_posts_without_the_csrf_token_are_refused(api: ApiClient, program: dict[str, Any],
                                                  marketer: FlaskClient) -> None:
    base = f"/console/programs/{program['id']}/challenges"
    made = api.post(base.replace("/console", "/api/v1"), json={
        "kind": "visits", "name": "Twice", "target": 2}).json
    for path, data in [(base, NEW),
                       (f"{base}/{made['id']}", {f"challenge-{made['id']}-name": "X",
                                                 f"challenge-{made['id']}-target": "3"}),
                       (f"{base}/{made['id']}/retire", {})]:
        assert marketer.post(path, data=data).status_code in (400, 403), path
    assert listed(api, program) == [made]


def test_another_programs_challenges_are_out_of_reach(app: Flask, api: ApiClient,
                                                      program: dict[str, Any],
                                                      marketer: FlaskClient) -> None:
    other = create_program(api, name="Teh", slug="teh")
    theirs = api.post(f"/api/v1/programs/{other['id']}/challenges", json={
        "kind": "visits", "name": "Twice", "target": 2}).json
    assert marketer.get(f"/console/programs/{other['id']}/challenges").status_code == 404
    _, token = page(marketer, program)
    base = f"/console/programs/{program['id']}/challenges/{theirs['id']}"
    assert marketer.get(f"{base}/retire").status_code == 404
    assert marketer.post(f"{base}/retire", data={"csrf_token": token}).status_code == 404
    assert marketer.post(base, data={"csrf_token": token, f"challenge-{theirs['id']}-name": "X",
                                     f"challenge-{theirs['id']}-target": "3"}).status_code == 404
    assert listed(api, other) == [theirs]
