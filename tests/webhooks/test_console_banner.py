"""The console tells admins of the webhook endpoints disabled for failing: a banner on every
console page, in their language, for their programs only (and in Chromium: axe-core clean)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from playwright.sync_api import Browser

from app.extensions import db
from app.timeutil import utcnow
from app.webhooks import drain
from app.webhooks.models import WebhookEndpoint
from tests.browser import serve
from tests.console.conftest import (
    LANGUAGES,
    check_page,
    console_page,
    make_account,
    sign_in,
)
from tests.factories import admin_api, create_program
from tests.webhooks.conftest import register

BANNER = {"en": "Webhook endpoints disabled", "id": "Endpoint webhook dinonaktifkan",
          "th": "ปิดการใช้งานปลายทางเว็บฮุกแล้ว", "ms": "Titik akhir webhook dinyahdayakan"}


def _failing_endpoint(app: Flask) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Two programs; the first has an endpoint disabled for failing, the second none."""
    api = admin_api(app)
    first, second = create_program(api), create_program(api, name="Teh", slug="teh")
    made = register(api, first, "https://127.0.0.1:9/failing")
    with app.app_context():
        endpoint = db.session.get(WebhookEndpoint, made["id"])
        assert endpoint is not None
        endpoint.failing_since = utcnow()
        drain.disable_failing(endpoint, utcnow())
        db.session.commit()
    return first, second, made


def test_admins_see_the_banner_on_console_pages(hook_app: Flask) -> None:
    first, _second, made = _failing_endpoint(hook_app)
    make_account(hook_app, "admin@example.com", "admin")
    make_account(hook_app, "m@example.com", "marketer", programs=[first["id"]])
    client = hook_app.test_client()
    assert sign_in(client, "admin@example.com").status_code == 303
    for lang in LANGUAGES:
        for path in ("/console", f"/console/programs/{first['id']}"):
            html = client.get(f"{path}?lang={lang}").get_data(as_text=True)
            assert BANNER[lang] in html, (path, lang)
            assert "https://127.0.0.1:9/failing" in html
    # A marketer of the program is not told (admins manage webhooks).
    other = hook_app.test_client()
    assert sign_in(other, "m@example.com").status_code == 303
    page = other.get(f"/console/programs/{first['id']}?lang=en")
    assert page.status_code == 200 and BANNER["en"] not in page.get_data(as_text=True)
    # Enabled again: the banner goes.
    api = admin_api(hook_app)
    assert api.request("PATCH", f"/api/v1/webhooks/{made['id']}",
                       json={"enabled": True}).status_code == 200
    assert BANNER["en"] not in client.get("/console?lang=en").get_data(as_text=True)


def test_the_banner_in_the_browser(hook_app: Flask, browser: Browser) -> None:
    first, _second, _made = _failing_endpoint(hook_app)
    make_account(hook_app, "admin@example.com", "admin")
    with serve(hook_app) as base:
        context, page = console_page(browser, base, "admin@example.com")
        for lang in LANGUAGES:
            page.goto(f"{base}/console/programs/{first['id']}?lang={lang}")
            assert page.get_by_role("alert").filter(has_text=BANNER[lang]).is_visible()
            check_page(page, f"webhook-banner-{lang}")
        context.close()
