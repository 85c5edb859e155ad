"""The Design page through the test client, on SQLite and PostgreSQL: the form and its preview
(built by the pass builders from an unsaved copy), publishing through the API's services with
its progress, artwork uploads, the audit trail, and what is refused (bad input 422, no CSRF
token, low contrast, another program's marketer 404)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.audit import AuditEvent
from app.extensions import db
from app.loyalty.models import Program
from app.outbox.models import PassUpdate, UpdateStatus
from app.timeutil import utcnow
from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient, create_card, create_program, settle
from tests.images import image_bytes


@pytest.fixture
def marketer(app: Flask, program: dict[str, Any]) -> FlaskClient:
    """A browser signed in as the marketer of ``program``."""
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    assert sign_in(client, "m@example.com").status_code == 303
    return client


def _url(program: dict[str, Any], tail: str = "") -> str:
    return f"/console/programs/{program['id']}/design{tail}"


def _fields(client: FlaskClient, program: dict[str, Any]) -> dict[str, str]:
    """The design form's values as the page draws them (as a browser would post them)."""
    html = client.get(_url(program)).get_data(as_text=True)
    form = html[html.index('class="panel stack design-form"'):html.index("</form>",
                                                                            html.index("design-form"))]
    data = dict(re.findall(r'<input[^>]*?name="([^"]+)"[^>]*?value="([^"]*)"', form))
    for name, text in re.findall(r'<textarea[^>]*?name="([^"]+)"[^>]*>\r?\n?([^<]*)</textarea>',
                                 form):
        data[name] = text
    data["csrf_token"] = form_token(html)
    return data


def _events(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))
        db.session.expunge_all()
        return events


def test_the_page_shows_the_stored_design_and_its_passes(
        marketer: FlaskClient, program: dict[str, Any]) -> None:
    page = marketer.get(_url(program))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'value="#1F2937"' in html and 'type="color"' in html
    # The Apple preview is pass.json's: its colours, the logo text, the reward progress.
    assert 'data-background="rgb(31, 41, 55)"' in html
    assert "Kopi Test" in html and "to Coffee" in html
    assert 'src="data:image/png;base64,' in html  # the rendered logo, strip and icon
    assert "hx-post" in html and 'value="preview"' in html
    nav = marketer.get(f"/console/programs/{program['id']}").get_data(as_text=True)
    assert f'href="/console/programs/{program["id"]}/design"' in nav


def test_the_preview_follows_unsaved_values_and_saves_nothing(
        app: Flask, marketer: FlaskClient, program: dict[str, Any]) -> None:
    data = _fields(marketer, program)
    data.update(background_color="#7C2D12", background_color_picker="#7c2d12",
                name="Kopi Baru", description_th="กาแฟดี")
    answer = marketer.post(_url(program, "/preview"), data=data)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "<html" not in html  # a fragment, for htmx to swap in
    assert 'data-background="rgb(124, 45, 18)"' in html
    assert "background=7C2D12" in html  # the preview's stylesheet
    assert '"hexBackgroundColor"' not in html and "#7c2d12" in html  # Google's class
    assert 'id="publish" hx-swap-oob="true"' in html
    # The back of the pass: the terms in the page's language (English, else another's).
    data.update(terms_en="Points expire after a year.")
    back = marketer.post(_url(program, "/preview"), data=data).get_data(as_text=True)
    assert "Points expire after a year." in back and "Back of the pass" in back
    css = marketer.get(_url(program, "/preview.css?background=7C2D12&foreground=FFFFFF"
                                      "&label=D1D5DB"))
    assert css.mimetype == "text/css" and "background:#7C2D12" in css.get_data(as_text=True)
    assert marketer.get(_url(program, "/preview.css?background=red&foreground=FFFFFF"
                                      "&label=D1D5DB")).status_code == 404
    # Without scripts: the Preview button draws the page with the preview.
    data["action"] = "preview"
    page = marketer.post(_url(program), data=data)
    assert page.status_code == 200 and 'data-background="rgb(124, 45, 18)"' in \
        page.get_data(as_text=True)
    with app.app_context():
        stored = db.session.get(Program, program["id"])
        assert (stored.name, stored.background_color, stored.texts) == \
            ("Kopi Test", "#1F2937", None)
        assert db.session.scalar(select(db.func.count()).select_from(PassUpdate)) == 0
    assert _events(app, "program.design") == []


