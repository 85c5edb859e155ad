"""The Analytics section without a browser: the dashboard shows the stats API's figures for
the range asked (formatted in the page's language and the program's currency), a bad range
answers 422 with the form and what is wrong (never a 500), the CSV is the API's, who may open
it, and the range form is a GET form (no CSRF token; nothing is posted)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.numbers import format_decimal
from flask import Flask

from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient, create_card, create_program, settle
from tests.test_program_scope import database_state


def _signed_in(app: Flask, program_ids: list[int], email: str = "m@example.com") -> Any:
    make_account(app, email, "marketer", programs=program_ids)
    client = app.test_client()
    assert sign_in(client, email).status_code == 303
    return client


def _figure(html: str, key: str) -> str:
    """The value a figure shows (its <strong>), by the stats key it shows."""
    match = re.search(rf'data-figure="{key}">.*?class="figure-value">([^<]*)<', html, re.S)
    assert match, key
    return match.group(1)


def _range() -> tuple[str, str, str]:
    """The last seven days, today included (UTC, the test program's zone): first and last
    day as the dashboard takes them, and the API's ``to`` (the day after the last)."""
    today = datetime.now(UTC).date()
    return ((today - timedelta(days=6)).isoformat(), today.isoformat(),
            (today + timedelta(days=1)).isoformat())


def test_the_dashboard_shows_the_apis_figures(app: Flask, api: ApiClient,
                                              program: dict[str, Any]) -> None:
    pid = program["id"]
    for number in range(3):
        serial = create_card(api, program, email=f"m{number}@example.com")["serial_number"]
        assert api.post(f"/api/v1/cards/{serial}/earn",
                        json={"points": 100 * (number + 1)}).status_code == 201
    client = _signed_in(app, [pid])
    first, last, after = _range()
    page = client.get(f"/console/programs/{pid}/analytics?first={first}&last={last}&lang=id")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    stats = api.get(f"/api/v1/programs/{pid}/stats?from={first}&to={after}").json
    figures = stats["figures"]
    assert figures["members"]["value"] == 3 and figures["points_issued"]["value"] == 600
    # Indonesian groups thousands with a dot.
    assert _figure(html, "points_issued") == format_decimal(600, locale="id") == "600"
    assert _figure(html, "members") == "3"
    assert _figure(html, "liability_points") == format_decimal(
        figures["liability_points"]["value"], locale="id")
    # One data-table row per period, in each chart; the periods are the range's days.
    assert len(stats["series"]["periods"]) == 7
    tables = re.findall(r'<table data-series-table="([a-z_]+)">(.*?)</table>', html, re.S)
    assert len(tables) >= 5
    for name, table in tables:
        assert table.count('<th scope="row">') == 7, name
    # The charts' data block has the same series.
    block = re.search(r'<script type="application/json" id="analytics-data">(.*?)</script>',
                      html, re.S)
    assert block and '"locale": "id"' in block.group(1).replace('":"', '": "')
    # The CSV link asks for the same range.
    assert f'href="/console/programs/{pid}/analytics.csv?first={first}&amp;last={last}' \
           f'&amp;interval=day"' in html


def test_rules_and_campaigns_are_listed(app: Flask, api: ApiClient,
                                        program: dict[str, Any]) -> None:
    pid = program["id"]
    rule = api.post(f"/api/v1/programs/{pid}/rules", json={
        "kind": "bonus", "name": "Sunny bonus", "points": 5})
    assert rule.status_code == 201, rule.json
    for number in range(2):
        serial = create_card(api, program, email=f"m{number}@example.com")["serial_number"]
        assert api.post(f"/api/v1/cards/{serial}/earn", json={
            "amount": 2_000_000, "currency": "IDR"}).status_code == 201
    campaign = api.post(f"/api/v1/programs/{pid}/campaigns", json={
        "name": "Rainy day", "messages": {"en": {"lock_screen": "Double points"}}})
    assert campaign.status_code == 201, campaign.json
    assert api.post(f"/api/v1/programs/{pid}/campaigns/{campaign.json['id']}/send"
                    ).status_code == 202
    settle(app)
    client = _signed_in(app, [pid])
    first, last, after = _range()
    stats = api.get(f"/api/v1/programs/{pid}/stats?from={first}&to={after}").json
    assert stats["points_issued_by_rule"] == [
        {"rule_id": rule.json["id"], "name": "Sunny bonus", "points": 10}]
    [sent] = stats["campaigns"]
    assert sent["recipients"] == 2
    html = client.get(f"/console/programs/{pid}/analytics?first={first}&last={last}&lang=en"
                      ).get_data(as_text=True)
    by_rule = html[html.index('id="by-rule-heading"'):html.index('id="nps-heading"')]
    assert re.search(r"<td>Sunny bonus</td><td class=\"number\">10</td>", by_rule)
    campaigns = html[html.index('id="campaigns-heading"'):]
    assert f'href="/console/programs/{pid}/campaigns/{sent["id"]}">Rainy day</a>' in campaigns
    assert re.search(r"<dt>Recipients</dt><dd>2</dd>", campaigns)


def test_money_is_in_the_programs_currency_and_the_pages_language(
        app: Flask, api: ApiClient) -> None:
    program = create_program(api, currency="THB", slug="cha", name="Cha")
    # 1,000 points are worth 2,500.00 baht.
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}",
                       json={"value_of_1000_points": 250_000}).status_code == 200
    serial = create_card(api, program)["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn",
                    json={"amount": 123_456_00, "currency": "THB"}).status_code == 201
    client = _signed_in(app, [program["id"]])
    first, last, after = _range()
    query = f"first={first}&last={last}"
    stats = api.get(f"/api/v1/programs/{program['id']}/stats?from={first}&to={after}").json
    assert stats["figures"]["purchase_amount"]["value"] == 123_456_00
    english = client.get(f"/console/programs/{program['id']}/analytics?{query}&lang=en")
    thai = client.get(f"/console/programs/{program['id']}/analytics?{query}&lang=th")
    assert _figure(english.get_data(as_text=True), "purchase_amount") == "THB123,456.00"
    assert _figure(thai.get_data(as_text=True), "purchase_amount") == "฿123,456.00"
    # 12 points owed (one per 10,000.00 baht), worth 30.00 baht.
    assert stats["figures"]["liability_points"]["value"] == 12
    assert stats["figures"]["liability_money"]["value"] == 30_00
    assert _figure(english.get_data(as_text=True), "liability_money") == "THB30.00"
    indonesian = client.get(f"/console/programs/{program['id']}/analytics?{query}&lang=id")
    assert _figure(indonesian.get_data(as_text=True), "liability_money") == "฿30,00"


