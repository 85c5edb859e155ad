"""Accounts in the console: invitations and password resets with one-time links (e-mailed
through a real local SMTP server, or shown to copy), an account's page, one's own account,
the forgotten-password page. On SQLite and PostgreSQL, through the pages as a browser posts
them."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.accounts import links
from app.accounts.models import Account, AccountToken, TokenPurpose
from app.audit import AuditEvent
from app.extensions import db
from tests.clock import FakeClock
from tests.console.conftest import PASSWORD, form_token, make_account, sign_in
from tests.factories import ApiClient, admin_api, create_program, make_app, settle
from tests.smtp_server import SMTPTestServer, link_in

NEW_PASSWORD = "a brand new passphrase"
START = 1_900_000_000.0


@pytest.fixture
def smtp(free_port: Callable[[], int]) -> Iterator[SMTPTestServer]:
    server = SMTPTestServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def mail_app(database: Any, tmp_path: Path, smtp: SMTPTestServer,
             clock: FakeClock) -> Iterator[Flask]:
    """The app sending e-mail to the local SMTP server, on a fake clock."""
    yield from make_app(database, tmp_path, SMTP_URL=smtp.url, CLOCK=clock)


@pytest.fixture
def clock_app(database: Any, tmp_path: Path, clock: FakeClock) -> Iterator[Flask]:
    """The app without e-mail, on a fake clock."""
    yield from make_app(database, tmp_path, CLOCK=clock)


def signed_in_admin(app: Flask) -> FlaskClient:
    make_account(app, "admin@example.com", "admin")
    client = app.test_client()
    assert sign_in(client, "admin@example.com").status_code == 303
    return client


def post_form(client: FlaskClient, page: str, data: dict[str, Any],
              action: str | None = None) -> Any:
    """Post ``data`` to ``action`` (``page`` itself by default) with ``page``'s CSRF token."""
    token = form_token(client.get(page).get_data(as_text=True))
    return client.post(action or page, data={"csrf_token": token, **data})


def invite(client: FlaskClient, email: str, **extra: Any) -> Any:
    return post_form(client, "/console/accounts",
                     {"email": email, "role": "marketer", "language": "en", **extra})


def shown_link(answer: Any) -> str:
    match = re.search(r'id="made-link" class="copy-source" type="text" readonly value="([^"]+)"',
                      answer.get_data(as_text=True))
    assert match, answer.get_data(as_text=True)
    return match.group(1)


def path_of(link: str) -> str:
    assert link.startswith("https://pointpass.test/console/")
    return link.removeprefix("https://pointpass.test")


def accept(client: FlaskClient, link: str, password: str = NEW_PASSWORD) -> Any:
    return post_form(client, path_of(link), {"password": password, "repeat": password})


def actions(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent.action).order_by(AuditEvent.id)))


def test_an_invitation_is_e_mailed_and_its_link_signs_the_invitee_in_once(
        mail_app: Flask, smtp: SMTPTestServer) -> None:
    program = create_program(admin_api(mail_app))
    admin = signed_in_admin(mail_app)
    answer = invite(admin, "Nok@Example.com", name="Nok", program_ids=str(program["id"]))
    assert answer.status_code == 303, answer.get_data(as_text=True)  # sent: no link shown
    page = admin.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Invitation sent to Nok@Example.com" in page
    assert "/console/welcome/" not in page
    [message] = smtp.inbox.to("Nok@Example.com")
    assert message["Subject"] == "Your invitation to the Pointpass console"
    link = link_in(message)
    with mail_app.app_context():
        account = db.session.scalar(db.select(Account).where(Account.email == "Nok@Example.com"))
        assert account.password_hash is None and [p.id for p in account.programs] == \
            [program["id"]]
        token = db.session.scalar(db.select(AccountToken))
        secret = link.rsplit("/", 1)[1]
        assert len(secret) >= 43 and secret not in token.token_hash
        assert token.token_hash == links.token_hash(secret)
        assert (token.expires_at - token.created_at).total_seconds() == 72 * 3600

    invitee = mail_app.test_client()
    welcome = invitee.get(path_of(link))
    assert welcome.status_code == 200
    assert "Choose a password for Nok@Example.com" in welcome.get_data(as_text=True)
    short = accept(invitee, link, "too short")
    assert short.status_code == 422
    assert accept(invitee, link, NEW_PASSWORD).headers["Location"] == "/console"
    assert invitee.get("/console").status_code == 303  # one program: straight to it
    assert invitee.get("/console", follow_redirects=True).request.path == \
        f"/console/programs/{program['id']}"
    # Used up: the same link again, by anyone, is gone.
    again = mail_app.test_client().get(path_of(link))
    assert again.status_code == 410
    assert "This link no longer works" in again.get_data(as_text=True)
    assert sign_in(mail_app.test_client(), "nok@example.com", NEW_PASSWORD).status_code == 303
    assert actions(mail_app)[-2:] == ["account.invite", "account.accept-invite"]