def test_the_picker_counts_unless_the_hex_box_was_edited(
        marketer: FlaskClient, program: dict[str, Any]) -> None:
    data = _fields(marketer, program)
    data.update(background_color_picker="#14532d")  # picker only, as without scripts
    html = marketer.post(_url(program, "/preview"), data=data).get_data(as_text=True)
    assert 'data-background="rgb(20, 83, 45)"' in html
    data.update(background_color="#312E81")  # both: the box was edited, so it wins
    html = marketer.post(_url(program, "/preview"), data=data).get_data(as_text=True)
    assert 'data-background="rgb(49, 46, 129)"' in html


def test_publish_changes_the_design_updates_every_card_and_is_audited(
        app: Flask, api: ApiClient, marketer: FlaskClient, program: dict[str, Any]) -> None:
    for name in ("Ayu", "Budi", "Citra"):
        create_card(api, program, name=name)
    settle(app)
    data = _fields(marketer, program)
    data.update(background_color="#7C2D12", label_color="#FDE68A", points_label="Stars",
                terms_id="Syarat berlaku.", action="publish")
    answer = marketer.post(_url(program), data=data)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    progress_url = answer.headers["Location"]
    assert re.fullmatch(rf"/console/programs/{program['id']}/design/updates/\d+", progress_url)
    settle(app)
    stored = api.get(f"/api/v1/programs/{program['id']}").json
    assert (stored["background_color"], stored["label_color"], stored["points_label"]) == \
        ("#7C2D12", "#FDE68A", "Stars")
    page = marketer.get(progress_url).get_data(as_text=True)
    assert "3 of 3 cards updated" in page and 'hx-trigger="every 1s"' not in page
    part = marketer.get(progress_url + "/progress").get_data(as_text=True)
    assert part.startswith('\n<div id="progress"') or part.lstrip().startswith('<div id="progress"')
    update_id = int(progress_url.rsplit("/", 1)[1])
    # The same update the API follows.
    assert api.get(f"/api/v1/updates/{update_id}").json["cards_done"] == 3
    # The console's publish (earlier ones, if any, are the API's setting up the program).
    event = _events(app, "program.design")[-1]
    assert event.actor.startswith("account:") and event.program_id == program["id"]
    assert event.details == {
        "fields": ["background_color", "label_color", "points_label", "texts"],
        "values": {"background_color": "#7C2D12", "label_color": "#FDE68A",
                   "points_label": "Stars"},
        "languages": ["id"]}
    with app.app_context():
        assert db.session.get(Program, program["id"]).texts == {"id": {"terms": "Syarat berlaku."}}


def test_a_pass_update_while_it_runs_is_polled(
        app: Flask, marketer: FlaskClient, program: dict[str, Any]) -> None:
    with app.app_context():
        pass_update = PassUpdate(program_id=program["id"], requested_by="test")
        db.session.add(pass_update)
        db.session.commit()
        update_id = pass_update.id
    part = marketer.get(_url(program, f"/updates/{update_id}/progress")).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in part and "Updating: 0 of 0" in part
    page = marketer.get(_url(program, f"/updates/{update_id}")).get_data(as_text=True)
    assert ">Refresh</a>" in page  # without scripts: a link that loads it again


def test_the_progress_says_how_long_is_left_at_the_pace_so_far(
        app: Flask, marketer: FlaskClient, program: dict[str, Any]) -> None:
    with app.app_context():
        pass_update = PassUpdate(program_id=program["id"], requested_by="test",
                                 status=UpdateStatus.PUSHING, cards_total=400, cards_done=100,
                                 started_at=utcnow() - timedelta(minutes=10))
        db.session.add(pass_update)
        db.session.commit()
        update_id = pass_update.id
    url = _url(program, f"/updates/{update_id}/progress")
    part = marketer.get(url).get_data(as_text=True)
    assert "About 30 minutes left." in part  # a quarter done in ten minutes
    assert "Sekitar 30 menit lagi." in marketer.get(url + "?lang=id").get_data(as_text=True)
    with app.app_context():
        db.session.get(PassUpdate, update_id).cards_done = 399
        db.session.commit()
    assert "Less than a minute left." in marketer.get(url + "?lang=en").get_data(as_text=True)


