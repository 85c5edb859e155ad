"""Earning rules through the API and the ledger (SQLite and PostgreSQL): the worked example
of issue 16, earn answers that say what the preview said, welcome, referral and birthday
awards once each, deleting a rule, and bad input refused as problems."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from app.auth import keys as api_keys
from app.extensions import db
from app.loyalty import rules
from app.loyalty.models import EarningRule, EntryKind, LedgerEntry, Program
from app.redemption import service as redemption
from app.redemption import till
from app.staff.actor import TillActor
from tests.clock import FakeClock
from tests.factories import (
    ApiClient,
    card_code,
    create_card,
    create_program,
    ledger_state,
    row_counts,
    settle,
)

JAKARTA = ZoneInfo("Asia/Jakarta")
WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=JAKARTA)
CLOCK_START = WEDNESDAY  # where this module's fake clock starts (tests/loyalty/conftest.py)
# Saturday 06:30 in Jakarta: still Friday (23:30) in UTC.
SATURDAY = datetime(2026, 11, 28, 6, 30, tzinfo=JAKARTA)
MONDAY = datetime(2026, 11, 30, 10, 0, tzinfo=JAKARTA)
TIERS = [{"name": "Bronze", "threshold": 0},
         {"name": "Gold", "threshold": 100, "multiplier_percent": 120}]
RUPIAH_25_000 = 2_500_000_000 // 100  # 25 000 000 minor units: 25 points at the base rate


def move_to(clock: FakeClock, moment: datetime) -> None:
    clock.advance(moment.timestamp() - clock.now())


def jakarta_program(app: Any, api: ApiClient, **overrides: Any) -> dict[str, Any]:
    program = create_program(api, **{"tiers": TIERS, "referral_bonus_points": 0, **overrides})
    with app.app_context():
        db.session.execute(update(Program).where(Program.id == program["id"])
                           .values(time_zone="Asia/Jakarta"))
        db.session.commit()
    return program


def add_rule(api: ApiClient, program: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/v1/programs/{program['id']}/rules", json=body)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def earn(api: ApiClient, serial: str, key: str | None = None, **body: Any) -> Any:
    response = api.post(f"/api/v1/cards/{serial}/earn", json=body,
                        headers={"Idempotency-Key": key} if key else {})
    assert response.status_code == 201, response.json
    return response


def preview(api: ApiClient, program: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/v1/programs/{program['id']}/rules/preview",
                        json={"currency": "IDR", **body})
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def breakdown(body: dict[str, Any]) -> tuple[int, list[tuple[int, int]], int]:
    """(base points, [(rule id, points) of the rules that gave some], total)."""
    return (body["base_points"], [(r["rule_id"], r["points"]) for r in body["rules"]
                                  if r.get("applies", True) and r["points"]],
            body["total_points"])


def entries(app: Any, serial: str) -> list[tuple[str, int, int | None, int | None, str | None]]:
    """(kind, points, rule id, purchase id, idempotency key) of the card's entries."""
    with app.app_context():
        from app.loyalty.models import Card

        rows = db.session.execute(
            select(LedgerEntry.kind, LedgerEntry.points, LedgerEntry.rule_id,
                   LedgerEntry.purchase_id, LedgerEntry.idempotency_key, LedgerEntry.id)
            .join(Card, Card.id == LedgerEntry.card_id).where(Card.serial_number == serial)
            .order_by(LedgerEntry.id)).all()
        db.session.rollback()
    return [(str(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


@pytest.fixture
def example(app: Any, api: ApiClient) -> dict[str, Any]:
    """Issue 16's worked example: a welcome rule, a 2x weekend multiplier (not stackable,
    priority above) and a 1.5x Gold rule, in Jakarta."""
    program = jakarta_program(app, api)
    return {
        "program": program,
        "welcome": add_rule(api, program, kind="welcome", name="Welcome", points=100),
        "weekend": add_rule(api, program, kind="multiplier", name="Weekend 2x", percent=200,
                            priority=10, stackable=False, conditions={"days_of_week": [6, 7]}),
        "gold": add_rule(api, program, kind="multiplier", name="Gold 1.5x", percent=150,
                         conditions={"tiers": ["Gold"]}),
    }


def test_the_worked_example_earns_what_the_preview_said(app: Any, api: ApiClient,
                                                        clock: FakeClock,
                                                        example: dict[str, Any]) -> None:
    program = example["program"]
    weekend, gold = example["weekend"]["id"], example["gold"]["id"]
    card = create_card(api, program)
    serial = card["serial_number"]
    assert (card["balance"], card["tier"]) == (100, "Bronze")  # the welcome rule

    # Wednesday, Bronze: no rule applies; 100 points make the member Gold (the welcome
    # points do not count toward tiers: they came with no purchase).
    first = earn(api, serial, points=100).json
    assert breakdown(first) == (100, [], 100)
    assert (first["balance"], first["lifetime_points"], first["tier"]) == (200, 100, "Gold")

    # Saturday: Gold earns 1.2x (30 points for Rp 250.000); the weekend doubles it, and
    # stops the Gold rule below it.
    move_to(clock, SATURDAY)
    said = preview(api, program, serial_number=serial, amount=RUPIAH_25_000)
    assert breakdown(said) == (30, [(weekend, 30)], 60)
    assert [(r["rule_id"], r["applies"], r["reason"]) for r in said["rules"]] == [
        (weekend, True, None), (gold, False, f"stopped_by:{weekend}")]
    assert said["tier"] == "Gold"
    by_tier = preview(api, program, tier="Gold", amount=RUPIAH_25_000)
    assert by_tier["rules"] == said["rules"]

    saturday = earn(api, serial, "sat-1", amount=RUPIAH_25_000, currency="IDR")
    body = saturday.json
    assert breakdown(body) == breakdown(said)
    assert body["rules"] == [{"rule_id": weekend, "name": "Weekend 2x", "kind": "multiplier",
                              "points": 30, "entry_id": body["rules"][0]["entry_id"]}]
    assert (body["entry"]["points"], body["balance"]) == (30, 260)
    assert body["lifetime_points"] == 160  # a bonus on a purchase counts toward the tier

    # The answer was lost; the retry awards nothing more and answers the same.
    again = earn(api, serial, "sat-1", amount=RUPIAH_25_000, currency="IDR")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (again.json["entry"], again.json["rules"], again.json["total_points"],
            again.json["balance"]) == (body["entry"], body["rules"], 60, 260)

    # Monday: no weekend, so the Gold rule gives its 1.5x.
    move_to(clock, MONDAY)
    said = preview(api, program, serial_number=serial, amount=RUPIAH_25_000)
    assert breakdown(said) == (30, [(gold, 15)], 45)
    monday = earn(api, serial, amount=RUPIAH_25_000, currency="IDR").json
    assert breakdown(monday) == breakdown(said)
    assert monday["balance"] == 305

    earn_id = body["entry"]["id"]
    assert entries(app, serial) == [
        ("bonus", 100, example["welcome"]["id"], None, f"rule:{example['welcome']['id']}:welcome"),
        ("earn", 100, None, None, None),
        ("earn", 30, None, None, "sat-1"),
        ("bonus", 30, weekend, earn_id, f"rule:{weekend}:earn:{earn_id}"),
        ("earn", 30, None, None, None),
        ("bonus", 15, gold, monday["entry"]["id"], f"rule:{gold}:earn:{monday['entry']['id']}"),
    ]
    assert ledger_state(app, serial) == (305, 305, 6)


def test_a_deleted_rule_stops_applying_and_its_entries_keep_naming_it(
        app: Any, api: ApiClient, keys: dict[str, str], clock: FakeClock,
        example: dict[str, Any]) -> None:
    program = example["program"]
    path = f"/api/v1/programs/{program['id']}/rules"
    weekend, gold = example["weekend"]["id"], example["gold"]["id"]
    serial = create_card(api, program)["serial_number"]
    earn(api, serial, points=100)
    move_to(clock, SATURDAY)
    before = earn(api, serial, amount=RUPIAH_25_000, currency="IDR").json
    assert breakdown(before) == (30, [(weekend, 30)], 60)

    marketer = api.as_(keys["marketer"])
    assert marketer.request("DELETE", f"{path}/{weekend}").status_code == 204
    assert marketer.request("DELETE", f"{path}/{weekend}").status_code == 204  # idempotent
    listed = [r["id"] for r in api.get(path).json["rules"]]
    assert listed == [example["welcome"]["id"], gold]
    shown = api.get(f"{path}/{weekend}").json
    assert shown["deleted_at"] is not None and shown["name"] == "Weekend 2x"
    assert api.request("PATCH", f"{path}/{weekend}", json={"name": "x"}).status_code == 404

    said = preview(api, program, serial_number=serial, amount=RUPIAH_25_000)
    after = earn(api, serial, amount=RUPIAH_25_000, currency="IDR").json
    assert breakdown(after) == breakdown(said) == (30, [(gold, 15)], 45)
    assert [e[2] for e in entries(app, serial) if e[0] == "bonus"] == [
        example["welcome"]["id"], weekend, gold]

    # A deleted welcome rule welcomes no one.
    assert api.request("DELETE", f"{path}/{example['welcome']['id']}").status_code == 204
    assert create_card(api, program, name="Budi")["balance"] == 0


def test_rules_are_listed_in_the_order_they_run_and_can_be_changed(
        app: Any, api: ApiClient, keys: dict[str, str], example: dict[str, Any]) -> None:
    program = example["program"]
    path = f"/api/v1/programs/{program['id']}/rules"
    for role in ("admin", "marketer", "staff", "pos"):
        response = api.as_(keys[role]).get(path)
        assert response.status_code == 200
        assert [r["name"] for r in response.json["rules"]] == [
            "Weekend 2x", "Welcome", "Gold 1.5x"]
    gold = example["gold"]
    assert gold["conditions"] == {"tiers": ["Gold"]}
    assert (gold["kind"], gold["percent"], gold["points"], gold["stackable"]) == (
        "multiplier", 150, None, True)

    changed = api.as_(keys["marketer"]).request(
        "PATCH", f"{path}/{gold['id']}",
        json={"priority": 20, "percent": 300,
              "conditions": {"tiers": ["Gold", "Bronze"], "time_from": "22:00",
                             "time_to": "02:00",
                             "starts_at": "2026-12-01T00:00:00+07:00"}})
    assert changed.status_code == 200, changed.json
    assert (changed.json["priority"], changed.json["percent"]) == (20, 300)
    assert changed.json["conditions"] == {
        "tiers": ["Bronze", "Gold"], "time_from": "22:00", "time_to": "02:00",
        "starts_at": "2026-12-01T00:00:00+07:00"}
    assert api.get(path).json["rules"][0]["name"] == "Gold 1.5x"
    cleared = api.request("PATCH", f"{path}/{gold['id']}", json={"conditions": None})
    assert cleared.json["conditions"] is None
    assert api.get(f"{path}/{gold['id']}").json == cleared.json


def test_first_purchase_only_and_max_awards_per_member(app: Any, api: ApiClient) -> None:
    program = jakarta_program(app, api)
    first = add_rule(api, program, kind="bonus", name="First coffee", points=50,
                     conditions={"first_purchase_only": True})
    twice = add_rule(api, program, kind="bonus", name="Two treats", points=7,
                     conditions={"max_awards_per_member": 2, "min_amount": 10_000_000})
    serial = create_card(api, program)["serial_number"]
    other = create_card(api, program, name="Budi")["serial_number"]

    got = [breakdown(earn(api, serial, amount=10_000_000, currency="IDR").json)
           for _ in range(4)]
    assert got == [(10, [(first["id"], 50), (twice["id"], 7)], 67),
                   (10, [(twice["id"], 7)], 17), (10, [], 10), (10, [], 10)]
    said = preview(api, program, serial_number=serial, amount=10_000_000)
    assert [r["reason"] for r in said["rules"]] == ["first_purchase_only", "max_awards"]
    # An earn of points alone meets no minimum amount; another member's count is their own.
    assert breakdown(earn(api, other, points=3).json) == (3, [(first["id"], 50)], 53)
    assert breakdown(earn(api, other, amount=10_000_000, currency="IDR").json) == (
        10, [(twice["id"], 7)], 17)
    assert ledger_state(app, serial) == (10 * 4 + 50 + 14, 10 * 4 + 50 + 14, 7)


def test_a_location_rule_applies_to_earns_at_that_store(app: Any, api: ApiClient) -> None:
    program = jakarta_program(app, api)
    store = api.post(f"/api/v1/programs/{program['id']}/locations",
                     json={"name": "Sudirman", "latitude": -6.2, "longitude": 106.8}).json["id"]
    rule = add_rule(api, program, kind="bonus", name="Sudirman opening", points=20,
                    conditions={"location_ids": [store]})
    serial = create_card(api, program)["serial_number"]
    assert breakdown(earn(api, serial, points=5).json) == (5, [], 5)
    assert breakdown(earn(api, serial, points=5, location_id=store).json) == (
        5, [(rule["id"], 20)], 25)
    assert breakdown(preview(api, program, serial_number=serial, amount=5_000_000,
                             location_id=store)) == (5, [(rule["id"], 20)], 25)
    elsewhere = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5, "location_id": 999})
    assert elsewhere.status_code == 422
    assert elsewhere.json["errors"][0]["field"] == "location_id"
    assert ledger_state(app, serial) == (30, 30, 3)


def test_a_window_across_midnight_in_the_programs_time_zone(app: Any, api: ApiClient,
                                                            clock: FakeClock) -> None:
    program = jakarta_program(app, api)
    night = add_rule(api, program, kind="bonus", name="Night owl", points=9,
                     conditions={"time_from": "22:00", "time_to": "02:00"})
    serial = create_card(api, program)["serial_number"]
    move_to(clock, datetime(2026, 11, 25, 17, 30, tzinfo=UTC))  # 00:30 in Jakarta
    assert breakdown(earn(api, serial, points=1).json) == (1, [(night["id"], 9)], 10)
    move_to(clock, datetime(2026, 11, 25, 19, 0, tzinfo=UTC))  # 02:00 in Jakarta
    assert breakdown(earn(api, serial, points=1).json) == (1, [], 1)
    at = "2026-11-25T15:00:00Z"  # 22:00 in Jakarta
    assert breakdown(preview(api, program, tier="Bronze", amount=1_000_000, at=at)) == (
        1, [(night["id"], 9)], 10)


def test_referral_rules_award_after_the_referees_first_purchase(app: Any, api: ApiClient
                                                                ) -> None:
    program = jakarta_program(app, api, referral_bonus_points=50)
    referral = add_rule(api, program, kind="referral", name="Bring a friend",
                        referrer_points=200, referee_points=70)
    first = add_rule(api, program, kind="bonus", name="First purchase", points=10,
                     conditions={"first_purchase_only": True})
    response = api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Ana"})
    ana, code = response.json["card"]["serial_number"], response.json["referral_code"]
    budi = api.post(f"/api/v1/programs/{program['id']}/members",
                    json={"name": "Budi", "referral_code": code}).json["card"]["serial_number"]
    settle(app)
    assert ledger_state(app, ana)[0] == 50  # the program's referral bonus, at enrolment

    body = earn(api, budi, amount=5_000_000, currency="IDR").json
    assert breakdown(body) == (5, [(first["id"], 10)], 15)
    assert body["balance"] == 85  # and the referee's 70
    settle(app)
    assert ledger_state(app, ana)[0] == 250
    earn(api, budi, amount=5_000_000, currency="IDR")  # not a first purchase
    settle(app)
    assert ledger_state(app, ana)[0] == 250
    assert ledger_state(app, budi)[0] == 90
    key = f"rule:{referral['id']}:referral:"
    assert [e[4].startswith(key) for e in entries(app, ana) if e[0] == "bonus"] == [True]
    assert [e[4].startswith(key) for e in entries(app, budi) if e[0] == "bonus"] == [
        False, True]
    # Ana's first purchase is one although the referral bonus was an earn; she was referred
    # by no one.
    assert breakdown(earn(api, ana, points=1).json) == (1, [(first["id"], 10)], 11)


def test_welcome_rules_follow_their_conditions(app: Any, api: ApiClient,
                                               clock: FakeClock) -> None:
    program = jakarta_program(app, api)
    add_rule(api, program, kind="welcome", name="Welcome", points=25)
    add_rule(api, program, kind="welcome", name="Gold welcome", points=500,
             conditions={"tiers": ["Gold"]})
    add_rule(api, program, kind="welcome", name="Launch week", points=40,
             conditions={"ends_at": "2026-12-01T00:00:00+07:00"})
    card = create_card(api, program)
    assert card["balance"] == 65
    move_to(clock, datetime(2026, 12, 1, 0, 0, tzinfo=JAKARTA))
    assert create_card(api, program, name="Budi")["balance"] == 25
    assert ledger_state(app, card["serial_number"]) == (65, 65, 2)


def test_birthdays_are_awarded_once_a_year_on_the_local_date(app: Any, api: ApiClient) -> None:
    program = jakarta_program(app, api)
    rule = add_rule(api, program, kind="birthday", name="Happy birthday", points=75)
    people = {name: create_card(api, program, name=name,
                                **({"birthday": day} if day else {}))["serial_number"]
              for name, day in [("Ana", "1990-02-28"), ("Budi", "1992-02-29"),
                                ("Citra", "1985-03-01"), ("Dewi", "2000-02-28"),
                                ("Eko", None), ("Fitri", "1999-02-28")]}
    assert api.post(f"/api/v1/cards/{people['Dewi']}/void",
                    json={"reason": "lost"}).status_code == 200
    elsewhere = jakarta_program(app, api, slug="elsewhere")
    add_rule(api, elsewhere, kind="birthday", name="HBD", points=5)
    with app.app_context():
        db.session.execute(update(Program).where(Program.id == elsewhere["id"])
                           .values(time_zone="America/New_York"))
        db.session.commit()
    gita = create_card(api, elsewhere, name="Gita", birthday="1980-02-28")["serial_number"]

    def run(moment: datetime) -> int:
        with app.app_context():
            return rules.award_birthdays(moment, batch_size=1)

    def balances() -> dict[str, int]:
        return {name: ledger_state(app, serial)[0] for name, serial in people.items()}

    # 27 Feb 2027 18:00 UTC: 28 Feb 01:00 in Jakarta (2027 has no 29 Feb), still 27 Feb
    # 13:00 in New York.
    assert run(datetime(2027, 2, 27, 18, 0, tzinfo=UTC)) == 3
    assert run(datetime(2027, 2, 27, 23, 0, tzinfo=UTC)) == 0  # once a year
    assert balances() == {"Ana": 75, "Budi": 75, "Citra": 0, "Dewi": 0, "Eko": 0, "Fitri": 75}
    assert ledger_state(app, gita)[0] == 0
    assert run(datetime(2027, 2, 28, 18, 0, tzinfo=UTC)) == 2  # Citra; Gita in New York
    assert ledger_state(app, gita)[0] == 5
    # 2028 has a 29 February: Budi's birthday is then, the others' the day before.
    assert run(datetime(2028, 2, 28, 6, 0, tzinfo=UTC)) == 3  # Ana, Fitri and Gita's 28th
    assert run(datetime(2028, 2, 29, 1, 0, tzinfo=UTC)) == 1
    assert balances() == {"Ana": 150, "Budi": 150, "Citra": 75, "Dewi": 0, "Eko": 0,
                          "Fitri": 150}
    assert [e[4] for e in entries(app, people["Budi"])] == [
        f"rule:{rule['id']}:birthday:2027", f"rule:{rule['id']}:birthday:2028"]


def test_the_till_shows_the_breakdown_and_its_undo_takes_back_the_awards(
        app: Any, api: ApiClient, keys: dict[str, str], clock: FakeClock,
        example: dict[str, Any]) -> None:
    serial = create_card(api, example["program"])["serial_number"]
    move_to(clock, SATURDAY)
    with app.app_context():
        principal = api_keys.authenticate(keys["staff"])
        assert principal is not None
        alice = TillActor(kind="api_key", id=principal.id, name="Alice")
        scan_id = redemption.scan(card_code(app, serial), staff=alice).scan_id
        action = till.earn_at_till(scan_id, staff=alice, locale="id", amount="150.000",
                                   idempotency_key="tap-1")
        assert (action.points, action.total_points, action.balance) == (15, 30, 130)
        assert [(a.rule_id, a.points) for a in action.rules] == [(example["weekend"]["id"], 15)]
        again = till.earn_at_till(scan_id, staff=alice, locale="id", amount="150.000",
                                  idempotency_key="tap-1")
        assert (again.replayed, again.total_points, again.balance) == (True, 30, 130)
        undone = till.undo_last(alice)
        assert (undone.points, undone.balance) == (-30, 100)
        db.session.rollback()
    assert [e[:2] for e in entries(app, serial)] == [
        ("bonus", 100), ("earn", 15), ("bonus", 15), ("reverse", -30)]
    assert ledger_state(app, serial) == (100, 100, 4)


# (what, path under the program, body, status, field at fault)
BAD_RULES: list[tuple[str, str, Any, int, str | None]] = [
    ("welcome without points", "", {"kind": "welcome", "name": "W"}, 422, "points"),
    ("birthday without points", "", {"kind": "birthday", "name": "B"}, 422, "points"),
    ("bonus without points", "", {"kind": "bonus", "name": "B"}, 422, "points"),
    ("multiplier without percent", "", {"kind": "multiplier", "name": "M"}, 422, "percent"),
    ("multiplier of 100%", "", {"kind": "multiplier", "name": "M", "percent": 100}, 422,
     "percent"),
    ("referral without points", "", {"kind": "referral", "name": "R"}, 422, "referrer_points"),
    ("referral of nothing", "", {"kind": "referral", "name": "R", "referrer_points": 0,
                                 "referee_points": 0}, 422, "referrer_points"),
    ("percent on a bonus", "", {"kind": "bonus", "name": "B", "points": 5, "percent": 200},
     422, "percent"),
    ("zero points", "", {"kind": "bonus", "name": "B", "points": 0}, 422, "points"),
    ("points as text", "", {"kind": "bonus", "name": "B", "points": "5"}, 422, "points"),
    ("unknown kind", "", {"kind": "cashback", "name": "C", "points": 5}, 422, "kind"),
    ("no name", "", {"kind": "bonus", "points": 5}, 422, "name"),
    ("unknown condition", "", {"kind": "bonus", "name": "B", "points": 5,
                               "conditions": {"weather": "sunny"}}, 422, "conditions.weather"),
    ("day 0", "", {"kind": "bonus", "name": "B", "points": 5,
                   "conditions": {"days_of_week": [0]}}, 422, "conditions.days_of_week.0"),
    ("day 8", "", {"kind": "bonus", "name": "B", "points": 5,
                   "conditions": {"days_of_week": [8]}}, 422, "conditions.days_of_week.0"),
    ("24:00", "", {"kind": "bonus", "name": "B", "points": 5,
                   "conditions": {"time_from": "24:00", "time_to": "02:00"}}, 422,
     "conditions.time_from"),
    ("half a window", "", {"kind": "bonus", "name": "B", "points": 5,
                           "conditions": {"time_from": "10:00"}}, 422, "conditions.time_to"),
    ("an empty window", "", {"kind": "bonus", "name": "B", "points": 5,
                             "conditions": {"time_from": "10:00", "time_to": "10:00"}}, 422,
     "conditions.time_to"),
    ("a start without offset", "", {"kind": "bonus", "name": "B", "points": 5,
                                    "conditions": {"starts_at": "2026-12-01T00:00:00"}}, 422,
     "conditions.starts_at"),
    ("an end before the start", "", {"kind": "bonus", "name": "B", "points": 5, "conditions": {
        "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-11-01T00:00:00Z"}}, 422,
     "conditions.ends_at"),
    ("unknown tier", "", {"kind": "bonus", "name": "B", "points": 5,
                          "conditions": {"tiers": ["Platinum"]}}, 422, "conditions.tiers"),
    ("unknown location", "", {"kind": "bonus", "name": "B", "points": 5,
                              "conditions": {"location_ids": [999]}}, 422,
     "conditions.location_ids"),
    ("welcome with a minimum amount", "", {"kind": "welcome", "name": "W", "points": 5,
                                           "conditions": {"min_amount": 100}}, 422,
     "conditions.min_amount"),
    ("birthday with a time window", "", {"kind": "birthday", "name": "B", "points": 5,
                                         "conditions": {"time_from": "10:00",
                                                        "time_to": "11:00"}}, 422,
     "conditions.time_from"),
    ("conditions as a list", "", {"kind": "bonus", "name": "B", "points": 5,
                                  "conditions": [1]}, 422, "conditions._schema"),
    ("preview: card and tier", "/preview", {"serial_number": "X", "tier": "Gold",
                                            "amount": 1, "currency": "IDR"}, 422, "tier"),
    ("preview: unknown tier", "/preview", {"tier": "Platinum", "amount": 10_000_000,
                                           "currency": "IDR"}, 422, "tier"),
    ("preview: unknown card", "/preview", {"serial_number": "NOPE", "amount": 10_000_000,
                                           "currency": "IDR"}, 422, "serial_number"),
    ("preview: other currency", "/preview", {"amount": 10_000_000, "currency": "THB"}, 422,
     "currency"),
    ("preview: too little", "/preview", {"amount": 5, "currency": "IDR"}, 422, "amount"),
    ("preview: no amount", "/preview", {"currency": "IDR"}, 422, "amount"),
    ("preview: unknown location", "/preview", {"amount": 10_000_000, "currency": "IDR",
                                               "location_id": 999}, 422, "location_id"),
    ("preview: naive moment", "/preview", {"amount": 10_000_000, "currency": "IDR",
                                           "at": "2026-11-28T10:00:00"}, 422, "at"),
]


@pytest.mark.parametrize(("what", "path", "body", "status", "field"), BAD_RULES,
                         ids=[case[0] for case in BAD_RULES])
def test_bad_rules_are_problems_and_write_nothing(app: Any, api: ApiClient, what: str,
                                                  path: str, body: Any, status: int,
                                                  field: str | None) -> None:
    program = jakarta_program(app, api)
    response = api.post(f"/api/v1/programs/{program['id']}/rules{path}", json=body)
    assert response.status_code == status, (what, response.json)
    assert response.content_type == "application/problem+json"
    if field is not None:
        assert field in [e["field"] for e in response.json["errors"]], response.json
    assert row_counts(app, EarningRule, LedgerEntry) == (0, 0)


def test_rule_changes_that_do_not_fit_are_problems(app: Any, api: ApiClient,
                                                   keys: dict[str, str]) -> None:
    program = jakarta_program(app, api)
    path = f"/api/v1/programs/{program['id']}/rules"
    bonus = add_rule(api, program, kind="bonus", name="B", points=5)
    referral = add_rule(api, program, kind="referral", name="R", referrer_points=5)
    cases = [
        (api, "PATCH", f"{path}/{bonus['id']}", {}, 422),
        (api, "PATCH", f"{path}/{bonus['id']}", {"percent": 200}, 422),
        (api, "PATCH", f"{path}/{bonus['id']}", {"kind": "multiplier"}, 422),
        (api, "PATCH", f"{path}/{bonus['id']}", {"points": None}, 422),
        (api, "PATCH", f"{path}/{referral['id']}", {"referrer_points": None}, 422),
        (api, "PATCH", f"{path}/999", {"name": "x"}, 404),
        (api, "GET", f"{path}/999", None, 404),
        (api, "DELETE", f"{path}/999", None, 404),
        (api, "GET", "/api/v1/programs/999/rules", None, 404),
        (api, "POST", "/api/v1/programs/999/rules", {"kind": "bonus", "name": "B",
                                                     "points": 1}, 404),
        (api.as_(keys["pos"]), "POST", path, {"kind": "bonus", "name": "B", "points": 1}, 403),
        (api.as_(keys["staff"]), "PATCH", f"{path}/{bonus['id']}", {"name": "x"}, 403),
        (api.as_(keys["pos"]), "DELETE", f"{path}/{bonus['id']}", None, 403),
        (api.as_(None), "GET", path, None, 401),
        (api.as_(None), "POST", f"{path}/preview", {"amount": 1, "currency": "IDR"}, 401),
    ]
    for client, method, url, body, status in cases:
        response = client.request(method, url, json=body)
        assert response.status_code == status, (method, url, body, response.json)
        assert response.content_type == "application/problem+json"
    assert api.get(f"{path}/{bonus['id']}").json == bonus
    assert api.get(f"{path}/{referral['id']}").json == referral
    # Another program's rule is not this program's.
    other = create_program(api, slug="other", tiers=[])
    assert api.get(f"/api/v1/programs/{other['id']}/rules/{bonus['id']}").status_code == 404
    assert row_counts(app, LedgerEntry) == (0,)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(EarningRule)) == 2
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.kind == EntryKind.BONUS)) == 0