# At any moment one of these is on another day than UTC (+14 from 10:00 UTC, -11 before
# 11:00 UTC), so the days shown must be the program's.
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_without_a_range_the_last_30_days_of_the_programs_zone(
        app: Flask, api: ApiClient, program: dict[str, Any], zone: str) -> None:
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}",
                       json={"time_zone": zone}).status_code == 200
    client = _signed_in(app, [program["id"]])
    page = client.get(f"/console/programs/{program['id']}/analytics?lang=en")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    first = re.search(r'name="first" type="date" value="([^"]+)"', html)
    last = re.search(r'name="last" type="date" value="([^"]+)"', html)
    assert first and last
    today = datetime.now(ZoneInfo(zone)).date()
    assert last.group(1) == today.isoformat()
    assert first.group(1) == (today - timedelta(days=30)).isoformat()  # the API's default
    assert f"({zone})" in html
    form = re.search(r'<form method="get".*?</form>', html, re.S)
    assert form and "csrf_token" not in form.group(0)  # a GET form: no token in the address
    # By week: one row per week, each labelled with its first day.
    weekly = client.get(f"/console/programs/{program['id']}/analytics?first={first.group(1)}"
                        f"&last={last.group(1)}&interval=week&lang=en").get_data(as_text=True)
    table = re.search(r'<table data-series-table="points">(.*?)</table>', weekly, re.S)
    assert table and table.group(1).count("Week of ") == 5  # 31 days: 4 weeks and 3 days
    # A last day alone: the 30 days up to it, as the API without `from`.
    alone = client.get(f"/console/programs/{program['id']}/analytics?last=2026-03-31")
    assert 'name="first" type="date" value="2026-03-02"' in alone.get_data(as_text=True)


@pytest.mark.parametrize("query, message", [
    ("first=yesterday", "Please enter a day as YYYY-MM-DD."),
    ("first=2026-02-30&last=2026-03-02", "Please enter a day as YYYY-MM-DD."),
    ("first=2026-03-10&last=2026-03-01", "The last day must not be before the first."),
    ("first=2024-01-01&last=2026-01-01", "Choose at most 400 days."),
    ("first=0001-01-01&last=0001-01-02", "Choose a day between 1970-01-01 and 9998-12-31."),
    ("first=2026-01-01&last=9999-12-31", "Choose a day between 1970-01-01 and 9998-12-31."),
    ("first=2999-01-01", "The last day must not be before the first."),
    ("first=2024-01-01", "Choose at most 400 days."),  # up to today
    ("first=2999-01-01&last=2999-01-02", "The range must start today or earlier."),
    ("interval=month", "Not a valid choice."),
    ("first=" + "9" * 5000, "Please enter a day as YYYY-MM-DD."),
])
def test_a_bad_range_shows_what_is_wrong(app: Flask, program: dict[str, Any], query: str,
                                         message: str) -> None:
    client = _signed_in(app, [program["id"]])
    page = client.get(f"/console/programs/{program['id']}/analytics?{query}&lang=en")
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert message in html
    assert 'role="alert"' in html
    assert 'aria-invalid="true"' in html or "today or earlier" in message
    assert "data-series-table" not in html  # no figures for a range not understood
    answer = client.get(f"/console/programs/{program['id']}/analytics.csv?{query}&lang=en")
    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    assert message in answer.json["detail"]
    assert answer.json["errors"][0]["field"] in ("first", "last", "interval", "range")


