"""Sending a campaign from the console in Chromium (desktop and tablet), with a 10% holdout:
the APNs test server is pushed exactly the devices of the members not held out; the dry run
matches the API's; progress and results on the campaign's page; the page in every language."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from app.campaigns.models import Recipient
from app.extensions import db
from app.loyalty.models import Card
from tests.apns_server import APNsTestServer
from tests.browser import serve
from tests.console.conftest import (
    SCREEN_LANGUAGES,
    SCREENS,
    check_page,
    console_page,
    make_account,
)
from tests.factories import admin_api, create_card, create_program, register_device, settle

MEMBERS = 30


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # sending runs on both in tests/campaigns/test_campaigns.py


@pytest.mark.parametrize("screen", SCREENS)
def test_send_with_a_ten_percent_holdout(push_app: Flask, apns: APNsTestServer,
                                         browser: Browser, screen: str) -> None:
    api = admin_api(push_app)
    program = create_program(api)
    pid = program["id"]
    phones = {}
    for i in range(MEMBERS):
        card = create_card(api, program, email=f"m{i}@example.com")
        phones[card["serial_number"]] = register_device(push_app, card["serial_number"])
    settle(push_app)
    apns.reset()
    make_account(push_app, "m@example.com", "marketer", programs=[pid])
    with serve(push_app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        page.goto(f"{base}/console/programs/{pid}/campaigns?lang=en")
        page.get_by_label("Campaign name").fill("Rainy day")
        page.get_by_label("Holdout: percent kept as a control group").fill("10")
        page.get_by_label("Bonus points (optional)").fill("20")
        page.get_by_label("Lock screen (English)").fill("Double points today")
        page.get_by_label("Back of the pass (English)").fill("Show this card at the till.")
        page.get_by_role("button", name="Create draft").click()
        page.wait_for_url("**/campaigns/*")
        campaign_id = int(page.url.rstrip("/").split("/")[-1].split("?")[0])
        dry = api.post(f"/api/v1/programs/{pid}/campaigns/{campaign_id}/dry-run").json
        assert dry["recipients"] == MEMBERS and dry["held_out"] >= 1
        expect(page.locator('[data-dry="held_out"]')).to_have_text(str(dry["held_out"]))
        expect(page.locator('[data-dry="would_receive"]')).to_have_text(
            str(dry["would_receive"]))
        check_page(page, f"campaign-draft-{screen}")
        page.get_by_role("button", name="Send now").click()
        expect(page.locator("[data-status]")).to_have_attribute("data-status", "sent",
                                                                timeout=30_000)
        settle(push_app)
        with push_app.app_context():
            held = dict(db.session.execute(
                select(Card.serial_number, Recipient.held_out)
                .join(Card, Card.id == Recipient.card_id)
                .where(Recipient.campaign_id == campaign_id)).all())
            db.session.rollback()
        assert sum(held.values()) == dry["held_out"]
        pushed = {serial for serial, phone in phones.items() if apns.requests_for(phone.token)}
        assert pushed == {serial for serial, is_held in held.items() if not is_held}
        for serial, phone in phones.items():
            if held[serial]:
                assert apns.requests_for(phone.token) == []
        page.goto(f"{base}/console/programs/{pid}/campaigns/{campaign_id}?lang=en")
        expect(page.locator("[data-devices]")).to_have_attribute(
            "data-devices", str(MEMBERS - dry["held_out"]))
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/programs/{pid}/campaigns/{campaign_id}?lang={lang}")
            check_page(page, f"campaign-sent-{lang}-{screen}")
        context.close()
