"""A program's figures for a range of days: the JSON of ``GET /programs/<id>/stats``.

Every figure is defined in docs/metrics.md; this module only adds up the days of
:class:`app.analytics.rollup.DaySeries`. The shape is the contract of the stats API, the
console's dashboard and the benchmark (/work/notes/stats-shape.md): keys are added, never
renamed.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app import dbutil
from app.analytics import rollup
from app.analytics.rollup import DaySeries, days
from app.campaigns import service as campaigns
from app.campaigns.models import Campaign
from app.extensions import db
from app.loyalty.models import Card, CardStatus, EarningRule, Program, ProgramLocation
from app.timeutil import now as clock_now

INTERVALS = ("day", "week")
MAX_RANGE = timedelta(days=400)
DEFAULT_DAYS = 30

#: The series, in the order of the CSV's columns.
SERIES = ("new_members", "active_members", "points_issued", "points_redeemed",
          "points_expired", "points_clawed_back", "purchases", "purchase_amount",
          "apple_installs", "apple_removals", "google_installs", "google_removals", "nps",
          "nps_responses")
ISSUED_KINDS = ("earn", "bonus", "adjust", "reverse")
CLAWED = ("clawed_refund", "clawed_reverse", "clawed_adjust")


class BadRange(ValueError):
    """The range cannot be used (docs/metrics.md, "The range")."""


def _midnight(tz: ZoneInfo, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def default_range(program: Program, now: datetime) -> tuple[datetime, datetime]:
    """The last 30 days up to ``now``: from the local midnight 30 days before today."""
    tz = rollup.zone(program)
    today = now.astimezone(tz).date()
    return _midnight(tz, today - timedelta(days=DEFAULT_DAYS)), now.astimezone(tz)


class Range:
    """A range as applied: ``start`` at a local midnight, ``end`` at a local midnight or
    ``now``; its local days ``first``..``last`` (``n`` of them); the previous range: the
    ``n`` whole days before ``first``."""

    def __init__(self, program: Program, start: datetime, end: datetime,
                 now: datetime) -> None:
        if start.tzinfo is None or end.tzinfo is None:
            raise BadRange("Give times with a UTC offset (or dates).")
        if start >= end:
            raise BadRange("`from` must be before `to`.")
        if end - start > MAX_RANGE:
            raise BadRange("The range is longer than 400 days.")
        tz = self.tz = rollup.zone(program)
        self.first = start.astimezone(tz).date()
        self.start = _midnight(tz, self.first)
        local_end = end.astimezone(tz)
        end_day = local_end.date()
        if local_end != _midnight(tz, end_day):
            end_day += timedelta(days=1)
        self.end = min(_midnight(tz, end_day), now.astimezone(tz))
        if self.end <= self.start:
            raise BadRange("The range must start before now.")
        self.last = (self.end - timedelta(microseconds=1)).astimezone(tz).date()
        self.n = (self.last - self.first).days + 1
        self.prev_first = self.first - timedelta(days=self.n)
        self.prev_last = self.first - timedelta(days=1)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _nps(promoters: int, detractors: int, responses: int) -> float | None:
    return round(100 * (promoters - detractors) / responses, 1) if responses else None


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    return value


class _Figures:
    """The figures of one range of days (``first``..``last``) and its previous range."""

    def __init__(self, data: DaySeries, program: Program) -> None:
        self.data, self.program = data, program

    def issued(self, first: date, last: date) -> dict[str, int]:
        return {kind: self.data.total(f"issued_{kind}", first, last) for kind in ISSUED_KINDS}

    def additive(self, first: date, last: date) -> dict[str, Any]:
        t = self.data.total
        purchases = t("purchases_gross", first, last) - t("purchases_reversed", first, last)
        amount = (t("purchase_amount_gross", first, last)
                  - t("purchase_amount_reversed", first, last) - t("refund_amount", first, last))
        return {
            "new_members": t("new_members", first, last),
            "apple_installs": t("apple_installs", first, last),
            "apple_removals": t("apple_removals", first, last),
            "google_installs": t("google_installs", first, last),
            "google_removals": t("google_removals", first, last),
            "points_issued": sum(self.issued(first, last).values()),
            "points_redeemed": t("points_redeemed", first, last),
            "points_expired": t("points_expired", first, last),
            "points_clawed_back": sum(t(name, first, last) for name in CLAWED),
            "purchases": purchases,
            "purchase_amount": amount,
            "visits": t("visits", first, last),
            **self.nps(first, last),
        }

    def nps(self, first: date, last: date) -> dict[str, Any]:
        t = self.data.total
        promoters, detractors = t("nps_promoters", first, last), t("nps_detractors", first, last)
        responses = promoters + detractors + t("nps_passives", first, last)
        return {"nps": _nps(promoters, detractors, responses), "nps_responses": responses}

    def median_purchase(self, first: date, last: date) -> int | None:
        buckets = sorted((int(k), n) for k, n in
                         self.data.keyed("purchase_bucket", first, last).items())
        count = sum(n for _, n in buckets)
        if not count:
            return None
        rank, seen = (count + 1) // 2, 0
        for bucket, n in buckets:
            seen += n
            if seen >= rank:
                return bucket
        return None  # pragma: no cover

    def period(self, first: date, last: date, n_days: int) -> dict[str, Any]:
        """Every figure of the days ``first``..``last`` (``n_days`` of them)."""
        data, program = self.data, self.program
        values = self.additive(first, last)
        before = first - timedelta(days=n_days)
        visitors = data.distinct("visit", first, last)
        earlier_visitors = data.distinct("visit", before, first - timedelta(days=1))
        churned = earlier_visitors - data.in_both("visit", before, first, last)
        purchasers = data.distinct("purchase", first, last)
        liability = data.up_to("net_points", last)
        value_1000 = program.value_of_1000_points
        purchases, amount = values["purchases"], values["purchase_amount"]
        values.update({
            "members": data.up_to("new_members", last),
            "active_members": visitors,
            "active_members_30d": data.distinct("visit", last - timedelta(days=29), last),
            "active_members_90d": data.distinct("visit", last - timedelta(days=89), last),
            # Every install and removal is an event (app.wallet.events), so what is
            # installed at the end is their difference: the registrations not removed and
            # the saved Google objects, when the range ends now (docs/metrics.md).
            "apple_installed_now": data.up_to("apple_installs", last)
            - data.up_to("apple_removals", last),
            "google_installed_now": data.up_to("google_installs", last)
            - data.up_to("google_removals", last),
            "liability_points": liability,
            "liability_money": liability * value_1000 // 1000 if value_1000 is not None
            else None,
            "redemption_rate_points": _ratio(values["points_redeemed"], values["points_issued"]),
            "redemption_rate_members": _ratio(data.distinct("redeem", first, last), visitors),
            "members_redeemed": data.distinct("redeem", first, last),
            "purchasers": purchasers,
            "repeat_purchase_rate": _ratio(data.returning("purchase", first, last), purchasers),
            "churned_members": churned,
            "churn_rate": _ratio(churned, earlier_visitors),
            "average_purchase": amount // purchases if purchases > 0 else None,
            "median_purchase": self.median_purchase(first, last),
            "visits_per_member": _ratio(values["visits"], visitors),
            "customer_lifetime_value": amount * earlier_visitors // (visitors * churned)
            if visitors and churned else None,
        })
        return values


def compute(program: Program, start: datetime, end: datetime,
            interval: str = "day") -> dict[str, Any]:
    """The figures and series of ``program`` for ``start``..``end`` (see the module doc).
    Rolls up the program's closed days first (commits); raises :class:`BadRange`."""
    if interval not in INTERVALS:
        raise BadRange(f"Unknown interval {interval!r}: day or week.")
    now = clock_now()
    r = Range(program, start, end, now)
    for _attempt in range(3):
        try:
            rollup.catch_up(program, now)
            break
        except OperationalError:
            # Busy (another sweep holds the lock; on SQLite, another connection wrote since
            # this transaction's first read, which fails its write at once): try again in a
            # new transaction, then give up: the days not rolled up are computed below.
            db.session.rollback()
    with dbutil.planner_settings():  # one core per request: dashboards are few, postings many
        return _compute(program, r, interval, now)


