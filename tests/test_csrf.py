"""CSRF protection is on for every post by default; only cookie-less callers are exempt.

Runs on SQLite and PostgreSQL (the ``app`` fixture). A form added tomorrow is protected without
its view doing anything; the JSON API (API keys), the PassKit web service (its authentication
tokens) and Google's callback (signed by Google) never see a CSRF check.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, request
from flask_wtf.csrf import generate_csrf

# Callers that authenticate otherwise than with the session cookie.
EXEMPT = re.compile(r"^/api/|^/passkit/|^/wallet/google/callback$")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
REACHED = "X-Test-Past-Csrf"


def test_a_new_form_is_protected_without_asking(app: Any) -> None:
    """A form view that never mentions CSRF still refuses a post without the token."""
    tiny = Blueprint("tiny_form", __name__)

    @tiny.route("/tiny-form", methods=["GET", "POST"])
    def form() -> str:
        return generate_csrf() if request.method == "GET" else "posted"

    app.register_blueprint(tiny)
    client = app.test_client()
    token = client.get("/tiny-form").get_data(as_text=True)

    for data in ({"name": "Ayu"}, {"name": "Ayu", "csrf_token": "forged"}):
        refused = client.post("/tiny-form", data=data)
        assert refused.status_code == 400
        assert refused.content_type == "application/problem+json"
        assert refused.json["type"] == "urn:pointpass:problem:csrf"

    accepted = client.post("/tiny-form", data={"name": "Ayu", "csrf_token": token})
    assert accepted.status_code == 200
    assert accepted.get_data(as_text=True) == "posted"
    by_header = client.post("/tiny-form", json={"name": "Ayu"}, headers={"X-CSRFToken": token})
    assert by_header.status_code == 200


VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>")


def _path(rule: Any) -> str:
    """The rule's URL with a placeholder in each variable (1 for ids)."""
    return VARIABLE.sub(lambda m: "1" if m.group(1) == "int" else "x", rule.rule)


def test_every_write_route_is_checked_except_the_cookieless_ones(app: Any) -> None:
    """Posts without a token to every route of the app: page routes never reach their view;
    API, PassKit and Google callback routes do (and are answered by this test's hook)."""

    @app.before_request
    def past_csrf() -> Response | None:
        # Runs after Flask-WTF's check (registered later): whatever gets here passed it or was
        # exempt. Answered here so that no view runs with placeholder arguments.
        if request.method in WRITES:
            return Response(status=204, headers={REACHED: request.endpoint or ""})
        return None

    client = app.test_client()
    client.get("/staff/login")  # the session holds a CSRF token; no post below carries it
    checked, exempt = set(), set()
    for rule in app.url_map.iter_rules():
        for method in sorted(WRITES & set(rule.methods or ())):
            path = _path(rule)
            response = client.open(path, method=method, json={})
            reached = response.headers.get(REACHED) == rule.endpoint
            if EXEMPT.match(rule.rule):
                assert reached, f"{method} {path} was CSRF-checked: {response.status_code}"
                exempt.add(rule.endpoint)
            else:
                assert not reached, f"{method} {path} took a post without a CSRF token"
                checked.add(rule.endpoint)

    # The walk saw the routes it is about (so it cannot pass by finding none).
    assert {"enrollment_pages.join", "staff_pages.login", "staff_pages.logout",
            "staff_pages.scan", "staff_pages.redeem", "staff_pages.earn",
            "staff_pages.undo"} <= checked
    assert {"loyalty.earn", "passkit.register", "passkit.device_logs",
            "google_wallet.callback"} <= exempt


def test_a_tokenless_post_to_an_unknown_program_is_not_found(app: Any) -> None:
    """The token is checked before the join view looks up its program: the refusal still
    answers 404 for a program that does not exist, not an error."""
    response = app.test_client().post("/join/no-such-program", data={"name": "Ayu"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
