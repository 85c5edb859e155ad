"""The feedback page in headless Chromium on a 360x640 phone, in each language: the member's
language without asking, the language links on one row, eleven large tap targets, axe-core
clean (the question, a refused answer, the thanks and the "already answered" pages),
screenshots in test-artifacts/; it works with JavaScript off."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser import ARTIFACTS, axe_violations, offline_page
from tests.factories import ApiClient, create_card
from tests.feedback.conftest import add_location, ask_for_feedback, earn, invitations

SMALL_PHONE = {"viewport": {"width": 360, "height": 640}, "device_scale_factor": 2,
               "is_mobile": True, "has_touch": True}


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    """SQLite only (overrides conftest's both-databases parameter for this module)."""
    return sqlite_database


def _invitation(app: Any, api: ApiClient, program: dict, language: str) -> str:
    ask_for_feedback(api, program)
    serial = create_card(api, program, name="Putri", language=language)["serial_number"]
    earn(api, serial, add_location(api, program, "Kopi Kemang Raya"))
    return invitations(app, serial)[0].token


def _fits(page: Page) -> None:
    """Language links on one row inside the viewport, every tap target 44 px or more."""
    width = page.viewport_size["width"]  # type: ignore[index]
    links = [page.locator(".languages a").nth(i).bounding_box() for i in range(4)]
    assert len({round(box["y"]) for box in links}) == 1, links  # type: ignore[index]
    choices = [page.locator(".choice").nth(i).bounding_box() for i in range(11)]
    for box in [*links, *choices]:
        assert box is not None and box["height"] >= 44, box
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    for box in choices:
        assert box is not None and box["width"] >= 44, box


@pytest.mark.parametrize("language", ["en", "id", "th", "ms"])
def test_the_page_in_each_language_on_a_small_phone(app: Any, api: ApiClient, browser: Browser,
                                                    live_url: str, program: dict,
                                                    language: str) -> None:
    token = _invitation(app, api, program, language)
    ARTIFACTS.mkdir(exist_ok=True)
    context, page = offline_page(browser, **SMALL_PHONE)
    try:
        page.goto(f"{live_url}/feedback/{token}")
        page.evaluate("document.fonts.ready")
        assert page.locator("html").get_attribute("lang") == language  # the member's own
        _fits(page)
        assert axe_violations(page) == [], language
        page.screenshot(path=str(ARTIFACTS / f"feedback-{language}-360.png"), full_page=True)

        page.locator("button[type=submit]").click()  # no score: refused, shown in place
        page.wait_for_load_state()
        assert page.locator("#score-errors").is_visible()
        assert axe_violations(page) == [], language
        page.screenshot(path=str(ARTIFACTS / f"feedback-{language}-360-error.png"),
                        full_page=True)

        page.locator(".choice", has_text="9").first.click()  # the label is the target
        assert page.locator("input[name=score][value='9']").is_checked()
        page.locator("textarea").fill("Kopi enak, pelayanan ramah.")
        page.locator("button[type=submit]").click()
        page.wait_for_url(f"**/feedback/{token}/thanks")
        assert page.locator("#outcome").get_attribute("data-state") == "thanks"
        assert axe_violations(page) == [], language
        page.screenshot(path=str(ARTIFACTS / f"feedback-{language}-360-thanks.png"))

        page.goto(f"{live_url}/feedback/{token}")  # once answered, it says so (409)
        assert page.locator("#outcome").get_attribute("data-state") == "answered"
        assert axe_violations(page) == [], language
        page.screenshot(path=str(ARTIFACTS / f"feedback-{language}-360-answered.png"))
        assert page.outside_requests == []  # type: ignore[attr-defined]
        # The refused answer (422) and "already answered" (409) are logged as failed loads.
        assert [e for e in page.console_errors  # type: ignore[attr-defined]
                if not e.startswith("Failed to load resource: the server responded with a "
                                    "status of 4")] == []
    finally:
        context.close()
    [stored] = invitations(app, _serial_of(app, token))
    assert (stored.score, stored.language) == (9, language)


def _serial_of(app: Any, token: str) -> str:
    from sqlalchemy import select

    from app.extensions import db
    from app.feedback.models import FeedbackInvitation
    from app.loyalty.models import Card

    with app.app_context():
        serial = db.session.scalar(select(Card.serial_number).join(
            FeedbackInvitation, FeedbackInvitation.card_id == Card.id).where(
            FeedbackInvitation.token == token))
        db.session.rollback()
    return str(serial)


def test_the_page_works_without_javascript(app: Any, api: ApiClient, browser: Browser,
                                           live_url: str, program: dict) -> None:
    token = _invitation(app, api, program, "en")
    context, page = offline_page(browser, java_script_enabled=False, **SMALL_PHONE)
    try:
        page.goto(f"{live_url}/feedback/{token}")
        page.locator(".choice", has_text="10").click()
        page.locator("button[type=submit]").click()
        page.wait_for_url(f"**/feedback/{token}/thanks")
    finally:
        context.close()
    assert invitations(app, _serial_of(app, token))[0].score == 10
