"""/api/docs in headless Chromium with every request to another host blocked: Swagger UI is
served by the app (app/static/vendor/), so the operations still show.

SQLite only: the page reads the OpenAPI document, which is the same on both databases. The
screenshot goes to ``test-artifacts/api-docs.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.browser import ARTIFACTS, TIMEOUT_MS, serve
from tests.factories import make_app


@pytest.fixture
def docs_app(sqlite_database: Any, tmp_path: Path) -> Iterator[Any]:
    yield from make_app(sqlite_database, tmp_path)


def test_api_docs_render_offline(docs_app: Any, browser: Browser) -> None:
    spec = docs_app.test_client().get("/api/openapi.json").json
    operations = sum(1 for methods in spec["paths"].values() for method in methods
                     if method in ("get", "post", "put", "patch", "delete"))
    outside: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    with serve(docs_app) as live_url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            context.set_default_timeout(TIMEOUT_MS)
            context.route(lambda url: not url.startswith(live_url + "/"),
                          lambda route: (outside.append(route.request.url), route.abort()))
            page = context.new_page()
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("console", lambda message: message.type == "error"
                    and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{live_url}/api/docs")
            page.wait_for_selector(".opblock-summary-path")
            shown = page.locator(".opblock-summary-path").all_inner_texts()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=False)
        finally:
            context.close()
    assert outside == [], f"the docs asked other hosts: {outside}"
    assert failed == [] and errors == [], (failed, errors)
    assert len(shown) == operations
    assert any(path.replace("\u200b", "") == "/api/v1/cards/{serial}/earn" for path in shown)