def test_without_mail_the_link_is_shown_to_copy_and_expires_after_72_hours(
        clock_app: Flask, clock: FakeClock) -> None:
    admin = signed_in_admin(clock_app)
    answer = invite(admin, "late@example.com")
    assert answer.status_code == 201
    assert "It works once, for 72 hours" in answer.get_data(as_text=True)
    link = shown_link(answer)
    clock.advance(72 * 3600 - 60)
    assert clock_app.test_client().get(path_of(link)).status_code == 200
    clock.advance(61)
    invitee = clock_app.test_client()
    assert invitee.get(path_of(link)).status_code == 410
    # Posting to it (with a token from any console page) is refused too.
    gone = post_form(invitee, "/console/login", {"password": NEW_PASSWORD,
                                                  "repeat": NEW_PASSWORD}, path_of(link))
    assert gone.status_code == 410
    with clock_app.app_context():
        assert db.session.scalar(db.select(Account.password_hash)
                                 .where(Account.email == "late@example.com")) is None


def test_a_new_invitation_voids_the_older_link(clock_app: Flask) -> None:
    admin = signed_in_admin(clock_app)
    first = shown_link(invite(admin, "twice@example.com"))
    with clock_app.app_context():
        account_id = db.session.scalar(db.select(Account.id)
                                       .where(Account.email == "twice@example.com"))
    page = f"/console/accounts/{account_id}"
    again = post_form(admin, page, {}, f"{page}/invitation")
    assert again.status_code == 201
    second = shown_link(again)
    assert second != first
    assert clock_app.test_client().get(path_of(first)).status_code == 410
    assert accept(clock_app.test_client(), second).status_code == 303
    # Once accepted, there is no invitation to send again.
    assert post_form(admin, page, {}, f"{page}/invitation").status_code == 409
    assert "account.invite-again" in actions(clock_app)


def test_two_acceptances_of_one_link_at_once_set_one_password(clock_app: Flask) -> None:
    with clock_app.app_context():
        link = links.invite("race@example.com", "marketer")
        token = link.url.rsplit("/", 1)[1]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def take(password: str) -> None:
        with clock_app.app_context():
            links.account_for(token, TokenPurpose.INVITE)  # both read a good link first
            db.session.rollback()  # (SQLite: no read transaction held across the wait)
            barrier.wait(timeout=30)
            try:
                links.accept(token, TokenPurpose.INVITE, password)
                outcomes.append(password)
            except links.LinkGone:
                outcomes.append("gone")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=take, args=(p,)) for p in
               ("first long password", "second long password")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2 and outcomes.count("gone") == 1, outcomes
    winner = next(o for o in outcomes if o != "gone")
    assert sign_in(clock_app.test_client(), "race@example.com", winner).status_code == 303


def test_forgot_password_e_mails_a_one_hour_link_and_answers_alike_for_unknown_addresses(
        mail_app: Flask, smtp: SMTPTestServer, clock: FakeClock) -> None:
    make_account(mail_app, "m@example.com", "marketer")
    known = post_form(mail_app.test_client(), "/console/forgot", {"email": "M@example.com"})
    unknown = post_form(mail_app.test_client(), "/console/forgot",
                        {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 303
    assert known.headers["Location"] == unknown.headers["Location"]
    client = mail_app.test_client()
    assert client.get(known.headers["Location"]).get_data(as_text=True) == \
        client.get(unknown.headers["Location"]).get_data(as_text=True)
    [message] = smtp.inbox.wait_for("m@example.com")
    settle(mail_app)  # the unknown address's job has run too: it sent nothing
    assert len(smtp.inbox.messages) == 1
    link = link_in(message)
    assert "/console/reset/" in link

    clock.advance(3599)
    person = mail_app.test_client()
    assert accept(person, link).headers["Location"] == "/console"
    assert person.get("/console").status_code == 200  # signed in (no program: the list)
    assert sign_in(mail_app.test_client(), "m@example.com", PASSWORD).status_code == 401
    assert mail_app.test_client().get(path_of(link)).status_code == 410  # used up

    # A second link expires after an hour.
    post_form(mail_app.test_client(), "/console/forgot", {"email": "m@example.com"})
    later = link_in(smtp.inbox.wait_for("m@example.com", 2)[-1])
    clock.advance(3601)
    assert mail_app.test_client().get(path_of(later)).status_code == 410
    assert actions(mail_app).count("account.reset-request") == 2


def test_forgot_password_without_mail_sends_nothing_and_says_to_ask_an_admin(
        app: Flask) -> None:
    make_account(app, "m@example.com", "marketer")
    client = app.test_client()
    page = client.get("/console/forgot").get_data(as_text=True)
    assert "ask an administrator for a reset link" in page
    answer = post_form(client, "/console/forgot", {"email": "m@example.com"})
    assert answer.status_code == 303
    settle(app)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(AccountToken)) == 0


def test_forgot_password_posts_are_rate_limited(app: Flask) -> None:
    client = app.test_client()
    answers = [post_form(client, "/console/forgot", {"email": f"x{i}@example.com"}).status_code
               for i in range(6)]
    assert answers == [303] * 5 + [429]
    # Per address asked about too, whoever asks.
    app.config["FORGOT_RATE_LIMIT"] = "2/hour"
    other = [post_form(app.test_client(), "/console/forgot", {"email": "same@example.com"},
                       ).status_code for _ in range(3)]
    assert other[-1] == 429


def test_an_admin_makes_a_reset_link_shown_when_mail_is_not_configured(app: Flask) -> None:
    admin = signed_in_admin(app)
    account_id = make_account(app, "m@example.com", "marketer")
    page = f"/console/accounts/{account_id}"
    answer = post_form(admin, page, {}, f"{page}/reset-link")
    assert answer.status_code == 201
    link = shown_link(answer)
    assert "/console/reset/" in link
    person = app.test_client()
    assert accept(person, link).status_code == 303
    assert sign_in(app.test_client(), "m@example.com", NEW_PASSWORD).status_code == 303
    assert "account.reset-link" in actions(app)
    assert not any(link.rsplit("/", 1)[1] in str(e) for e in _all_details(app))


def _all_details(app: Flask) -> list[Any]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent.details)))


