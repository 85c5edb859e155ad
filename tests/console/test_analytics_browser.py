"""The dashboard in Chromium (desktop and tablet) with a small scenario: members joining,
purchases and redemptions over eight days, posted through the API while the app's clock moves
a day at a time.
Every chart is drawn (its canvas holds the series' colour, and uPlot got one point per
period, as many as its data table has rows and as the stats API has periods); the page in
every language (screenshots, axe-core clean, nothing loaded from another host)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page

from tests.browser import serve
from tests.clock import FakeClock
from tests.console.conftest import (
    SCREEN_LANGUAGES,
    SCREENS,
    check_page,
    console_page,
    make_account,
)
from tests.factories import ApiClient, card_code, create_card, register_device

ZONE = ZoneInfo("Asia/Jakarta")
DAYS = 8
CHARTS = ("members", "points", "purchases", "purchase_amount", "wallets", "nps")


@pytest.fixture
def database(sqlite_database: Any) -> Any:
    return sqlite_database  # the pages tests run on both databases


def scenario(app: Flask, api: ApiClient, program: dict[str, Any]) -> tuple[date, date, int, int]:
    """Members, purchases and redemptions on ``DAYS`` local days from today, each day's at
    the app's clock, moved a day at a time (the program exists from today on: nothing can
    happen before it); the clock stays at the last day's evening. The first and last day, and
    the points earned and redeemed in all (as the API answered the postings)."""
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}",
                       json={"time_zone": "Asia/Jakarta"}).status_code == 200
    # Each day's activity at the same local time: now, or (late in the evening, when the
    # entries would run past midnight) tomorrow morning.
    start = datetime.now(ZONE)
    if start.hour >= 20:
        start = datetime.combine(start.date() + timedelta(days=1), time(9), ZONE)
    clock = FakeClock(start.timestamp())
    app.config["CLOCK"] = clock
    first = start.date()
    serials: list[str] = []
    earned_points = redeemed_points = 0
    for day in range(DAYS):
        if day:
            clock.advance(24 * 3600)
        serials.append(create_card(api, program, email=f"m{day}@example.com")["serial_number"])
        for number, serial in enumerate(serials[-3:]):
            earned = api.post(f"/api/v1/cards/{serial}/earn", json={
                "amount": (5 + day + number) * 1_000_000, "currency": "IDR",
                "reference": f"day{day}-{number}"})
            assert earned.status_code == 201, earned.json
            earned_points += earned.json["total_points"]
        if day % 2:
            redeemed = api.post("/api/v1/redemptions", json={
                "code": card_code(app, serials[0]), "points": 2},
                headers={"Idempotency-Key": f"redeem-{day}"})
            assert redeemed.status_code == 201, redeemed.json
            redeemed_points += redeemed.json["points"]
        if day == 3:
            register_device(app, serials[1])  # an iPhone adds a card
    # The last day's evening (a day already past midnight stays that day's).
    last = first + timedelta(days=DAYS - 1)
    evening = datetime.combine(last, datetime.min.time(), ZONE) + timedelta(hours=23)
    clock.advance(max(0.0, evening.timestamp() - clock.now()))
    return first, last, earned_points, redeemed_points


def _chart_state(page: Page, chart: str) -> dict[str, Any]:
    """What the figure shows: how many points uPlot got, its table's rows, and how many of
    its canvas's pixels have the first series' colour (#1d4ed8)."""
    return page.evaluate("""(chart) => {
        const figure = document.querySelector(`figure[data-chart="${chart}"]`);
        const canvas = figure.querySelector("canvas");
        const pixels = canvas.getContext("2d")
            .getImageData(0, 0, canvas.width, canvas.height).data;
        let coloured = 0, painted = 0;
        for (let i = 0; i < pixels.length; i += 4) {
            if (pixels[i + 3] > 0) painted++;
            if (Math.abs(pixels[i] - 29) < 12 && Math.abs(pixels[i + 1] - 78) < 12
                && Math.abs(pixels[i + 2] - 216) < 12 && pixels[i + 3] > 200) coloured++;
        }
        return {drawn: figure.dataset.drawn, points: Number(figure.dataset.points),
                rows: figure.querySelectorAll("table[data-series-table] tbody tr").length,
                painted: painted, coloured: coloured};
    }""", chart)


def _column(page: Page, chart: str, number: int) -> list[int]:
    """A column of a chart's data table (English: "1,234"), as numbers."""
    cells = page.locator(f'table[data-series-table="{chart}"] tbody tr '
                         f'td:nth-of-type({number})').all_text_contents()
    return [int(cell.replace(",", "")) for cell in cells]


@pytest.mark.parametrize("screen", SCREENS)
def test_dashboard_draws_the_scenario(app: Flask, api: ApiClient, program: dict[str, Any],
                                      browser: Browser, screen: str) -> None:
    pid = program["id"]
    first, last, earned, redeemed = scenario(app, api, program)
    make_account(app, "m@example.com", "marketer", programs=[pid])
    query = f"first={first.isoformat()}&last={last.isoformat()}&interval=day"
    series = api.get(f"/api/v1/programs/{pid}/stats?from={first.isoformat()}"
                     f"&to={(last + timedelta(days=1)).isoformat()}").json["series"]
    periods = series["periods"]
    assert len(periods) == DAYS
    assert sum(series["points_issued"]) == earned and sum(series["points_redeemed"]) == redeemed
    assert sum(series["apple_installs"]) == 1
    with serve(app) as base:
        context, page = console_page(browser, base, "m@example.com", screen=screen)
        # The program's home (one program: sign-in lands there) leads to the dashboard.
        page.goto(f"{base}/console/programs/{pid}?lang=en")
        check_page(page, f"program-home-{screen}")
        page.locator("ul.tiles a").first.click()
        page.wait_for_url(f"**/console/programs/{pid}/analytics")
        page.goto(f"{base}/console/programs/{pid}/analytics?{query}&lang=en")
        for chart in CHARTS:
            page.wait_for_selector(f'figure[data-chart="{chart}"][data-drawn="true"]',
                                   state="attached")
        for chart in CHARTS:
            state = _chart_state(page, chart)
            assert state["points"] == state["rows"] == len(periods), (chart, state)
            assert state["painted"] > 0, chart
            if chart != "nps":  # no feedback in this scenario: the NPS line has no points
                assert state["coloured"] > 20, (chart, state)
        # The points chart's table says what the API says, period by period.
        assert _column(page, "points", 1) == series["points_issued"]
        assert _column(page, "points", 2) == series["points_redeemed"]
        assert _column(page, "wallets", 1) == series["apple_installs"]
        check_page(page, f"analytics-{screen}")
        for lang in SCREEN_LANGUAGES[screen]:
            page.goto(f"{base}/console/programs/{pid}/analytics?{query}&lang={lang}")
            assert page.locator("html").get_attribute("lang") == lang
            page.wait_for_selector('figure[data-chart="points"][data-drawn="true"]',
                                   state="attached")
            page.locator("details").first.evaluate("d => d.open = true")
            check_page(page, f"analytics-{lang}-{screen}")
        context.close()
