"""The Campaigns page without a browser: the builder's plain post, the htmx count fragment,
bad input (422), CSRF and who may open it."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient, create_card, create_program


def _signed_in(app: Flask, program_ids: list[int]) -> Any:
    make_account(app, "m@example.com", "marketer", programs=program_ids)
    client = app.test_client()
    assert sign_in(client, "m@example.com").status_code == 303
    return client


def _count_in(html: str) -> int:
    match = re.search(r'data-count="(\d+)"', html)
    assert match, html
    return int(match.group(1))


def test_builder_counts_like_the_api(app: Flask, api: ApiClient,
                                     program: dict[str, Any]) -> None:
    create_card(api, program, email="a@example.com", language="en")
    create_card(api, program, email="b@example.com", language="th")
    create_card(api, program, email="c@example.com", language="th")
    client = _signed_in(app, [program["id"]])
    path = f"/console/programs/{program['id']}/campaigns"
    page = client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert _count_in(html) == 3
    assert 'hx-trigger="change, input delay:400ms"' in html
    token = form_token(html)
    posted = client.post(path, data={"csrf_token": token, "languages": ["th"],
                                     "apple_installed": "no"})
    assert posted.status_code == 200
    api_count = api.post(f"/api/v1/programs/{program['id']}/segments/count",
                         json={"languages": ["th"], "apple_installed": False}).json["count"]
    assert _count_in(posted.get_data(as_text=True)) == api_count == 2
    fragment = client.post(path + "/count", data={"csrf_token": token, "languages": ["en"]},
                           headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    text = fragment.get_data(as_text=True)
    assert text.lstrip().startswith('<div id="segment-count"') and _count_in(text) == 1


def test_bad_conditions_answer_422_with_the_form(app: Flask, program: dict[str, Any]) -> None:
    client = _signed_in(app, [program["id"]])
    path = f"/console/programs/{program['id']}/campaigns"
    token = form_token(client.get(path).get_data(as_text=True))
    for data in ({"balance_min": "10", "balance_max": "5"}, {"balance_min": "lots"},
                 {"joined_from": "2026-02-01", "joined_until": "2026-01-01"},
                 {"languages": ["fr"]}, {"tier_ids": ["999999"]}, {"birthday_month": "13"}):
        response = client.post(path, data={"csrf_token": token, **data})
        assert response.status_code == 422, data
        assert "data-count" not in response.get_data(as_text=True)
        assert 'aria-invalid="true"' in response.get_data(as_text=True) \
            or 'class="errors"' in response.get_data(as_text=True)
        fragment = client.post(path + "/count", data={"csrf_token": token, **data})
        assert fragment.status_code == 200 and "data-count" not in \
            fragment.get_data(as_text=True)


def test_csrf_and_reach(app: Flask, api: ApiClient, program: dict[str, Any]) -> None:
    other = create_program(api, slug="other", name="Other")
    client = _signed_in(app, [program["id"]])
    path = f"/console/programs/{program['id']}/campaigns"
    assert client.post(path, data={"languages": ["en"]}).status_code in (400, 422)
    assert client.post(path + "/count", data={}).status_code in (400, 422)
    assert client.get(f"/console/programs/{other['id']}/campaigns").status_code == 404
    assert client.post(f"/console/programs/{other['id']}/campaigns/count",
                       data={"csrf_token": form_token(client.get(path).get_data(
                           as_text=True))}).status_code == 404
    make_account(app, "s@example.com", "staff")
    staff = app.test_client()
    sign_in(staff, "s@example.com")
    assert staff.get(path).status_code in (302, 303, 403)


def test_create_and_send_without_javascript(app: Flask, api: ApiClient,
                                            program: dict[str, Any]) -> None:
    from tests.factories import settle

    for i in range(3):
        create_card(api, program, email=f"n{i}@example.com", language="th" if i else "en")
    client = _signed_in(app, [program["id"]])
    path = f"/console/programs/{program['id']}/campaigns"
    token = form_token(client.get(path).get_data(as_text=True))
    missing = client.post(path + "/new", data={"csrf_token": token, "name": "",
                                                "holdout_percent": "0"})
    assert missing.status_code == 422
    assert missing.get_data(as_text=True).count('aria-invalid="true"') >= 2  # name, message
    too_many = client.post(path + "/new", data={"csrf_token": token, "name": "x",
                                                 "holdout_percent": "60", "lock_en": "Hi"})
    assert too_many.status_code == 422
    created = client.post(path + "/new", data={
        "csrf_token": token, "name": "Songkran", "languages": ["th"], "holdout_percent": "0",
        "lock_th": "สุขสันต์วันสงกรานต์", "bonus_points": "15"})
    assert created.status_code == 303
    page = client.get(created.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-dry="would_receive">2<' in html
    send = re.search(r'action="([^"]+/send)"', html)
    assert send
    assert client.post(send.group(1), data={"csrf_token": token}).status_code == 303
    settle(app)
    html = client.get(created.headers["Location"]).get_data(as_text=True)
    assert 'data-status="sent"' in html
    campaign_id = int(created.headers["Location"].rstrip("/").split("/")[-1])
    got = api.get(f"/api/v1/programs/{program['id']}/campaigns/{campaign_id}").json
    assert got["sent_total"] == 2 and got["bonus_points"] == 15
    assert got["messages"] == {"th": {"lock_screen": "สุขสันต์วันสงกรานต์"}}
    # Cancelling a sent campaign changes nothing.
    cancel = client.post(f"{path}/{campaign_id}/cancel", data={"csrf_token": token})
    assert cancel.status_code == 303
    assert api.get(f"/api/v1/programs/{program['id']}/campaigns/{campaign_id}").json[
        "status"] == "sent"
