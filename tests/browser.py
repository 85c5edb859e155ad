"""Shared by the page tests: Debian's Chromium driven by Playwright, and a live server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("POINTPASS_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying hosts this machine cannot
# reach; never a downloaded browser: Debian's package only.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
TIMEOUT_MS = 10_000


def need(path: str, what: str, package: str) -> None:
    """Fail (never skip) with what to install when a browser-test tool is missing."""
    if not Path(path).is_file():
        pytest.fail(f"{what} is not installed at {path}: the browser tests need it. Install "
                    f"Debian's (apt-get install -y {package}) or run scripts/browser.sh.",
                    pytrace=False)


def launch(playwright: Playwright, *extra_args: str) -> Browser:
    need(CHROMIUM, "Chromium", "chromium fonts-noto-core")
    return playwright.chromium.launch(executable_path=CHROMIUM,
                                      args=[*CHROMIUM_ARGS, *extra_args],
                                      headless=True, timeout=30_000)


def offline_page(browser: Browser, **context_options: Any) -> tuple[BrowserContext, Page]:
    """A new browser context (``context_options``: viewport, locale, permissions, ...) and
    page that must work offline: requests leaving 127.0.0.1 are refused and listed in
    ``page.outside_requests``; console errors and script errors go to
    ``page.console_errors``."""
    context = browser.new_context(**context_options)
    context.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    context.route(lambda url: not url.startswith("http://127.0.0.1:"),
                  lambda route: (outside.append(route.request.url), route.abort()))
    page = context.new_page()
    page.outside_requests = outside  # type: ignore[attr-defined]
    # CSP refusals and script errors show up in the console.
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.console_errors = problems  # type: ignore[attr-defined]
    return context, page


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """The app over HTTP on 127.0.0.1 (a secure context: cameras are allowed) until exit."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def axe_violations(page: Page) -> list[str]:
    """What axe-core (bundled with axe-playwright-python, no download) finds wrong with the
    page as shown: one line per violation, its rule, impact and the elements at fault."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page).response
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
            for v in results["violations"]]
