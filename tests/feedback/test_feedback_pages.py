"""The feedback page, /feedback/<token>: the question in the member's language, CSRF as the
other member forms, one answer recorded (then a thanks page), and pages, not JSON, for an
invitation answered already (409), expired (410) or unknown (404), and for a bad answer
(422) or a stale form (400)."""

from __future__ import annotations

from typing import Any

import pytest

from app.feedback import service
from tests.clock import FakeClock
from tests.factories import ApiClient, make_app
from tests.feedback.conftest import (
    DAY,
    add_location,
    ask_for_feedback,
    earn,
    form_token,
    invitations,
)


def _invited(app: Any, api: ApiClient, program: dict, card: dict) -> str:
    ask_for_feedback(api, program)
    earn(api, card["serial_number"], add_location(api, program, "Kemang Raya"))
    [invitation] = invitations(app, card["serial_number"])
    return invitation.token


def _page(client: Any, token: str, **kwargs: Any) -> tuple[Any, str]:
    response = client.get(f"/feedback/{token}", **kwargs)
    return response, response.get_data(as_text=True)


def _is_page(response: Any) -> None:
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"


def test_the_question_in_the_members_language(app: Any, api: ApiClient, program: dict,
                                              card: dict) -> None:
    token = _invited(app, api, program, card)  # the card's member speaks Indonesian
    client = app.test_client()
    response, html = _page(client, token)
    assert response.status_code == 200
    _is_page(response)
    assert '<html lang="id">' in html
    assert "Kemang Raya" in html  # where the visit was
    assert html.count('type="radio"') == 11 and 'name="score"' in html
    assert "<fieldset" in html and "<legend>" in html
    assert 'maxlength="1000"' in html and "<script" not in html
    # ?lang= (the language links) wins, as on the card page, and is kept in a cookie.
    response, html = _page(client, token, query_string={"lang": "th"})
    assert '<html lang="th">' in html
    assert '<html lang="th">' in _page(client, token)[1]


def test_an_answer_is_recorded_once_then_thanks(app: Any, api: ApiClient, program: dict,
                                                card: dict) -> None:
    token = _invited(app, api, program, card)
    client = app.test_client()
    _, html = _page(client, token, query_string={"lang": "ms"})
    sent = client.post(f"/feedback/{token}", data={
        "csrf_token": form_token(html), "score": "9", "comment": "Sedap!"})
    assert sent.status_code == 303
    assert sent.headers["Location"].endswith(f"/feedback/{token}/thanks")
    thanks = client.get(f"/feedback/{token}/thanks")
    assert thanks.status_code == 200 and 'data-state="thanks"' in thanks.get_data(as_text=True)
    [stored] = invitations(app, card["serial_number"])
    assert (stored.score, stored.comment, stored.language) == (9, "Sedap!", "ms")

    again = client.post(f"/feedback/{token}", data={
        "csrf_token": form_token(html), "score": "1", "comment": "no"})
    assert again.status_code == 409
    _is_page(again)
    assert 'data-state="answered"' in again.get_data(as_text=True)
    assert client.get(f"/feedback/{token}").status_code == 409
    assert invitations(app, card["serial_number"])[0].score == 9  # unchanged


def test_thanks_before_an_answer_leads_to_the_question(app: Any, api: ApiClient,
                                                       program: dict, card: dict) -> None:
    token = _invited(app, api, program, card)
    response = app.test_client().get(f"/feedback/{token}/thanks")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/feedback/{token}")


def test_an_expired_invitation_says_so(app: Any, api: ApiClient, program: dict, card: dict,
                                       clock: FakeClock) -> None:
    token = _invited(app, api, program, card)
    client = app.test_client()
    _, html = _page(client, token)
    clock.advance(service.INVITATION_DAYS * DAY + 60)
    response, page = _page(client, token)
    assert response.status_code == 410 and 'data-state="expired"' in page
    _is_page(response)
    posted = client.post(f"/feedback/{token}", data={"csrf_token": form_token(html),
                                                     "score": "8"})
    assert posted.status_code == 410
    assert invitations(app, card["serial_number"])[0].answered_at is None


@pytest.mark.parametrize("path", ["/feedback/no-such-token", "/feedback/no-such-token/thanks",
                                  "/feedback/" + "x" * 300])
def test_an_unknown_invitation_is_a_404_page(app: Any, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 404
    _is_page(response)
    posted = app.test_client().post(path.removesuffix("/thanks"), data={"score": "9"})
    assert posted.status_code in (400, 404) and posted.mimetype == "text/html"


@pytest.mark.parametrize("fields", [
    {"score": "11"}, {"score": "-1"}, {"score": "7.5"}, {"score": "abc"}, {"score": ""}, {},
    {"score": "٣"},  # an Arabic-Indic digit: not a score here
    {"score": "9", "comment": "x" * 1001}, {"score": "9", "comment": "ok\u202e"},
])
def test_a_bad_answer_shows_the_form_again_with_422(app: Any, api: ApiClient, program: dict,
                                                    card: dict, fields: dict) -> None:
    token = _invited(app, api, program, card)
    client = app.test_client()
    _, html = _page(client, token)
    response = client.post(f"/feedback/{token}", data={"csrf_token": form_token(html), **fields})
    assert response.status_code == 422
    _is_page(response)
    page = response.get_data(as_text=True)
    assert 'aria-invalid="true"' in page and 'class="errors"' in page
    assert invitations(app, card["serial_number"])[0].answered_at is None


def test_a_post_without_its_csrf_token_shows_the_form_again(app: Any, api: ApiClient,
                                                            program: dict, card: dict) -> None:
    token = _invited(app, api, program, card)
    client = app.test_client()
    response = client.post(f"/feedback/{token}", data={"score": "9", "comment": "kept"})
    assert response.status_code == 400
    _is_page(response)
    page = response.get_data(as_text=True)
    assert 'class="form-errors"' in page and "kept" in page  # what they wrote stays
    assert invitations(app, card["serial_number"])[0].answered_at is None
    json_body = client.post(f"/feedback/{token}", json={"score": 9})
    assert json_body.status_code == 400 and json_body.mimetype == "text/html"


def test_answers_are_rate_limited_per_address(database: Any, tmp_path: Any) -> None:
    from tests.factories import admin_api, create_card, create_program

    for limited in make_app(database, tmp_path, FEEDBACK_RATE_LIMIT="2/minute"):
        api = admin_api(limited)
        program = create_program(api)
        card = create_card(api, program, language="th")
        token = _invited(limited, api, program, card)
        client = limited.test_client()
        csrf = form_token(_page(client, token)[1])
        for _ in range(2):
            assert client.post(f"/feedback/{token}", data={
                "csrf_token": csrf, "score": "x"}).status_code == 422
        blocked = client.post(f"/feedback/{token}", data={"csrf_token": csrf, "score": "9"})
        assert blocked.status_code == 429 and "Retry-After" in blocked.headers
        _is_page(blocked)
        assert client.get(f"/feedback/{token}").status_code == 200  # reading is not limited
