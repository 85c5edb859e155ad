"""Earning rules as the pure evaluation sees them (app.loyalty.rules.evaluate): each
condition, time zones, windows across midnight, priority and stacking. No database: the earn
and the preview both call this function (tests/loyalty/test_rules.py checks they agree)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.loyalty.models import RuleKind
from app.loyalty.rules import Context, Rule, birthdays_on, evaluate, parse_conditions

JAKARTA = ZoneInfo("Asia/Jakarta")  # UTC+7, no daylight saving
NEW_YORK = ZoneInfo("America/New_York")
# Saturday 28 November 2026, 10:00 in Jakarta.
SATURDAY = datetime(2026, 11, 28, 10, 0, tzinfo=JAKARTA)
WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=JAKARTA)


def rule(rule_id: int = 1, *, kind: RuleKind = RuleKind.BONUS, points: int | None = 10,
         percent: int | None = None, priority: int = 0, stackable: bool = True,
         **conditions: Any) -> Rule:
    if kind is RuleKind.MULTIPLIER:
        points = None
    return Rule(rule_id, kind, f"rule {rule_id}", points=points, percent=percent,
                priority=priority, stackable=stackable,
                conditions=parse_conditions(conditions))


def context(**fields: Any) -> Context:
    return Context(**{"at": SATURDAY, "time_zone": JAKARTA, "base_points": 40,
                      "tier": "Gold", "amount": 40_000_000, "currency": "IDR", **fields})


def one(r: Rule, **fields: Any) -> tuple[bool, int, str | None]:
    (outcome,) = evaluate([r], context(**fields))
    return outcome.applies, outcome.points, outcome.reason


def test_a_rule_without_conditions_applies() -> None:
    assert one(rule(points=25)) == (True, 25, None)


@pytest.mark.parametrize(("percent", "base", "extra"), [
    (200, 40, 40), (150, 40, 20), (150, 45, 22), (101, 99, 0), (101, 100, 1), (300, 7, 14),
])
def test_a_multiplier_gives_the_floor_of_its_extra_percent(percent: int, base: int,
                                                           extra: int) -> None:
    r = rule(kind=RuleKind.MULTIPLIER, percent=percent)
    assert one(r, base_points=base) == (True, extra, None)


def test_tiers() -> None:
    r = rule(tiers=["Gold", "Platinum"])
    assert one(r)[0] is True
    assert one(r, tier="Silver") == (False, 0, "tier")
    assert one(r, tier=None) == (False, 0, "tier")


def test_locations() -> None:
    r = rule(location_ids=[3, 4])
    assert one(r, location_id=4)[0] is True
    assert one(r, location_id=5)[2] == "location"
    assert one(r, location_id=None)[2] == "location"


def test_min_amount_and_an_earn_without_an_amount() -> None:
    r = rule(min_amount=5_000_000)
    assert one(r, amount=5_000_000)[0] is True
    assert one(r, amount=4_999_999)[2] == "min_amount"
    assert one(r, amount=None)[2] == "min_amount"


def test_days_of_week_are_the_local_date_in_the_programs_time_zone() -> None:
    weekend = rule(days_of_week=[6, 7])
    assert one(weekend)[0] is True
    assert one(weekend, at=WEDNESDAY)[2] == "day_of_week"
    # Friday 23:30 UTC is already Saturday 06:30 in Jakarta, still Friday in New York.
    friday_night_utc = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    assert one(weekend, at=friday_night_utc)[0] is True
    assert one(weekend, at=friday_night_utc, time_zone=NEW_YORK)[2] == "day_of_week"
    assert one(weekend, at=friday_night_utc, time_zone=ZoneInfo("UTC"))[2] == "day_of_week"


def test_a_time_window_is_local_time_from_included_to_excluded() -> None:
    happy_hour = rule(time_from="15:00", time_to="17:00")

    def at(hour: int, minute: int = 0, zone: ZoneInfo = JAKARTA) -> datetime:
        return datetime(2026, 11, 25, hour, minute, tzinfo=zone)

    assert one(happy_hour, at=at(15))[0] is True
    assert one(happy_hour, at=at(16, 59))[0] is True
    assert one(happy_hour, at=at(17))[2] == "time_window"
    assert one(happy_hour, at=at(14, 59))[2] == "time_window"
    # 08:30 UTC is 15:30 in Jakarta.
    assert one(happy_hour, at=at(8, 30, ZoneInfo("UTC")))[0] is True


def test_a_window_across_midnight() -> None:
    night = rule(time_from="22:00", time_to="02:00")
    for hour, minute, applies in [(22, 0, True), (23, 59, True), (0, 0, True), (1, 59, True),
                                  (2, 0, False), (12, 0, False), (21, 59, False)]:
        moment = datetime(2026, 11, 25, hour, minute, tzinfo=JAKARTA)
        assert one(night, at=moment)[0] is applies, (hour, minute)


def test_a_window_in_a_zone_with_daylight_saving() -> None:
    morning = rule(time_from="09:00", time_to="10:00")
    # 13:30 UTC is 09:30 in New York in summer (EDT) and 08:30 in winter (EST).
    summer = datetime(2026, 7, 1, 13, 30, tzinfo=UTC)
    winter = datetime(2026, 12, 1, 13, 30, tzinfo=UTC)
    assert one(morning, at=summer, time_zone=NEW_YORK)[0] is True
    assert one(morning, at=winter, time_zone=NEW_YORK)[2] == "time_window"


def test_start_included_end_excluded() -> None:
    campaign = rule(starts_at="2026-11-28T00:00:00+07:00", ends_at="2026-11-30T00:00:00+07:00")
    assert one(campaign, at=datetime(2026, 11, 28, 0, 0, tzinfo=JAKARTA))[0] is True
    assert one(campaign, at=datetime(2026, 11, 27, 23, 59, tzinfo=JAKARTA))[2] == "not_started"
    assert one(campaign, at=datetime(2026, 11, 30, 0, 0, tzinfo=JAKARTA))[2] == "ended"
    # The same instants written in UTC.
    assert one(campaign, at=datetime(2026, 11, 29, 16, 59, tzinfo=UTC))[0] is True
    assert one(campaign, at=datetime(2026, 11, 29, 17, 0, tzinfo=UTC))[2] == "ended"


def test_first_purchase_only() -> None:
    first = rule(first_purchase_only=True)
    assert one(first, is_first_purchase=True)[0] is True
    assert one(first, is_first_purchase=False)[2] == "first_purchase_only"


def test_max_awards_per_member() -> None:
    twice = rule(7, max_awards_per_member=2)
    assert one(twice, awards={7: 1})[0] is True
    assert one(twice, awards={7: 2})[2] == "max_awards"
    assert one(twice, awards={8: 5})[0] is True


def test_every_condition_must_hold() -> None:
    r = rule(tiers=["Gold"], days_of_week=[6], min_amount=1_000_000, time_from="09:00",
             time_to="11:00")
    assert one(r)[0] is True
    assert one(r, tier="Silver")[0] is False
    assert one(r, amount=10)[0] is False


def test_rules_run_by_priority_then_id_and_a_non_stackable_one_stops_those_below() -> None:
    weekend = rule(1, kind=RuleKind.MULTIPLIER, percent=200, priority=10, stackable=False,
                   days_of_week=[6, 7])
    gold = rule(2, kind=RuleKind.MULTIPLIER, percent=150, tiers=["Gold"])
    above = rule(3, points=5, priority=20)
    same_priority_later = rule(4, points=1, priority=10)
    rules = [gold, same_priority_later, weekend, above]

    saturday = evaluate(rules, context())
    assert [(o.rule_id, o.applies, o.points, o.reason) for o in saturday] == [
        (3, True, 5, None), (1, True, 40, None), (4, False, 0, "stopped_by:1"),
        (2, False, 0, "stopped_by:1")]

    wednesday = evaluate(rules, context(at=WEDNESDAY))
    assert [(o.rule_id, o.applies, o.points, o.reason) for o in wednesday] == [
        (3, True, 5, None), (1, False, 0, "day_of_week"), (4, True, 1, None),
        (2, True, 20, None)]


def test_a_non_stackable_rule_that_does_not_apply_stops_nothing() -> None:
    blocker = rule(1, priority=5, stackable=False, tiers=["Platinum"])
    below = rule(2, points=3)
    assert [o.applies for o in evaluate([blocker, below], context())] == [False, True]


@pytest.mark.parametrize(("day", "dates"), [
    (date(2027, 2, 28), [(2, 28), (2, 29)]),  # 2027 has no Feb 29
    (date(2028, 2, 28), [(2, 28)]),
    (date(2028, 2, 29), [(2, 29)]),
    (date(2100, 2, 28), [(2, 28), (2, 29)]),  # not a leap year
    (date(2000, 2, 28), [(2, 28)]),
    (date(2027, 3, 1), [(3, 1)]),
])
def test_february_29_birthdays_are_on_february_28_without_a_leap_day(
        day: date, dates: list[tuple[int, int]]) -> None:
    assert birthdays_on(day) == dates
