"""The stats API: its shape (the contract in docs/metrics.md), its range rules and the CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.factories import ApiClient, create_card, create_program, settle

SHAPE_FIGURES = {
    "members", "new_members", "apple_installs", "apple_removals", "apple_installed_now",
    "google_installs", "google_removals", "google_installed_now", "active_members_30d",
    "active_members_90d", "points_issued", "points_redeemed", "points_expired",
    "points_clawed_back", "liability_points", "liability_money", "expiring_30d_points",
    "expiring_90d_points", "redemption_rate_points", "redemption_rate_members",
    "repeat_purchase_rate", "churn_rate", "churned_members", "purchases", "purchase_amount",
    "average_purchase", "median_purchase", "visits_per_member", "customer_lifetime_value",
    "nps", "nps_responses"}
SHAPE_SERIES = ["new_members", "active_members", "points_issued", "points_redeemed",
                "points_expired", "points_clawed_back", "purchases", "purchase_amount",
                "apple_installs", "apple_removals", "google_installs", "google_removals",
                "nps", "nps_responses"]


@pytest.fixture
def program(api: ApiClient) -> dict[str, Any]:
    """A program earning a point per 100 minor units."""
    return create_program(api, earn_amount=100)


def _earn(api: ApiClient, serial: str, amount: int, key: str) -> None:
    response = api.post(f"/api/v1/cards/{serial}/earn", json={"amount": amount, "currency": "IDR"},
                        headers={"Idempotency-Key": key})
    assert response.status_code == 201, response.json


def test_the_figures_of_a_few_purchases(api: ApiClient, program: dict[str, Any]) -> None:
    cards = [create_card(api, program, name=f"Member {i}") for i in range(3)]
    _earn(api, cards[0]["serial_number"], 1000, "a")
    _earn(api, cards[0]["serial_number"], 3000, "b")
    _earn(api, cards[1]["serial_number"], 2000, "c")
    response = api.get(f"/api/v1/programs/{program['id']}/stats")
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body["figures"]) >= SHAPE_FIGURES
    assert set(SHAPE_SERIES) <= set(body["series"])
    assert {"program_id", "time_zone", "currency", "from", "to", "interval", "previous",
            "points_issued_by_kind", "points_issued_by_rule", "nps_by_location",
            "campaigns"} <= set(body)
    figures = {name: f["value"] for name, f in body["figures"].items()}
    earned = 6000 * program["earn_points"] // program["earn_amount"]
    assert figures["members"] == figures["new_members"] == 3
    assert figures["purchases"] == 3
    assert figures["purchase_amount"] == 6000
    assert figures["average_purchase"] == 2000
    assert figures["median_purchase"] == 2000
    assert figures["points_issued"] == earned
    assert figures["liability_points"] == earned
    assert figures["liability_money"] is None  # no value of points set
    assert figures["active_members_30d"] == 2
    assert figures["repeat_purchase_rate"] == 0.0  # both bought on one day only
    assert figures["visits_per_member"] == 1.5
    assert body["figures"]["members"]["previous"] == 0
    assert body["series"]["purchases"][-1] == 3
    assert sum(body["series"]["purchases"]) == 3
    assert len(body["series"]["periods"]) == 31


def test_bad_ranges_are_refused(api: ApiClient, program: dict[str, Any]) -> None:
    path = f"/api/v1/programs/{program['id']}/stats"
    for query in ("from=yesterday", "to=2026-13-01", "interval=month",
                  "from=2026-01-02&to=2026-01-01", "from=2026-01-01&to=2026-01-01",
                  "from=2024-01-01&to=2026-01-01", "from=2999-01-01&to=2999-01-02",
                  "from=0001-01-01&to=0001-01-02", "to=9999-12-31", "from=2026-01-01T99:00",
                  "from=2026-01-01T10:00:00%2B25:00", "to=" + "9" * 50):
        response = api.get(f"{path}?{query}")
        assert response.status_code == 422, (query, response.json)
        assert response.mimetype == "application/problem+json"


def test_the_csv_has_a_row_per_period(api: ApiClient, program: dict[str, Any]) -> None:
    card = create_card(api, program, name="Ayu")
    _earn(api, card["serial_number"], 1500, "a")
    response = api.get(f"/api/v1/programs/{program['id']}/stats.csv?interval=week")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["period", *SHAPE_SERIES]
    assert len(rows) == 1 + 5  # 31 days in weeks of 7
    assert sum(int(row[SHAPE_SERIES.index("purchases") + 1]) for row in rows[1:]) == 1


def test_only_admins_and_marketers_read_stats(api: ApiClient, program: dict[str, Any],
                                             keys: dict[str, str]) -> None:
    path = f"/api/v1/programs/{program['id']}/stats"
    assert api.as_(keys["marketer"]).get(path).status_code == 200
    assert api.as_(keys["marketer"]).get(path + ".csv").status_code == 200
    for role in ("staff", "pos"):
        assert api.as_(keys[role]).get(path).status_code == 403
        assert api.as_(keys[role]).get(path + ".csv").status_code == 403
    assert api.as_(None).get(path).status_code == 401
    assert api.get("/api/v1/programs/999999/stats").status_code == 404


def test_liability_in_money_follows_the_value_of_points(api: ApiClient,
                                                        program: dict[str, Any]) -> None:
    card = create_card(api, program, name="Wulan")
    _earn(api, card["serial_number"], 123_400, "a")  # 1,234 points
    path = f"/api/v1/programs/{program['id']}"
    assert api.request("PATCH", path, json={"value_of_1000_points": 5_000}).status_code == 200
    figures = api.get(f"{path}/stats").json["figures"]
    assert figures["liability_points"]["value"] == 1_234
    assert figures["liability_money"]["value"] == 1_234 * 5_000 // 1000
    assert figures["liability_money"]["previous"] == 0


def test_without_from_the_range_is_the_30_days_before_to(api: ApiClient,
                                                         program: dict[str, Any]) -> None:
    body = api.get(f"/api/v1/programs/{program['id']}/stats?to=2026-01-15").json
    assert (body["from"], body["to"]) == ("2025-12-16T00:00:00+00:00",
                                          "2026-01-15T00:00:00+00:00")
    assert len(body["series"]["periods"]) == 30


def test_the_median_is_the_lower_one_to_two_significant_digits(
        api: ApiClient, program: dict[str, Any]) -> None:
    card = create_card(api, program, name="Tari")
    for i, amount in enumerate((1_500, 12_345, 13_999, 250_000)):
        _earn(api, card["serial_number"], amount, f"m{i}")
    figures = api.get(f"/api/v1/programs/{program['id']}/stats").json["figures"]
    assert figures["median_purchase"]["value"] == 12_000  # the 2nd of 4, 12,345 rounded
    assert figures["average_purchase"]["value"] == (1_500 + 12_345 + 13_999 + 250_000) // 4
    assert figures["median_purchase"]["previous"] is None  # no purchase before


def test_campaigns_started_in_the_range_come_with_their_results(
        app: Any, api: ApiClient, program: dict[str, Any]) -> None:
    create_card(api, program, name="Rina")
    path = f"/api/v1/programs/{program['id']}"
    campaign = api.post(f"{path}/campaigns", json={
        "name": "Rainy season", "messages": {"en": {"lock_screen": "Hot drinks 2x"}}}).json
    draft = api.post(f"{path}/campaigns", json={
        "name": "Not sent", "messages": {"en": {"lock_screen": "Later"}}}).json
    assert api.post(f"{path}/campaigns/{campaign['id']}/send").status_code == 202
    settle(app)  # the send job starts it
    listed = api.get(f"{path}/stats").json["campaigns"]
    assert [c["id"] for c in listed] == [campaign["id"]]  # not the draft
    assert draft["id"] != campaign["id"]
    (found,) = listed
    assert found["name"] == "Rainy season"
    assert found["status"] == "sent"
    assert found["recipients"] == 1
    assert set(found["campaign_group"]) == {"members", "redeemers", "redemptions", "visitors",
                                            "visits"}