def _compute(program: Program, r: Range, interval: str, now: datetime) -> dict[str, Any]:
    gap_first = min(r.prev_first - timedelta(days=r.n), r.prev_last - timedelta(days=89))
    data = DaySeries(program, r.prev_first, gap_first, r.last, r.end)
    data.prefetch_keyed(["purchase_bucket", "rule_points", "nps_answers"],
                        [(r.first, r.last), (r.prev_first, r.prev_last)])
    figures = _Figures(data, program)
    current = figures.period(r.first, r.last, r.n)
    previous = figures.period(r.prev_first, r.prev_last, r.n)
    today = rollup.local_day(r.tz, r.end)
    for days_ahead in (30, 90):
        current[f"expiring_{days_ahead}d_points"] = data.expiring(today, days_ahead, now)
    voided_now = _voided(program, r.end), _voided(program, r.start)
    current["members"] -= voided_now[0]
    previous["members"] -= voided_now[1]

    names = ("members", "new_members", "apple_installs", "apple_removals",
             "apple_installed_now", "google_installs", "google_removals",
             "google_installed_now", "active_members_30d", "active_members_90d",
             "points_issued", "points_redeemed", "points_expired", "points_clawed_back",
             "liability_points", "liability_money", "expiring_30d_points",
             "expiring_90d_points", "redemption_rate_points", "redemption_rate_members",
             "repeat_purchase_rate", "churn_rate", "churned_members", "purchases",
             "purchase_amount", "average_purchase", "median_purchase", "visits_per_member",
             "customer_lifetime_value", "nps", "nps_responses", "active_members",
             "members_redeemed", "purchasers", "visits")
    result: dict[str, Any] = {
        "program_id": program.id,
        "time_zone": program.time_zone,
        "currency": program.currency,
        "from": r.start.isoformat(),
        "to": r.end.isoformat(),
        "interval": interval,
        "previous": {"from": _midnight(r.tz, r.prev_first).isoformat(),
                     "to": r.start.isoformat()},
        "figures": {name: {"value": current.get(name), "previous": previous.get(name)}
                    for name in names},
        "points_issued_by_kind": figures.issued(r.first, r.last),
        "points_issued_by_rule": _by_rule(program, data.keyed("rule_points", r.first, r.last)),
        "nps_by_location": _nps_by_location(program,
                                            data.keyed("nps_answers", r.first, r.last)),
        "series": _series(figures, data, r, interval),
    }
    result["campaigns"] = _campaigns(program, r)
    return result


