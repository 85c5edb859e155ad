"""A marketer reaches only the programs granted: every console page and form of another
program, read from the app's URL map, answers 404 (403 for the admins' pages) and changes
nothing, with the marketer's own valid CSRF token."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient, create_card, create_program
from tests.test_program_scope import database_state


def _program_routes(app: Flask, program_id: int) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console.") or "program_id" not in rule.arguments:
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: str(program_id)
                      if m.group(1) == "program_id" else "logo" if m.group(1) == "kind"
                      else "1", rule.rule)
        routes.extend((method, path) for method in ("GET", "POST") if method in rule.methods)
    return sorted(routes)


def test_another_programs_console_is_not_found(app: Flask, api: ApiClient,
                                               program: dict[str, Any]) -> None:
    other = create_program(api, name="Teh Lain", slug="teh-lain")
    create_card(api, other, name="Lain")
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    assert sign_in(client, "m@example.com").status_code == 303
    token = form_token(client.get(f"/console/programs/{program['id']}/design")
                       .get_data(as_text=True))
    routes = _program_routes(app, other["id"])
    assert len(routes) >= 40, routes
    before = database_state(app)
    for method, path in routes:
        answer = client.open(path, method=method, data={"csrf_token": token}
                             if method == "POST" else None)
        assert answer.status_code in (403, 404), (method, path, answer.status_code)
    assert database_state(app) == before
    # The same pages of the marketer's own program open.
    own = [path for method, path in _program_routes(app, program["id"])
           if method == "GET" and path.count("/") == 4]
    assert own, "no section page"
    for path in own:
        assert client.get(path).status_code in (200, 403), path
