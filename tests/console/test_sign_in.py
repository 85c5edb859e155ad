"""Signing in to the console: accounts with argon2id passwords, sessions that time out and
can be ended everywhere, a slowed-down guesser, staff kept out, marketers kept to their
programs. On SQLite and PostgreSQL, through the pages as a browser posts them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.accounts import service as accounts
from app.accounts.models import Account
from app.audit import AuditEvent
from app.cli.cli import cli
from app.extensions import db
from tests.clock import FakeClock
from tests.console.conftest import PASSWORD, form_token, make_account, sign_in
from tests.factories import ApiClient, make_app


def test_an_admin_signs_in_and_out(app: Flask, program: dict[str, Any]) -> None:
    make_account(app, "Admin@Example.com", "admin")
    client = app.test_client()
    assert client.get("/console").headers["Location"].startswith("/console/login?next=")
    answer = sign_in(client, "admin@example.COM")  # addresses compare case-insensitively
    assert answer.status_code == 303
    page = client.get("/console", follow_redirects=True)
    assert program["name"] in page.get_data(as_text=True)
    with app.app_context():
        stored = db.session.scalar(db.select(Account))
        assert stored.password_hash.startswith("$argon2id$")
        assert PASSWORD not in stored.password_hash
        assert stored.last_sign_in_at is not None
    token = form_token(client.get("/console", follow_redirects=True).get_data(as_text=True))
    assert client.post("/console/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/console").status_code == 303


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(app: Flask) -> None:
    make_account(app, "m@example.com", "marketer")
    client = app.test_client()
    wrong = sign_in(client, "m@example.com", "not the password at all")
    unknown = sign_in(client, "nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "do not match an account" in wrong.get_data(as_text=True)
    assert wrong.get_data(as_text=True).count("do not match") == 1
    assert client.get("/console").status_code == 303


def test_five_wrong_passwords_hold_the_account_even_with_the_right_one(app: Flask) -> None:
    make_account(app, "m@example.com", "marketer")
    client = app.test_client()
    answers = [sign_in(client, "m@example.com", f"wrong password {i}").status_code
               for i in range(5)]
    assert answers == [401, 401, 401, 401, 429]
    held = sign_in(client, "m@example.com")
    assert held.status_code == 429
    assert 0 < int(held.headers["Retry-After"]) <= 300
    assert "Try again in 5 minutes" in held.get_data(as_text=True)
    # Another account from the same address is not held by this one's failures.
    make_account(app, "other@example.com", "marketer")
    assert sign_in(app.test_client(), "other@example.com").status_code == 303


def test_a_staff_account_cannot_open_the_console(app: Flask) -> None:
    make_account(app, "till@example.com", "staff")
    client = app.test_client()
    answer = sign_in(client, "till@example.com")
    assert answer.status_code == 403
    assert "till@example.com" not in answer.get_data(as_text=True)  # nobody is signed in
    assert client.get("/console").status_code == 303  # and no session was started


def test_a_marketer_reaches_only_the_programs_granted(app: Flask, api: ApiClient,
                                                      program: dict[str, Any]) -> None:
    other = api.post("/api/v1/programs", json={"name": "Other Shop"}).get_json()
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    sign_in(client, "m@example.com")
    # One program: the console opens it.
    assert client.get("/console").headers["Location"] == f"/console/programs/{program['id']}"
    assert client.get(f"/console/programs/{program['id']}").status_code == 200
    hidden = client.get(f"/console/programs/{other['id']}", headers={"Accept": "text/html"})
    missing = client.get("/console/programs/999", headers={"Accept": "text/html"})
    assert hidden.status_code == missing.status_code == 404
    assert _without_nonce(hidden.get_data(as_text=True)) == \
        _without_nonce(missing.get_data(as_text=True))
    assert "Other Shop" not in client.get(
        f"/console/programs/{program['id']}").get_data(as_text=True)


def _without_nonce(page: str) -> str:
    return re.sub(r'nonce="[^"]+"', "", page)


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(
        app: Flask, program: dict[str, Any]) -> None:
    make_account(app, "a@example.com", "admin")
    page = f"/console/programs/{program['id']}"
    assert sign_in(app.test_client(), "a@example.com", next_url=page).headers["Location"] \
        == page
    for elsewhere in ("//evil.example/console", "https://evil.example/console", "/join/x",
                      "/console\\@evil.example"):
        answer = sign_in(app.test_client(), "a@example.com", next_url=elsewhere)
        assert answer.headers["Location"] == "/console", elsewhere


def test_forms_without_the_csrf_token_are_refused(app: Flask) -> None:
    make_account(app, "a@example.com", "admin")
    client = app.test_client()
    refused = client.post("/console/login", data={"email": "a@example.com",
                                                   "password": PASSWORD})
    assert refused.status_code == 400
    assert client.get("/console").status_code == 303
    sign_in(client, "a@example.com")
    assert client.post("/console/logout").status_code == 400
    assert client.get("/console").status_code in (200, 303)
    assert client.get("/console", follow_redirects=True).request.path != "/console/login"


def test_sign_out_everywhere_and_a_new_password_end_other_sessions(app: Flask) -> None:
    account_id = make_account(app, "a@example.com", "admin")
    laptop, tablet = app.test_client(), app.test_client()
    sign_in(laptop, "a@example.com")
    sign_in(tablet, "a@example.com")
    with app.app_context():
        accounts.sign_out_everywhere(accounts.get(account_id))
    for browser in (laptop, tablet):
        assert browser.get("/console").headers["Location"].startswith("/console/login")
    sign_in(laptop, "a@example.com")
    with app.app_context():
        accounts.set_password(accounts.get(account_id), "a brand new passphrase")
        actions = [e.action for e in db.session.scalars(db.select(AuditEvent))]
    assert laptop.get("/console").headers["Location"].startswith("/console/login")
    assert sign_in(laptop, "a@example.com").status_code == 401
    assert sign_in(laptop, "a@example.com", "a brand new passphrase").status_code == 303
    assert [a for a in actions if a.startswith("account.")] == [
        "account.create", "account.sign-out-everywhere", "account.password"]


def test_a_deactivated_account_is_signed_out_at_the_next_click(app: Flask) -> None:
    account_id = make_account(app, "a@example.com", "admin")
    client = app.test_client()
    sign_in(client, "a@example.com")
    with app.app_context():
        accounts.get(account_id).active = False
        db.session.commit()
    assert client.get("/console").headers["Location"].startswith("/console/login")
    assert sign_in(client, "a@example.com").status_code == 401


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp())


def test_a_session_ends_after_30_idle_minutes_or_12_hours(database: Any, tmp_path: Path,
                                                          clock: FakeClock) -> None:
    for app in make_app(database, tmp_path, CLOCK=clock):
        make_account(app, "a@example.com", "admin")
        client = app.test_client()
        sign_in(client, "a@example.com")
        clock.advance(29 * 60)
        assert client.get("/console").status_code == 200  # (no program: the list)
        for _ in range(24):  # busy all day: a click every 29 minutes
            clock.advance(29 * 60)
            if client.get("/console").status_code != 200:
                break
        assert clock.now() - datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp() > 11.5 * 3600
        assert client.get("/console").headers["Location"].startswith("/console/login")
        sign_in(client, "a@example.com")
        clock.advance(31 * 60)
        assert client.get("/console").headers["Location"].startswith("/console/login")


def test_create_user_reads_the_password_from_standard_input(app: Flask,
                                                            program: dict[str, Any]) -> None:
    runner = app.test_cli_runner()
    slug = program["slug"]
    result = runner.invoke(cli, ["create-user", "--email", "m@example.com", "--role",
                                 "marketer", "--program", slug],
                           input="a long enough secret\na long enough secret\n")
    assert result.exit_code == 0, result.output
    assert "Created marketer account #1 m@example.com." in result.output
    assert "a long enough secret" not in result.stdout.replace("Password", "")
    with app.app_context():
        account = accounts.get(1)
        assert [p.id for p in account.programs] == [program["id"]]
        event = db.session.scalar(db.select(AuditEvent).where(
            AuditEvent.action == "account.create"))
        assert (event.actor, event.action) == ("cli", "account.create")
    assert sign_in(app.test_client(), "m@example.com", "a long enough secret").status_code \
        == 303
    again = runner.invoke(cli, ["create-user", "--email", "M@example.com", "--role", "admin"],
                          input="another long secret\nanother long secret\n")
    assert again.exit_code == 1 and "exists already" in again.output
    short = runner.invoke(cli, ["create-user", "--email", "s@example.com", "--role", "admin"],
                          input="short\nshort\n")
    assert short.exit_code == 1 and "at least 10 characters" in short.output


def test_passwords_get_the_strong_parameters_outside_the_test_suite() -> None:
    from flask import Flask as Bare

    from app.accounts import passwords

    strong = "$m=65536,t=3,p=4$"
    assert strong in passwords.hash_password("correct horse battery staple")  # no app
    for env, cost in (("production", strong), ("development", strong),
                      ("testing", "$m=8,t=1,p=1$")):
        bare = Bare(__name__)
        bare.config["ENV"] = env
        with bare.app_context():
            stored = passwords.hash_password("correct horse battery staple")
            assert cost in stored, env
            assert passwords.check("correct horse battery staple", stored)
            assert not passwords.check("wrong horse battery staple", stored)
            assert not passwords.needs_rehash(stored)