def _voided(program: Program, before: datetime) -> int:
    return db.session.scalar(select(func.count()).select_from(Card).where(
        Card.program_id == program.id, Card.status == CardStatus.VOIDED,
        Card.member_joined_at < before)) or 0


def _by_rule(program: Program, points: dict[str, int]) -> list[dict[str, Any]]:
    ids = [int(k) for k, v in points.items() if v]
    names = dict(db.session.execute(select(EarningRule.id, EarningRule.name).where(
        EarningRule.program_id == program.id, EarningRule.id.in_(ids))).all()) \
        if ids else {}
    found = [{"rule_id": i, "name": names.get(i), "points": points[str(i)]} for i in ids]
    return sorted(found, key=lambda row: (-row["points"], row["rule_id"]))


def _nps_by_location(program: Program, answers: dict[str, int]) -> list[dict[str, Any]]:
    places: dict[int | None, dict[str, int]] = {}
    for key, n in answers.items():
        location, score = key.split(":")
        counts = places.setdefault(int(location) if location else None,
                                   {"promoters": 0, "passives": 0, "detractors": 0})
        score_value = int(score)
        kind = "promoters" if score_value >= 9 else "detractors" if score_value <= 6 \
            else "passives"
        counts[kind] += n
    names = dict(db.session.execute(select(ProgramLocation.id, ProgramLocation.name).where(
        ProgramLocation.program_id == program.id)).all())
    rows = []
    for location, c in places.items():
        responses = sum(c.values())
        rows.append({"location_id": location, "name": names.get(location) if location
                     else None, "nps": _nps(c["promoters"], c["detractors"], responses),
                     "responses": responses, **c})
    return sorted(rows, key=lambda row: (row["location_id"] is None, row["location_id"] or 0))


def _periods(r: Range, interval: str) -> list[tuple[date, date]]:
    step = 1 if interval == "day" else 7
    found = []
    for first in days(r.first, r.last):
        if (first - r.first).days % step == 0:
            found.append((first, min(first + timedelta(days=step - 1), r.last)))
    return found


def _series(figures: _Figures, data: DaySeries, r: Range, interval: str) -> dict[str, list]:
    series: dict[str, list] = {"periods": []}
    for name in SERIES:
        series[name] = []
    for first, last in _periods(r, interval):
        series["periods"].append(first.isoformat())
        values = figures.additive(first, last)
        values["active_members"] = data.distinct("visit", first, last)
        for name in SERIES:
            series[name].append(values[name])
    return series


def _campaigns(program: Program, r: Range) -> list[dict[str, Any]]:
    """The campaigns started in the range, with their results (app.campaigns)."""
    rows = db.session.execute(select(Campaign.id, Campaign.name, Campaign.sent_at).where(
        Campaign.program_id == program.id, Campaign.started_at.is_not(None),
        Campaign.started_at >= r.start, Campaign.started_at < r.end)
        .order_by(Campaign.started_at, Campaign.id)).all()
    found = []
    for campaign_id, name, sent_at in rows:
        results = asdict(campaigns.results(program, campaign_id))
        found.append(_iso({"id": campaign_id, "name": name, "sent_at": sent_at, **results}))
    return found