def test_a_reset_link_is_shown_when_sending_fails(database: Any, tmp_path: Path,
                                                  free_port: Callable[[], int]) -> None:
    for app in make_app(database, tmp_path, SMTP_URL=f"smtp://127.0.0.1:{free_port()}"):
        admin = signed_in_admin(app)
        account_id = make_account(app, "m@example.com", "marketer")
        page = f"/console/accounts/{account_id}"
        answer = post_form(admin, page, {}, f"{page}/reset-link")
        assert answer.status_code == 201
        assert "could not be sent" in answer.get_data(as_text=True)
        assert "/console/reset/" in shown_link(answer)


def test_an_admin_changes_role_programs_and_deactivates_an_account(
        app: Flask, api: ApiClient, program: dict[str, Any]) -> None:
    admin = signed_in_admin(app)
    account_id = make_account(app, "m@example.com", "marketer")
    marketer = app.test_client()
    assert sign_in(marketer, "m@example.com").status_code == 303
    page = f"/console/accounts/{account_id}"
    saved = post_form(admin, page, {"name": "Mai", "role": "marketer",
                                    "program_ids": str(program["id"]), "active": "y"})
    assert saved.status_code == 303
    assert marketer.get(f"/console/programs/{program['id']}").status_code == 200
    bad = post_form(admin, page, {"role": "owner", "active": "y"})
    assert bad.status_code == 422
    assert post_form(admin, page, {"role": "marketer", "program_ids": "99999",
                                   "active": "y"}).status_code == 422
    off = post_form(admin, page, {"role": "marketer", "program_ids": str(program["id"])})
    assert off.status_code == 303
    assert marketer.get(f"/console/programs/{program['id']}").status_code == 303  # out
    assert sign_in(app.test_client(), "m@example.com").status_code == 401
    assert actions(app)[-2:] == ["account.update", "account.deactivate"]
    with app.app_context():
        details = db.session.scalars(db.select(AuditEvent.details)
                                     .order_by(AuditEvent.id.desc())).first()
    assert details == {"active": False}


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(app: Flask) -> None:
    admin = signed_in_admin(app)
    with app.app_context():
        own = db.session.scalar(db.select(Account.id))
    answer = post_form(admin, f"/console/accounts/{own}", {"role": "marketer", "active": "y"})
    assert answer.status_code == 422
    assert "no active admin" in answer.get_data(as_text=True)
    assert admin.get("/console/accounts").status_code == 200


def test_an_admin_signs_an_account_out_everywhere(app: Flask) -> None:
    admin = signed_in_admin(app)
    account_id = make_account(app, "m@example.com", "marketer")
    marketer = app.test_client()
    sign_in(marketer, "m@example.com")
    assert marketer.get("/console").status_code == 200
    page = f"/console/accounts/{account_id}"
    assert post_form(admin, page, {}, f"{page}/sign-out-everywhere").status_code == 303
    assert marketer.get("/console").status_code == 303
    assert admin.get("/console").status_code == 200


