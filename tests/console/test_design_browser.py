"""The Design page in Chromium, on a desktop and a tablet: the preview follows the colours as
they are typed or picked, low contrast turns publishing off, and publishing updates every
card: each registered iPhone gets its push from the APNs test server and the pass it then
fetches through the PassKit web service has the new colours. Screenshots in every language
(test-artifacts/, axe-core clean, nothing from other hosts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect

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
from tests.images import image_bytes


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # the pages are the same on both databases


@pytest.mark.parametrize("screen", SCREENS)
def test_change_the_colours_see_the_preview_and_publish_to_every_phone(
        push_app: Flask, apns: APNsTestServer, browser: Browser, screen: str,
        tmp_path: Path) -> None:
    api = admin_api(push_app)
    program = create_program(api)
    serials = [create_card(api, program, name=name)["serial_number"]
               for name in ("Ayu", "Budi", "Citra")]
    settle(push_app)
    phones = [register_device(push_app, serial) for serial in serials[:2]]  # Citra: no iPhone
    settle(push_app)
    apns.reset()
    make_account(push_app, "m@example.com", "marketer", programs=[program["id"]])
    design = f"/console/programs/{program['id']}/design"

    with serve(push_app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}{design}?lang={lang}")
            assert page.locator("html").get_attribute("lang") == lang
            check_page(page, f"design-{lang}-{screen}")
        page.goto(f"{base}{design}?lang=en")
        # A logo: uploaded through the artwork service, shown, and on the preview.
        logo = tmp_path / "logo.png"
        logo.write_bytes(image_bytes((400, 200), colour=(250, 204, 21)))
        before = page.locator(".ac-logo").get_attribute("src")
        page.get_by_label("New logo").set_input_files(str(logo))
        page.get_by_role("button", name="Upload the logo").click()
        expect(page.get_by_alt_text("The current logo")).to_be_visible()
        assert page.locator(".ac-logo").get_attribute("src") != before
        settle(push_app)
        apns.reset()  # the upload told the phones; now the publishing
        card = page.locator(".apple-card")
        expect(card).to_have_css("background-color", "rgb(31, 41, 55)")

        # Typing a colour: the preview (pass.json's colour, and the card drawn in it) follows.
        box = page.get_by_label("Background colour", exact=True)
        box.fill("#7C2D12")
        expect(card).to_have_attribute("data-background", "rgb(124, 45, 18)")
        expect(card).to_have_css("background-color", "rgb(124, 45, 18)")
        expect(page.locator(".google-card")).to_have_css("background-color", "rgb(124, 45, 18)")
        expect(page.locator("#background_color_picker")).to_have_value("#7c2d12")
        # Picking one: the hex box and the preview follow.
        page.locator("#label_color_picker").fill("#fde68a")
        expect(page.get_by_label("Label colour", exact=True)).to_have_value("#FDE68A")
        expect(card).to_have_attribute("data-label", "rgb(253, 230, 138)")

        # A text colour too close to the background: named, with its ratio; no publishing.
        text = page.get_by_label("Text colour", exact=True)
        text.fill("#A16207")
        expect(page.locator(".contrast li.fail")).to_contain_text("Text colour on the background")
        expect(page.locator(".contrast li.fail")).to_contain_text(":1, too low")
        expect(page.get_by_role("button", name="Publish")).to_be_disabled()
        text.fill("#FFFFFF")
        expect(page.locator(".contrast li.fail")).to_have_count(0)
        publish = page.get_by_role("button", name="Publish")
        expect(publish).to_be_enabled()

        publish.click()
        page.wait_for_url(f"**{design}/updates/*")
        expect(page.get_by_role("status")).to_contain_text("Done: 3 of 3 cards updated.",
                                                           timeout=20_000)
        check_page(page, f"design-published-{screen}")
        context.close()

    settle(push_app)
    for phone, serial in zip(phones, serials[:2], strict=True):
        assert len(apns.requests_for(phone.token)) == 1, "each registered iPhone, once"
        assert serial in phone.changed()
        pass_json = phone.fetch(serial)
        assert (pass_json["backgroundColor"], pass_json["foregroundColor"],
                pass_json["labelColor"]) == ("rgb(124, 45, 18)", "rgb(255, 255, 255)",
                                             "rgb(253, 230, 138)")