def test_the_csv_is_the_apis(app: Flask, api: ApiClient, program: dict[str, Any]) -> None:
    pid = program["id"]
    serial = create_card(api, program)["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 70}).status_code == 201
    client = _signed_in(app, [pid])
    first, last, after = _range()
    download = client.get(f"/console/programs/{pid}/analytics.csv?first={first}&last={last}")
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"] == \
        f'attachment; filename="kopi-test-stats-{first}-{last}.csv"'
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert rows[0][:4] == ["period", "new_members", "active_members", "points_issued"]
    assert len(rows) == 1 + 7
    assert sum(int(row[3]) for row in rows[1:]) == 70
    from_api = api.get(f"/api/v1/programs/{pid}/stats.csv?from={first}&to={after}")
    assert from_api.status_code == 200
    assert list(csv.reader(io.StringIO(from_api.get_data(as_text=True)))) == rows
    weekly = client.get(f"/console/programs/{pid}/analytics.csv?first={first}&last={last}"
                        "&interval=week")
    weeks = list(csv.reader(io.StringIO(weekly.get_data(as_text=True))))
    assert [row[:4] for row in weeks[1:]] == [[first, "1", "1", "70"]]  # seven days: a week


def test_console_analytics_opens_the_first_program(app: Flask, api: ApiClient,
                                                   program: dict[str, Any]) -> None:
    other = create_program(api, name="Teh", slug="teh")
    client = _signed_in(app, [other["id"], program["id"]])
    answer = client.get("/console/analytics?first=2026-11-01&last=2026-11-07")
    assert answer.status_code == 303
    assert answer.location == (f"/console/programs/{min(program['id'], other['id'])}"
                               "/analytics?first=2026-11-01&last=2026-11-07")
    signed_out = app.test_client().get("/console/analytics")
    assert signed_out.status_code == 303 and "/console/login" in signed_out.location


def test_another_programs_dashboard_is_not_found(app: Flask, api: ApiClient,
                                                 program: dict[str, Any]) -> None:
    other = create_program(api, name="Teh", slug="teh")
    create_card(api, other)
    client = _signed_in(app, [program["id"]])
    for path in ("analytics", "analytics.csv", "analytics?first=2026-01-01&last=2026-01-02"):
        assert client.get(f"/console/programs/{other['id']}/{path}").status_code == 404, path
    # Its own program's opens, and /console/analytics never leads to the other.
    assert client.get(f"/console/programs/{program['id']}/analytics").status_code == 200
    assert client.get("/console/analytics").location.startswith(
        f"/console/programs/{program['id']}/analytics")


def test_nothing_is_posted(app: Flask, program: dict[str, Any]) -> None:
    """The dashboard changes nothing: a post, even with the session's token, is not
    allowed (405) and changes nothing."""
    client = _signed_in(app, [program["id"]])
    token = form_token(client.get(f"/console/programs/{program['id']}/design")
                       .get_data(as_text=True))
    before = database_state(app)
    for path in ("analytics", "analytics.csv"):
        answer = client.post(f"/console/programs/{program['id']}/{path}",
                             data={"csrf_token": token})
        assert answer.status_code == 405, path
    assert client.post("/console/analytics", data={"csrf_token": token}).status_code == 405
    assert database_state(app) == before


def test_analytics_comes_first(app: Flask, program: dict[str, Any]) -> None:
    client = _signed_in(app, [program["id"]])
    home = client.get(f"/console/programs/{program['id']}?lang=en").get_data(as_text=True)
    links = re.findall(r'<nav class="sections".*?</nav>', home, re.S)[0]
    sections = re.findall(r'href="(/console/programs/\d+/[a-z]+)"', links)
    assert sections[0] == f"/console/programs/{program['id']}/analytics"
    # The home lists the sections too, the dashboard first.
    tiles = re.findall(r'<ul class="tiles">(.*?)</ul>', home, re.S)[0]
    assert re.findall(r'href="([^"]+)"', tiles)[0] == \
        f"/console/programs/{program['id']}/analytics"
