"""The members import in Chromium, on a desktop and a tablet: a marketer goes from the
Members page to the import, uploads a CSV file, reads the bad rows with their line numbers,
starts the import and watches it finish (htmx polling a background job); the pages in every
language (screenshots in test-artifacts/, axe-core clean, nothing from other hosts)."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect

from tests import members_csv
from tests.browser import serve
from tests.console.conftest import (
    SCREEN_LANGUAGES,
    SCREENS,
    check_page,
    console_page,
    make_account,
)
from tests.factories import ApiClient, create_card


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # the pages are the same on both databases


@pytest.mark.parametrize("screen", SCREENS)
def test_upload_read_the_bad_rows_and_import(app: Flask, api: ApiClient,
                                             program: dict[str, Any], browser: Browser,
                                             screen: str) -> None:
    create_card(api, program, email=members_csv.TAKEN_EMAIL)
    out = io.BytesIO()
    made = members_csv.write(out, 40, 6)
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    with serve(app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/programs/{program['id']}/members/import?lang={lang}")
            check_page(page, f"member-import-{lang}-{screen}")
        page.goto(f"{base}/console/programs/{program['id']}/members?lang=en")
        page.get_by_role("link", name="Import and export members (CSV)").click()
        page.wait_for_url("**/members/import")
        page.get_by_label("CSV file (at most 20 MB)").set_input_files(files=[{
            "name": "members.csv", "mimeType": "text/csv", "buffer": out.getvalue()}])
        page.get_by_role("button", name="Check the file").click()
        page.wait_for_url(re.compile(r".*/members/imports/\d+$"))
        lines = page.locator("#bad-rows tbody tr td.number")
        expect(lines).to_have_count(len(made.bad))
        assert [int(t) for t in lines.all_inner_texts()] == sorted(made.bad)
        report_url = page.url
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{report_url}?lang={lang}")
            check_page(page, f"member-import-report-{lang}-{screen}")
        page.goto(f"{report_url}?lang=en")
        page.get_by_role("button", name=f"Import {made.good} members").click()
        expect(page.locator("#import-progress [role=status]")).to_contain_text(
            f"Done: {made.good} members imported", timeout=20_000)
        check_page(page, f"member-import-done-{screen}")
        context.close()
