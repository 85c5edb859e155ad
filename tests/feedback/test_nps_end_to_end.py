"""The NPS flow end to end (issue 18's "Must show"): a redemption at a location, for a card on
an iPhone, makes an invitation; the APNs test server gets the push; the pass the phone fetches
through the PassKit web service has the link on its back; the page records a 9; the NPS
counts it (the dashboard's figure, app.analytics.stats, and the console's); a second answer
to the same invitation is refused, and the pass drops the link."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from flask import Flask

from app import timeutil
from app.analytics import stats
from app.extensions import db
from app.feedback import service
from app.loyalty.models import Program
from tests.apns_server import APNsTestServer
from tests.factories import (
    admin_api,
    card_code,
    create_api_key,
    create_card,
    create_program,
    register_device,
    settle,
)
from tests.feedback.conftest import add_location, ask_for_feedback, form_token


def _stats_nps(app: Flask, program_id: int) -> dict[str, Any]:
    """The dashboard's NPS (app.analytics.stats), over its default range (the last 30 days)."""
    with app.app_context():
        program = db.session.get(Program, program_id)
        assert program is not None
        start, end = stats.default_range(program, timeutil.now())
        figures = stats.compute(program, start, end)["figures"]
        db.session.rollback()
    return {"nps": figures["nps"]["value"], "responses": figures["nps_responses"]["value"]}


def _back(pass_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["key"]: f for f in pass_json["storeCard"]["backFields"]}


def test_a_redemption_invites_the_member_and_the_answer_moves_the_nps(
        push_app: Flask, apns: APNsTestServer) -> None:
    api = admin_api(push_app)
    program = create_program(api)
    ask_for_feedback(api, program, every_days=30, lock_screen=True)
    kemang = add_location(api, program, "Kemang")
    reward = api.post(f"/api/v1/programs/{program['id']}/rewards",
                      json={"name": "Es Kopi Susu", "points_cost": 30}).json
    serial = create_card(api, program, name="Ayu", language="id")["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 50}).status_code == 201
    settle(push_app)
    phone = register_device(push_app, serial)
    assert phone.changed() == [serial]
    assert "feedback" not in _back(phone.fetch(serial))  # an earn away from a shop: no link
    settle(push_app)
    apns.reset()

    # The redemption at the till in Kemang.
    staff = api.as_(create_api_key(push_app, "staff"))
    scan = staff.post("/api/v1/scans", json={"code": card_code(push_app, serial)})
    assert scan.status_code == 200, scan.json
    redeemed = staff.post("/api/v1/redemptions", json={
        "scan_id": scan.json["scan_id"], "reward_id": reward["id"], "location_id": kemang},
        headers={"Idempotency-Key": "till-tap-1"})
    assert redeemed.status_code == 201, redeemed.json
    settle(push_app)

    assert len(apns.requests_for(phone.token)) == 1  # the phone is told
    assert phone.changed() == [serial]
    pass_json = phone.fetch(serial)
    field = _back(pass_json)["feedback"]
    assert field["label"] == "feedback_label" and field["changeMessage"] == "feedback_change"
    assert pass_json["storeCard"]["headerFields"][0]["value"] == 20
    match = re.fullmatch(r"https://pointpass\.test(/feedback/([A-Za-z0-9_-]+))", field["value"])
    assert match, field["value"]
    path, token = match.groups()

    assert _stats_nps(push_app, program["id"]) == {"nps": None, "responses": 0}

    # The member opens the link and answers 9.
    browser = push_app.test_client()
    page = browser.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<html lang="id">' in html and "Kemang" in html
    sent = browser.post(path, data={"csrf_token": form_token(html), "score": "9",
                                    "comment": "Ramah sekali"})
    assert sent.status_code == 303

    with push_app.app_context():
        now = timeutil.now()
        figure = service.nps(program["id"], now - timedelta(days=30), now + timedelta(seconds=1))
        assert (figure.answers, figure.promoters, figure.detractors) == (1, 1, 0)
        assert figure.score == 100
        at_kemang = service.nps(program["id"], now - timedelta(days=30),
                                now + timedelta(seconds=1), kemang)
        assert at_kemang.answers == 1
    assert _stats_nps(push_app, program["id"]) == {"nps": 100, "responses": 1}

    # A second answer to the same invitation is refused, as a page and by the service.
    again = browser.post(path, data={"csrf_token": form_token(html), "score": "0"})
    assert again.status_code == 409 and 'data-state="answered"' in again.get_data(as_text=True)
    with push_app.app_context():
        try:
            service.answer(token, 0)
        except service.AlreadyAnswered as refused:
            assert refused.status == 409
        else:
            raise AssertionError("a second answer was taken")
        now = timeutil.now()
        assert service.nps(program["id"], now - timedelta(days=30),
                           now + timedelta(seconds=1)).score == 100  # unchanged
    assert _stats_nps(push_app, program["id"]) == {"nps": 100, "responses": 1}

    # The answer told the phone again: the pass no longer links to the page.
    settle(push_app)
    assert len(apns.requests_for(phone.token)) == 2
    assert phone.changed() == [serial]
    assert "feedback" not in _back(phone.fetch(serial))