def test_awards_on_a_pending_purchase_are_pending_with_it(app: Any, api: ApiClient) -> None:
    """With pending_days, a rule's award on an earn waits with the earn (its own lot), and the
    breakdown, a retry's too, still says what it gave."""
    from app.loyalty.models import PointLot

    program = jakarta_program(app, api)
    with app.app_context():
        db.session.execute(update(Program).where(Program.id == program["id"])
                           .values(pending_days=3))
        db.session.commit()
    bonus = add_rule(api, program, kind="bonus", name="Double date", points=5)
    serial = create_card(api, program)["serial_number"]
    first = earn(api, serial, "p-1", points=10).json
    again = earn(api, serial, "p-1", points=10).json
    assert breakdown(first) == breakdown(again) == (10, [(bonus["id"], 5)], 15)
    assert (first["balance"], again["balance"]) == (0, 0)
    with app.app_context():
        lots = db.session.execute(select(PointLot.points, PointLot.remaining, PointLot.pending)
                                  .order_by(PointLot.id)).all()
        pending = db.session.execute(select(LedgerEntry.kind, LedgerEntry.pending_points)
                                     .order_by(LedgerEntry.id)).all()
        db.session.rollback()
    assert [tuple(r) for r in lots] == [(10, 10, True), (5, 5, True)]
    assert [(str(k), n) for k, n in pending] == [("earn", 10), ("bonus", 5)]


