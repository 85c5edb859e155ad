"""Console accounts over the API (admin keys): list, invite (the link in the answer only when
it was not e-mailed), change, reset links, sign-out everywhere; problem details for errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.audit import AuditEvent
from app.extensions import db
from tests.console.conftest import make_account, sign_in
from tests.factories import ApiClient, admin_api, make_app
from tests.smtp_server import SMTPTestServer, link_in


def test_invite_list_change_and_sign_out_through_the_api(
        app: Flask, api: ApiClient, keys: dict[str, str], program: dict[str, Any]) -> None:
    answer = api.post("/api/v1/accounts", json={
        "email": "nok@example.com", "role": "marketer", "program_ids": [program["id"]],
        "name": "Nok", "language": "th"})
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["account"]["invitation_pending"] is True
    assert body["account"]["program_ids"] == [program["id"]]
    assert body["invitation"]["mailed"] is False
    assert body["invitation"]["expires_in_seconds"] == 72 * 3600
    link = body["invitation"]["link"]
    assert link.startswith("https://pointpass.test/console/welcome/")
    account_id = body["account"]["id"]

    listed = api.get("/api/v1/accounts").get_json()["accounts"]
    assert [a["email"] for a in listed] == ["nok@example.com"]
    assert "password" not in str(listed)

    duplicate = api.post("/api/v1/accounts", json={"email": "NOK@example.com",
                                                   "role": "admin"})
    assert duplicate.status_code == 409
    assert duplicate.content_type == "application/problem+json"
    for bad in ({"email": "not an address", "role": "admin"},
                {"email": "x@example.com", "role": "owner"},
                {"email": "x@example.com", "role": "admin", "password": "secret"}):
        refused = api.post("/api/v1/accounts", json=bad)
        assert refused.status_code == 422, bad
    assert api.post("/api/v1/accounts", json={"email": "y@example.com", "role": "marketer",
                                              "program_ids": [99999]}).status_code == 404

    changed = api.request("PATCH", f"/api/v1/accounts/{account_id}",
                          json={"role": "admin", "name": "Nok S."})
    assert changed.status_code == 200
    assert changed.get_json()["role"] == "admin" and changed.get_json()["name"] == "Nok S."
    assert api.request("PATCH", f"/api/v1/accounts/{account_id}", json={}).status_code == 422
    assert api.request("PATCH", "/api/v1/accounts/99999",
                       json={"active": False}).status_code == 404

    reset = api.post(f"/api/v1/accounts/{account_id}/reset-link")
    assert reset.status_code == 201
    assert reset.get_json()["link"].startswith("https://pointpass.test/console/reset/")
    again = api.post(f"/api/v1/accounts/{account_id}/invitation")
    assert again.status_code == 201 and again.get_json()["link"] != link
    assert app.test_client().get(link.removeprefix("https://pointpass.test")).status_code == 410

    marketer_id = make_account(app, "m@example.com", "marketer")
    browser = app.test_client()
    sign_in(browser, "m@example.com")
    assert api.post(f"/api/v1/accounts/{marketer_id}/sign-out-everywhere").status_code == 204
    assert browser.get("/console").status_code == 303
    assert api.post("/api/v1/accounts/99999/sign-out-everywhere").status_code == 404

    for key in ("marketer", "staff", "pos"):
        assert api.as_(keys[key]).get("/api/v1/accounts").status_code == 403
    with app.app_context():
        recorded = list(db.session.scalars(db.select(AuditEvent.action)))
        events = list(db.session.scalars(db.select(AuditEvent)))
    assert {"account.invite", "account.update", "account.reset-link",
            "account.invite-again", "account.sign-out-everywhere"} <= set(recorded)
    assert all(e.actor.startswith("api_key:") for e in events
               if e.action.startswith("account.") and e.action != "account.create")
    paths = api.get("/api/openapi.json").get_json()["paths"]
    for path in ("/api/v1/accounts", "/api/v1/accounts/{account_id}",
                 "/api/v1/accounts/{account_id}/reset-link",
                 "/api/v1/accounts/{account_id}/sign-out-everywhere"):
        assert path in paths


@pytest.fixture
def smtp(free_port: Callable[[], int]) -> Iterator[SMTPTestServer]:
    server = SMTPTestServer(free_port()).start()
    yield server
    server.stop()


def test_a_mailed_invitation_leaves_the_link_out_of_the_answer(
        database: Any, tmp_path: Path, smtp: SMTPTestServer) -> None:
    for app in make_app(database, tmp_path, SMTP_URL=smtp.url):
        answer = admin_api(app).post("/api/v1/accounts", json={"email": "nok@example.com",
                                                               "role": "admin"})
        assert answer.status_code == 201
        assert answer.get_json()["invitation"] == {"mailed": True, "link": None,
                                                   "expires_in_seconds": 72 * 3600}
        [message] = smtp.inbox.to("nok@example.com")
        assert "/console/welcome/" in link_in(message)
