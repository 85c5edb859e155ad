"""Editing a campaign in the console without a browser (both databases): the builder filled
with the campaign, saved through the service (audited campaign.update) and seen in the dry
run; 409 once sent, 422 for bad input, CSRF, another program's campaign 404."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from sqlalchemy import select

from app.audit import AuditEvent
from app.extensions import db
from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient, create_card, create_program, settle


def _signed_in(app: Flask, program_ids: list[int]) -> Any:
    make_account(app, "m@example.com", "marketer", programs=program_ids)
    client = app.test_client()
    assert sign_in(client, "m@example.com").status_code == 303
    return client


def _campaign(api: ApiClient, program: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/v1/programs/{program['id']}/campaigns", json={
        "name": "Rainy day", "messages": {"en": {"lock_screen": "Double points"}}, **body})
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def _fields(html: str) -> dict[str, Any]:
    """The filled form's values as a browser would post them (inputs, checked boxes,
    selected options, text areas)."""
    data: dict[str, Any] = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        if not name:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        kind = re.search(r'type="([^"]+)"', tag)
        if kind and kind.group(1) == "checkbox":
            if " checked" in tag:
                data.setdefault(name.group(1), []).append(value.group(1) if value else "on")
            continue
        data[name.group(1)] = value.group(1) if value else ""
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option selected value="([^"]*)"|<option value="([^"]*)" selected',
                           body)
        data[name] = next(v for v in chosen.groups() if v is not None) if chosen else ""
    for name, body in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', html,
                                 re.S):
        data[name] = body.strip()
    return data


def test_edit_a_draft_changes_its_dry_run(app: Flask, api: ApiClient,
                                          program: dict[str, Any]) -> None:
    for i in range(5):
        create_card(api, program, email=f"m{i}@example.com", language="th" if i < 2 else "en")
    campaign = _campaign(api, program, segment={"languages": ["en"]}, bonus_points=5,
                         holdout_percent=0)
    client = _signed_in(app, [program["id"]])
    page_path = f"/console/programs/{program['id']}/campaigns/{campaign['id']}"
    page = client.get(page_path).get_data(as_text=True)
    assert 'data-dry="recipients">3<' in page
    assert f'href="{page_path}/edit"' in page
    assert 'aria-current="page">Campaigns</a>' in page  # the section, on its own page
    edit = client.get(page_path + "/edit")
    assert edit.status_code == 200
    html = edit.get_data(as_text=True)
    assert 'aria-current="page">Campaigns</a>' in html
    assert 'data-count="3"' in html  # the live count starts at the campaign's segment
    fields = _fields(html)
    assert fields["name"] == "Rainy day" and fields["languages"] == ["en"]
    assert fields["lock_en"] == "Double points" and fields["bonus_points"] == "5"
    # A plain "Count" re-renders the page with the new count, changing nothing.
    counted = client.post(page_path + "/edit", data={**fields, "languages": ["th"],
                                                     "count": "1"})
    assert counted.status_code == 200 and 'data-count="2"' in counted.get_data(as_text=True)
    saved = client.post(page_path + "/edit", data={
        **fields, "languages": ["th"], "lock_en": "", "lock_th": "แต้มสองเท่า",
        "name": "Rainy day (Thai)"})
    assert saved.status_code == 303 and saved.headers["Location"].endswith(page_path)
    page = client.get(page_path).get_data(as_text=True)
    assert 'data-dry="recipients">2<' in page and "แต้มสองเท่า" in page
    got = api.get(f"/api/v1/programs/{program['id']}/campaigns/{campaign['id']}").json
    assert got["name"] == "Rainy day (Thai)" and got["segment"] == {"languages": ["th"]}
    assert got["messages"] == {"th": {"lock_screen": "แต้มสองเท่า"}}
    assert got["bonus_points"] == 5
    with app.app_context():
        last = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert last is not None and last.action == "campaign.update"
        assert last.target == f"campaign:{campaign['id']}"
        assert {"name", "segment", "messages"} <= set(last.details["fields"])
        db.session.rollback()


def test_a_scheduled_campaign_keeps_its_time_in_the_programs_zone(
        app: Flask, api: ApiClient, program: dict[str, Any]) -> None:
    zone = ZoneInfo(api.get(f"/api/v1/programs/{program['id']}").json["time_zone"])
    when = datetime(2099, 3, 4, 9, 30, tzinfo=zone)
    campaign = _campaign(api, program, scheduled_at=when.isoformat(), holdout_percent=10)
    path = f"/api/v1/programs/{program['id']}/campaigns/{campaign['id']}"
    assert api.post(path + "/send").json["status"] == "scheduled"
    client = _signed_in(app, [program["id"]])
    edit = f"/console/programs/{program['id']}/campaigns/{campaign['id']}/edit"
    fields = _fields(client.get(edit).get_data(as_text=True))
    assert fields["scheduled_at"].startswith("2099-03-04T09:30")
    assert fields["holdout_percent"] == "10"
    assert client.post(edit, data={**fields, "holdout_percent": "20"}).status_code == 303
    got = api.get(path).json
    assert got["status"] == "scheduled" and got["holdout_percent"] == 20
    assert datetime.fromisoformat(got["scheduled_at"]) == when


def test_bad_input_answers_422_with_the_form(app: Flask, api: ApiClient,
                                             program: dict[str, Any]) -> None:
    campaign = _campaign(api, program)
    client = _signed_in(app, [program["id"]])
    path = f"/console/programs/{program['id']}/campaigns/{campaign['id']}/edit"
    fields = _fields(client.get(path).get_data(as_text=True))
    for bad in ({"name": ""}, {"holdout_percent": "60"}, {"lock_en": ""},
                {"balance_min": "10", "balance_max": "5"}, {"tier_ids": ["999999"]}):
        response = client.post(path, data={**fields, **bad})
        assert response.status_code == 422, bad
        assert 'aria-invalid="true"' in response.get_data(as_text=True) \
            or 'class="errors"' in response.get_data(as_text=True), bad
    got = api.get(f"/api/v1/programs/{program['id']}/campaigns/{campaign['id']}").json
    assert got["name"] == "Rainy day" and got["holdout_percent"] == 0


def test_a_sent_campaign_cannot_be_edited(app: Flask, api: ApiClient,
                                          program: dict[str, Any]) -> None:
    create_card(api, program, email="a@example.com")
    campaign = _campaign(api, program)
    client = _signed_in(app, [program["id"]])
    path = f"/console/programs/{program['id']}/campaigns/{campaign['id']}"
    fields = _fields(client.get(path + "/edit").get_data(as_text=True))
    assert api.post(f"/api/v1/programs/{program['id']}/campaigns/{campaign['id']}/send"
                    ).status_code == 202
    settle(app)
    page = client.get(path).get_data(as_text=True)
    assert f'href="{path}/edit"' not in page
    refused = client.post(path + "/edit", data={**fields, "name": "Changed"})
    assert refused.status_code == 409
    assert "it can no longer be edited" in refused.get_data(as_text=True)
    assert client.get(path + "/edit").status_code == 409
    assert api.get(f"/api/v1/programs/{program['id']}/campaigns/{campaign['id']}"
                   ).json["name"] == "Rainy day"


def test_csrf_and_reach(app: Flask, api: ApiClient, program: dict[str, Any]) -> None:
    other = create_program(api, slug="other", name="Other")
    theirs = _campaign(api, other)
    mine = _campaign(api, program)
    client = _signed_in(app, [program["id"]])
    path = f"/console/programs/{program['id']}/campaigns/{mine['id']}/edit"
    html = client.get(path).get_data(as_text=True)
    fields = _fields(html)
    without = {k: v for k, v in fields.items() if k != "csrf_token"}
    assert client.post(path, data={**without, "name": "Forged"}).status_code in (400, 422)
    assert client.post(path, data={**without, "name": "Forged", "csrf_token": "x"}
                       ).status_code in (400, 422)
    assert api.get(f"/api/v1/programs/{program['id']}/campaigns/{mine['id']}"
                   ).json["name"] == "Rainy day"
    # Another program's campaign: 404 under either program's address.
    for pid in (other["id"], program["id"]):
        there = f"/console/programs/{pid}/campaigns/{theirs['id']}/edit"
        assert client.get(there).status_code == 404
        assert client.post(there, data={**fields, "name": "Taken"}).status_code == 404
    assert api.get(f"/api/v1/programs/{other['id']}/campaigns/{theirs['id']}"
                   ).json["name"] == "Rainy day"
    assert form_token(html)


def test_a_sections_link_is_current_on_its_own_pages(app: Flask, api: ApiClient,
                                                     program: dict[str, Any]) -> None:
    card = create_card(api, program, email="a@example.com")
    campaign = _campaign(api, program)
    client = _signed_in(app, [program["id"]])
    base = f"/console/programs/{program['id']}"
    with app.app_context():
        from app.loyalty.models import Card

        member_id = db.session.scalar(select(Card.member_id).where(
            Card.serial_number == card["serial_number"]))
        db.session.rollback()
    reward = api.get(f"/api/v1/programs/{program['id']}/rewards").json["rewards"][0]["id"]
    for path, label in ((f"/campaigns/{campaign['id']}", "Campaigns"),
                        (f"/campaigns/{campaign['id']}/edit", "Campaigns"),
                        (f"/members/{member_id}", "Members"),
                        (f"/rewards/{reward}/retire", "Rewards and tiers"),
                        ("/rewards", "Rewards and tiers")):
        response = client.get(base + path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        nav = html[html.index('class="sections"'):html.index("</nav>", html.index(
            'class="sections"'))]
        assert re.findall(r'aria-current="page">([^<]+)</a>', nav) == [label], path