@pytest.mark.parametrize("change, field, message", [
    ({"background_color": "blue"}, "background_color", "six hex digits"),
    ({"name": ""}, "name", "Please enter the program"),
    ({"points_label": "x" * 33}, "points_label", "Field cannot be longer than 32"),
    ({"terms_th": "x" * 5001}, "terms_th", "Field cannot be longer than 5000"),
])
def test_bad_input_redraws_the_form_with_its_errors(
        app: Flask, marketer: FlaskClient, program: dict[str, Any], change: dict[str, str],
        field: str, message: str) -> None:
    data = {**_fields(marketer, program), **change, "action": "publish"}
    if field == "background_color":
        data["background_color_picker"] = "#1f2937"
    answer = marketer.post(_url(program), data=data)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert f'id="{field}-errors"' in html and message in html
    fragment = marketer.post(_url(program, "/preview"), data=data).get_data(as_text=True)
    assert "Fix the marked fields" in fragment and "disabled" in fragment
    with app.app_context():
        assert db.session.get(Program, program["id"]).name == "Kopi Test"
    assert _events(app, "program.design") == []


def test_low_contrast_is_named_and_refused(
        app: Flask, marketer: FlaskClient, program: dict[str, Any]) -> None:
    data = _fields(marketer, program)
    data.update(background_color="#FFFFFF", foreground_color="#777777")
    fragment = marketer.post(_url(program, "/preview"), data=data).get_data(as_text=True)
    assert "Text colour on the background: 4.4:1, too low" in fragment
    assert re.search(r'id="publish" hx-swap-oob="true" disabled', fragment)
    answer = marketer.post(_url(program), data={**data, "action": "publish"})
    assert answer.status_code == 422
    assert "fix the contrast before publishing" in answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Program, program["id"]).background_color == "#1F2937"
        assert db.session.scalar(select(db.func.count()).select_from(PassUpdate)) == 0
    assert _events(app, "program.design") == []


def test_posts_without_the_csrf_token_are_refused(
        app: Flask, marketer: FlaskClient, program: dict[str, Any]) -> None:
    data = _fields(marketer, program)
    del data["csrf_token"]
    data["background_color"] = "#7C2D12"
    for tail in ("", "/preview", "/images/logo", "/images/logo/remove"):
        answer = marketer.post(_url(program, tail), data={**data, "action": "publish"})
        assert answer.status_code == 400, tail
    with app.app_context():
        assert db.session.get(Program, program["id"]).background_color == "#1F2937"


def test_another_programs_marketer_gets_404(
        app: Flask, api: ApiClient, marketer: FlaskClient, program: dict[str, Any]) -> None:
    other = create_program(api, name="Teh Lain", slug="teh-lain")
    with app.app_context():
        pass_update = PassUpdate(program_id=other["id"], requested_by="test")
        db.session.add(pass_update)
        db.session.commit()
        update_id = pass_update.id
    token = form_token(marketer.get(_url(program)).get_data(as_text=True))
    assert marketer.get(_url(other)).status_code == 404
    for tail in ("", "/preview", "/images/logo", "/images/logo/remove"):
        answer = marketer.post(_url(other, tail), data={"csrf_token": token,
                                                        "action": "publish", "name": "X"})
        assert answer.status_code == 404, tail
    assert marketer.get(_url(other, f"/updates/{update_id}")).status_code == 404
    assert marketer.get(_url(other, f"/updates/{update_id}/progress")).status_code == 404
    # Its own program's page does not show another program's update either.
    assert marketer.get(_url(program, f"/updates/{update_id}")).status_code == 404


