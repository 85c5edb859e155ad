"""Every form post of the console, public ones included, is refused without the session's
CSRF token (400), before any view runs: the routes are read from the app's URL map, so a new
form is covered the day it is added."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from app.audit import AuditEvent
from app.extensions import db
from tests.console.conftest import form_token, make_account, sign_in


def _console_posts(app: Flask) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console.") and "POST" in (rule.methods or ()):
            # Any value will do: the token is checked before the view looks anything up.
            paths.append(re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: "1" if "id" in m.group(1)
                                else "logo" if m.group(1) == "kind" else "x", rule.rule))
    return sorted(paths)


def test_every_console_post_needs_the_csrf_token(app: Flask, program: dict[str, Any]) -> None:
    make_account(app, "a@example.com", "admin")
    client = app.test_client()
    assert sign_in(client, "a@example.com").status_code == 303
    posts = _console_posts(app)
    assert len(posts) >= 20, posts  # the parts' forms are all there
    with app.app_context():
        events_before = db.session.query(AuditEvent).count()
    for path in posts:
        for data in ({}, {"csrf_token": "forged"}):
            answer = client.post(path, data=data)
            assert answer.status_code == 400, (path, data, answer.status_code)
            assert "csrf" in answer.get_data(as_text=True).lower(), path
    with app.app_context():
        assert db.session.query(AuditEvent).count() == events_before  # nothing changed
    # The session still works, and a form with its token gets past the check.
    page = client.get(f"/console/programs/{program['id']}")
    assert page.status_code == 200
    assert client.post("/console/logout",
                       data={"csrf_token": form_token(page.get_data(as_text=True))}
                       ).status_code == 303
