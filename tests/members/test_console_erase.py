"""Erasing a member from the console: admins only, with a confirmation; the page then says
the member was erased and offers nothing more for the card."""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.members import rights
from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient
from tests.members.test_erasure import personal_data_found


def test_admins_erase_a_member_from_the_console(app: Flask, api: ApiClient,
                                                program: dict[str, Any]) -> None:
    joined = api.post(f"/api/v1/programs/{program['id']}/members", json={
        "name": "Putri Wulandari", "email": "putri.w@example.com", "phone": "+62 813 777 4242"})
    url = f"/console/programs/{program['id']}/members/{joined.json['id']}"
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    make_account(app, "admin@example.com", "admin")
    marketer, admin = app.test_client(), app.test_client()
    assert sign_in(marketer, "m@example.com").status_code == 303
    assert sign_in(admin, "admin@example.com").status_code == 303

    # A marketer sees no erase form, and may not post one.
    page = marketer.get(url).get_data(as_text=True)
    assert "Erase personal data" not in page
    refused = marketer.post(f"{url}/erase", data={"csrf_token": form_token(page),
                                                  "confirm_erase": "y"})
    assert refused.status_code == 403
    # An admin must confirm.
    page = admin.get(url).get_data(as_text=True)
    assert "Erase personal data" in page
    token = form_token(page)
    unconfirmed = admin.post(f"{url}/erase", data={"csrf_token": token})
    assert unconfirmed.status_code == 422 and "Please confirm." in unconfirmed.get_data(
        as_text=True)
    assert personal_data_found(app, ("Putri Wulandari", "putri.w@example.com"))
    erased = admin.post(f"{url}/erase", data={"csrf_token": token, "confirm_erase": "y"})
    assert erased.status_code == 303
    assert personal_data_found(app, ("Putri Wulandari", "putri.w@example.com",
                                     "+62 813 777 4242")) == []
    page = admin.get(url).get_data(as_text=True)
    assert rights.PSEUDONYM in page and 'id="erased"' in page
    for gone in ("Erase personal data", "Adjust points", "Void the card",
                 "Send the card link again"):
        assert gone not in page
    # A second click (an old tab) changes nothing and says so as the first.
    again = admin.post(f"{url}/erase", data={"csrf_token": token, "confirm_erase": "y"})
    assert again.status_code == 303
    trail = api.get(f"/api/v1/audit?program_id={program['id']}").json
    events = trail["events"] if isinstance(trail, dict) else trail
    erasures = [e for e in events if e["action"] == "member.erase"]
    assert len(erasures) == 1 and erasures[0]["actor"].startswith("account:")