def test_upload_and_remove_artwork(
        app: Flask, api: ApiClient, marketer: FlaskClient, program: dict[str, Any]) -> None:
    token = form_token(marketer.get(_url(program)).get_data(as_text=True))
    logo = image_bytes((400, 200), colour=(200, 30, 30))
    answer = marketer.post(_url(program, "/images/logo"), data={
        "csrf_token": token, "image": (__import__("io").BytesIO(logo), "logo.png", "image/png")},
        content_type="multipart/form-data")
    assert answer.status_code == 303
    image = api.get(f"/api/v1/programs/{program['id']}/images/logo")
    assert image.status_code == 200 and image.mimetype == "image/png"
    html = marketer.get(_url(program)).get_data(as_text=True)
    assert re.search(rf'src="/images/programs/{program["id"]}/logo-[0-9a-f]{{8}}\.png"', html)
    assert "Remove the logo" in html
    [event] = _events(app, "program.image.upload")
    assert event.details == {"kind": "logo"} and event.program_id == program["id"]

    tiny = image_bytes((20, 20))
    refused = marketer.post(_url(program, "/images/icon"), data={
        "csrf_token": token, "image": (__import__("io").BytesIO(tiny), "i.png", "image/png")},
        content_type="multipart/form-data")
    assert refused.status_code == 422
    assert 'id="image-icon-errors"' in refused.get_data(as_text=True)
    assert "too small: at least 87 × 87 pixels" in refused.get_data(as_text=True)
    assert len(_events(app, "program.image.upload")) == 1  # the refused one is not recorded
    gif = marketer.post(_url(program, "/images/icon"), data={
        "csrf_token": token, "image": (__import__("io").BytesIO(b"GIF89a"), "i.gif",
                                       "image/gif")}, content_type="multipart/form-data")
    assert gif.status_code == 422 and "Choose a PNG or JPEG file." in gif.get_data(as_text=True)
    assert marketer.post(_url(program, "/images/banner"),
                         data={"csrf_token": token}).status_code == 404

    assert marketer.post(_url(program, "/images/logo/remove"),
                         data={"csrf_token": token}).status_code == 303
    assert api.get(f"/api/v1/programs/{program['id']}/images/logo").status_code == 404
    [removed] = _events(app, "program.image.remove")
    assert removed.details == {"kind": "logo"}


def test_the_preview_api_matches_the_console(
        api: ApiClient, marketer: FlaskClient, program: dict[str, Any]) -> None:
    url = f"/api/v1/programs/{program['id']}/design/preview"
    answer = api.post(url, json={"background_color": "#7C2D12", "name": "Kopi Baru",
                                 "texts": {"th": {"terms": "ข้อกำหนด"}}})
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["pass_json"]["backgroundColor"] == "rgb(124, 45, 18)"
    assert body["google_class"]["hexBackgroundColor"] == "#7c2d12"
    assert body["google_class"]["programName"] == "Kopi Baru"
    assert body["publishable"] is True
    assert [p["text_field"] for p in body["contrast"]] == ["foreground_color", "label_color"]
    assert api.get(f"/api/v1/programs/{program['id']}").json["name"] == "Kopi Test"
    low = api.post(url, json={"background_color": "#FFFFFF"}).json
    assert low["publishable"] is False and low["contrast"][0]["passes"] is False
    assert api.post(url, json={"background_color": "red"}).status_code == 422
    assert api.post("/api/v1/programs/999/design/preview", json={}).status_code == 404
    spec = json.dumps(api.get("/api/openapi.json").json["paths"])
    assert "/api/v1/programs/{program_id}/design/preview" in spec


def test_terms_from_before_languages_show_as_the_default_languages(
        app: Flask, api: ApiClient, marketer: FlaskClient, program: dict[str, Any]) -> None:
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}",
                       json={"terms": "Old terms."}).status_code == 200
    data = _fields(marketer, program)
    assert data["terms_en"] == "Old terms." and data["terms_th"] == ""
    data.update(name="Kopi Baru", action="publish")
    assert marketer.post(_url(program), data=data).status_code == 303
    api_patch, event = _events(app, "program.design")  # the API's PATCH, then the console's
    assert api_patch.actor.startswith("api_key:") and api_patch.details["fields"] == ["terms"]
    assert event.details["fields"] == ["name"]  # the terms did not change
    unchanged = marketer.post(_url(program), data={**_fields(marketer, program),
                                                   "action": "publish"})
    assert unchanged.status_code == 422
    assert "Nothing has changed" in unchanged.get_data(as_text=True)