def test_the_accounts_page_lists_accounts_and_till_staff(app: Flask, api: ApiClient,
                                                          program: dict[str, Any]) -> None:
    location = api.post(f"/api/v1/programs/{program['id']}/locations", json={
        "name": "Siam Square", "latitude": 13.745, "longitude": 100.534}).get_json()
    staff = api.post("/api/v1/staff", json={"name": "Somchai", "pin": "2468",
                                            "location_ids": [location["id"]]})
    assert staff.status_code == 201, staff.get_json()
    admin = signed_in_admin(app)
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    page = admin.get("/console/accounts").get_data(as_text=True)
    assert "m@example.com" in page and "admin@example.com" in page
    row = re.search(r'<tr class="till-staff">(.*?)</tr>', page, re.S)
    assert row and "Somchai" in row.group(1) and "Siam Square" in row.group(1)
    assert "Till staff" in row.group(1)


def test_a_duplicate_invitation_is_shown_beside_the_address(app: Flask) -> None:
    admin = signed_in_admin(app)
    answer = invite(admin, "ADMIN@example.com")
    assert answer.status_code == 422
    assert "An account with this address exists already" in answer.get_data(as_text=True)
    assert invite(admin, "not an address").status_code == 422


def test_own_account_name_language_and_password(app: Flask) -> None:
    make_account(app, "m@example.com", "marketer")
    client = app.test_client()
    sign_in(client, "m@example.com")
    assert 'href="/console/account"' in client.get("/console").get_data(as_text=True)
    saved = post_form(client, "/console/account", {"name": "Mai", "language": "th"})
    assert saved.status_code == 303
    assert client.get("/console/account").get_data(as_text=True).startswith("<!doctype html>")
    assert 'lang="th"' in client.get("/console/account").get_data(as_text=True)
    wrong = post_form(client, "/console/account",
                      {"current_password": "not my password", "password": NEW_PASSWORD,
                       "repeat": NEW_PASSWORD}, "/console/account/password")
    assert wrong.status_code == 422
    other = app.test_client()
    sign_in(other, "m@example.com")
    changed = post_form(client, "/console/account",
                        {"current_password": PASSWORD, "password": NEW_PASSWORD,
                         "repeat": NEW_PASSWORD}, "/console/account/password")
    assert changed.status_code == 303
    assert client.get("/console").status_code == 200  # this browser stays in
    assert other.get("/console").status_code == 303  # the other is signed out
    assert sign_in(app.test_client(), "m@example.com", NEW_PASSWORD).status_code == 303
    assert post_form(client, "/console/account", {},
                     "/console/account/sign-out-everywhere").status_code == 303
    assert client.get("/console").status_code == 303
    assert actions(app)[-3:] == ["account.update", "account.password",
                                 "account.sign-out-everywhere"]


def test_a_marketer_cannot_open_the_accounts_pages(app: Flask) -> None:
    account_id = make_account(app, "m@example.com", "marketer")
    client = app.test_client()
    sign_in(client, "m@example.com")
    for path in ("/console/accounts", f"/console/accounts/{account_id}"):
        assert client.get(path).status_code == 403
    token = form_token(client.get("/console/account").get_data(as_text=True))
    assert client.post("/console/accounts", data={"csrf_token": token, "email": "x@example.com",
                                                  "role": "admin"}).status_code == 403
    assert client.post(f"/console/accounts/{account_id}/reset-link",
                       data={"csrf_token": token}).status_code == 403
    assert "Accounts" not in client.get("/console/account").get_data(as_text=True)


def test_every_new_form_refuses_a_post_without_its_token(app: Flask) -> None:
    admin = signed_in_admin(app)
    account_id = make_account(app, "m@example.com", "marketer")
    with app.app_context():
        link = links.invite("new@example.com", "marketer").url
        reset = links.reset_link(db.session.get(Account, account_id)).url
    for path in ("/console/accounts", f"/console/accounts/{account_id}",
                 f"/console/accounts/{account_id}/invitation",
                 f"/console/accounts/{account_id}/reset-link",
                 f"/console/accounts/{account_id}/sign-out-everywhere",
                 "/console/account", "/console/account/password",
                 "/console/account/sign-out-everywhere"):
        answer = admin.post(path, data={"email": "z@example.com", "role": "admin",
                                        "password": NEW_PASSWORD, "repeat": NEW_PASSWORD})
        assert answer.status_code == 400, path
    public = app.test_client()
    for path in (path_of(link), path_of(reset), "/console/forgot"):
        public.get(path)
        answer = public.post(path, data={"email": "m@example.com", "password": NEW_PASSWORD,
                                         "repeat": NEW_PASSWORD})
        assert answer.status_code == 400, path
    assert public.get(path_of(link)).status_code == 200  # not used up by the refused post
    assert actions(app).count("account.update") == 0