def test_parallel_retries_and_birthday_runs_award_once(pg_app: Any) -> None:
    """On PostgreSQL: 20 copies of one earn (one Idempotency-Key) and 20 earns of their own
    on a card with a first-purchase rule, and five birthday runs at once, award once each."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.factories import admin_api

    api = admin_api(pg_app)
    program = create_program(api)
    bonus = add_rule(api, program, kind="bonus", name="Every visit", points=3)
    first = add_rule(api, program, kind="bonus", name="First visit", points=50,
                     conditions={"first_purchase_only": True})
    add_rule(api, program, kind="birthday", name="Birthday", points=7)
    serial = create_card(api, program, birthday="1990-06-15")["serial_number"]
    other = create_card(api, program, name="Budi", birthday="1991-06-15")["serial_number"]
    n = 20
    barrier = threading.Barrier(n)

    def same_earn(_: int) -> tuple[int, Any]:
        barrier.wait()
        response = ApiClient(pg_app.test_client(), api.key).post(
            f"/api/v1/cards/{serial}/earn", json={"points": 10},
            headers={"Idempotency-Key": "order-1"})
        return response.status_code, breakdown(response.json)

    with ThreadPoolExecutor(max_workers=n) as pool:
        answers = list(pool.map(same_earn, range(n)))
    assert answers == [(201, (10, [(bonus["id"], 3), (first["id"], 50)], 63))] * n
    assert ledger_state(pg_app, serial) == (63, 63, 3)

    def own_earn(i: int) -> Any:
        barrier.wait()
        response = ApiClient(pg_app.test_client(), api.key).post(
            f"/api/v1/cards/{other}/earn", json={"points": 1},
            headers={"Idempotency-Key": f"visit-{i}"})
        return response.status_code, breakdown(response.json)

    with ThreadPoolExecutor(max_workers=n) as pool:
        answers = list(pool.map(own_earn, range(n)))
    assert [a[1][2] for a in answers].count(54) == 1  # one first purchase
    assert sorted(a[1][2] for a in answers) == [4] * (n - 1) + [54]
    assert ledger_state(pg_app, other)[0] == n * 4 + 50

    runs = threading.Barrier(5)

    def birthdays(_: int) -> int:
        with pg_app.app_context():
            runs.wait()
            return rules.award_birthdays(datetime(2027, 6, 15, 12, 0, tzinfo=UTC))

    with ThreadPoolExecutor(max_workers=5) as pool:
        assert sum(pool.map(birthdays, range(5))) == 2
    assert ledger_state(pg_app, serial) == (70, 70, 4)
