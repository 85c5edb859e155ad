"""The Must-show scenario of issue 18: 120 days of a program, generated with a fixed seed
through the real services and API (enrolments, purchases at two stores, rule bonuses,
redemptions and their reversals, refunds, adjustments, expiries by ``tick``, a voided card,
Apple installs and removals through the PassKit web service, Google saves and deletes
through the callback service), with the app's clock moved day by day and the sweep rolling
up closed days now and then. Then every figure and series the stats API answers, for
several ranges, must equal a recomputation written here from docs/metrics.md over the rows
of the tables (plain Python, independent of the rollups); and rolling everything up again
from scratch must answer the same.

NPS answers are written as answered invitation rows: the feedback pages that record them
are another part of the issue; the figures only read the rows.
"""

from __future__ import annotations

import random
import secrets
import time as timer
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import delete, func, select

from app.analytics import rollup
from app.analytics.models import (
    ActivityDay,
    CardActivity,
    DayCount,
    ExpiryDay,
    OpenCard,
    OpenDay,
    Progress,
)
from app.extensions import db
from app.feedback.models import FeedbackInvitation
from app.loyalty import tick
from app.loyalty.models import Card, CardStatus, LedgerEntry, Member, PointLot, Program
from app.wallet.apple.models import Registration
from app.wallet.events import WalletEvent
from app.wallet.google import sync as google_sync
from app.wallet.google.models import GoogleObjectState
from app.wallet.google.setup import google_wallet
from passes.google.callbacks import WalletCallback
from tests.clock import FakeClock
from tests.factories import ApiClient, card_code, create_card, create_program
from tests.phones import Phone

TZ = ZoneInfo("Asia/Jakarta")
CLOCK_START = datetime(2026, 3, 1, 8, 0, tzinfo=TZ)  # where the fake clock starts
DAYS = 120
MEMBERS = 60
VALUE_OF_1000 = 2_500
PRICES = (9_900, 15_000, 22_500, 48_000, 125_000)


# --- Generating the 120 days ---------------------------------------------------------------

class Scenario:
    def __init__(self, app: Flask, api: ApiClient, clock: FakeClock) -> None:
        self.app, self.api, self.clock = app, api, clock
        self.rng = random.Random(18)
        self.program = create_program(
            api, earn_points=1, earn_amount=1_000, time_zone="Asia/Jakarta",
            points_expire_after_days=30, value_of_1000_points=VALUE_OF_1000)
        pid = self.program["id"]
        self.locations = [api.post(f"/api/v1/programs/{pid}/locations", json={
            "name": name, "latitude": -6.2, "longitude": 106.8}).json["id"]
            for name in ("Sudirman", "Kemang")]
        self.rule = api.post(f"/api/v1/programs/{pid}/rules", json={
            "kind": "bonus", "name": "Big basket", "points": 7,
            "conditions": {"min_amount": 40_000}}).json["id"]
        self.reward = self.program["rewards"][0]
        self.cards: list[str] = []
        self.purchases: dict[str, list[str]] = defaultdict(list)  # serial: references
        self.redemptions: list[int] = []
        self.phones: dict[str, Phone] = {}
        self.apple_on: set[str] = set()
        self.google_state: dict[str, bool] = {}
        self.voided: set[str] = set()

    def at(self, moment: datetime) -> None:
        self.clock.advance(moment.timestamp() - self.clock.now())

    def later(self) -> None:
        self.clock.advance(self.rng.randint(60, 600))

    def run(self) -> None:
        for day in range(DAYS):
            self.at(CLOCK_START + timedelta(days=day))
            if day % 2 == 0:
                with self.app.app_context():
                    tick.run()  # expiries due, at the app's clock
            self.day(day)
            if day % 9 == 4 or day == DAYS - 1:
                with self.app.app_context():
                    rollup.sweep_task()  # closed days rolled up; later days arrive after
            if day == DAYS - 1:
                # The sweep rolled up today so far (the open day, up to OPEN_LAG ago): the
                # day goes on, with cards it counted already and new ones.
                self.clock.advance(rollup.OPEN_LAG.total_seconds())
                with self.app.app_context():
                    rollup.advance_open_day(db.session.get(Program, self.program["id"]))
                self.day(day)
            if day in (45, 80):
                response = self.api.get(f"/api/v1/programs/{self.program['id']}/stats")
                assert response.status_code == 200, response.json

    def day(self, day: int) -> None:
        rng = self.rng
        if len(self.cards) < MEMBERS and rng.random() < 0.7:
            self.enroll()
        if day == 60:
            serial = self.cards[3]
            assert self.api.post(f"/api/v1/cards/{serial}/void",
                                 json={"reason": "lost"}).status_code == 200
            self.voided.add(serial)
        for serial in list(self.cards):
            if serial in self.voided:
                continue
            roll = rng.random()
            if roll < 0.1:
                self.purchase(serial)
            elif roll < 0.16:
                self.redeem(serial)
            elif roll < 0.175:
                self.refund(serial)
            elif roll < 0.18:
                self.adjust(serial)
            elif roll < 0.195:
                self.wallets(serial)
        if rng.random() < 0.1 and self.redemptions:
            redemption = self.redemptions.pop(rng.randrange(len(self.redemptions)))
            self.later()
            response = self.api.post(f"/api/v1/redemptions/{redemption}/reverse",
                                     json={"reason": "wrong cake"})
            assert response.status_code in (200, 201, 410), response.json  # 410: voided

    def enroll(self) -> None:
        self.later()
        serial = create_card(self.api, self.program, name=f"Member {len(self.cards)}",
                             email=f"m{len(self.cards)}@example.com")["serial_number"]
        self.cards.append(serial)
        if self.rng.random() < 0.6:
            self.apple(serial, True)
        if self.rng.random() < 0.4:
            self.google(serial, True)

    def purchase(self, serial: str) -> None:
        self.later()
        reference = f"r-{uuid.uuid4().hex[:10]}"
        amount = self.rng.choice(PRICES) + 100 * self.rng.randint(0, 40)
        body: dict[str, Any] = {"amount": amount, "currency": "IDR", "reference": reference}
        if self.rng.random() < 0.8:
            body["location_id"] = self.rng.choice(self.locations)
        response = self.api.post(f"/api/v1/cards/{serial}/earn", json=body,
                                 headers={"Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code == 201, response.json
        self.purchases[serial].append(reference)
        if "location_id" in body and self.rng.random() < 0.3:
            self.answer(serial, response.json["entry"]["id"], body["location_id"])

    def answer(self, serial: str, entry_id: int | None, location_id: int) -> None:
        with self.app.app_context():
            card = db.session.scalar(select(Card).where(Card.serial_number == serial))
            now = datetime.fromtimestamp(self.clock.now(), UTC)
            db.session.add(FeedbackInvitation(
                program_id=card.program_id, card_id=card.id, token=secrets.token_hex(16),
                entry_id=entry_id, location_id=location_id, created_at=now,
                expires_at=now + timedelta(days=7),
                answered_at=now + timedelta(minutes=self.rng.randint(1, 3000)),
                score=self.rng.randint(0, 10), language="id"))
            db.session.commit()

    def redeem(self, serial: str) -> None:
        self.later()
        response = self.api.post("/api/v1/redemptions", json={
            "code": card_code(self.app, serial), "reward_id": self.reward["id"]})
        if response.status_code == 201:
            self.redemptions.append(response.json["id"])
        else:
            assert response.status_code == 409, response.json  # not enough points

    def refund(self, serial: str) -> None:
        if not self.purchases[serial]:
            return
        self.later()
        reference = self.purchases[serial].pop(0)
        response = self.api.post(f"/api/v1/cards/{serial}/refunds", json={
            "reference": reference, "amount": self.rng.choice((5_000, 9_000)),
            "currency": "IDR"}, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code == 201, response.json

    def adjust(self, serial: str) -> None:
        self.later()
        points = self.rng.choice((25, 10, -5))
        response = self.api.post(f"/api/v1/cards/{serial}/adjust", json={
            "points": points, "reason": "goodwill"},
            headers={"Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code in (201, 409), response.json  # 409: not enough points

    def wallets(self, serial: str) -> None:
        if self.rng.random() < 0.5:
            self.apple(serial, serial not in self.apple_on)
        else:
            self.google(serial, not self.google_state.get(serial, False))

    def apple(self, serial: str, add: bool) -> None:
        self.later()
        phone = self.phones.setdefault(serial, Phone(self.app))
        if add:
            phone.add(serial)
            self.apple_on.add(serial)
        elif serial in self.apple_on:
            phone.remove(serial)
            self.apple_on.discard(serial)

    def google(self, serial: str, save: bool) -> None:
        """A save or delete callback, verified, given to the service that records it."""
        self.later()
        with self.app.app_context():
            wallet = google_wallet()
            card_id = db.session.scalar(select(Card.id).where(Card.serial_number == serial))
            if db.session.get(GoogleObjectState, card_id) is None:
                # The object Google holds once the sync sent it (the Google test server's
                # part, which this scenario does not run).
                db.session.add(GoogleObjectState(card_id=card_id, synced_version=1,
                                                 synced_balance=0))
                db.session.commit()
            assert wallet is not None
            google_sync.record_callback(wallet, WalletCallback(
                class_id=f"{wallet.issuer_id}.c", object_id=f"{wallet.issuer_id}.{serial}",
                event_type="save" if save else "del", nonce=uuid.uuid4().hex,
                expires_at_ms=int(self.clock.now() * 1000) + 60_000, message={}))
        self.google_state[serial] = save


# --- The recomputation, from docs/metrics.md -----------------------------------------------

FIRST_GAP = rollup.FIRST


def bucket(amount: int) -> int:
    """docs/metrics.md, median_purchase: two significant digits."""
    if amount < 100:
        return amount
    step = 10 ** (len(str(amount)) - 2)
    return amount // step * step


class Rows:
    """What the tables hold, read once."""

    def __init__(self, app: Flask, program_id: int) -> None:
        with app.app_context():
            program = db.session.get(Program, program_id)
            assert program is not None
            self.value_1000 = program.value_of_1000_points
            self.cards = {c.id: c for c in db.session.scalars(
                select(Card).where(Card.program_id == program_id))}
            self.members = list(db.session.scalars(
                select(Member).where(Member.program_id == program_id)))
            self.entries = list(db.session.scalars(select(LedgerEntry).where(
                LedgerEntry.card_id.in_(self.cards))))
            self.by_id = {e.id: e for e in self.entries}
            self.events = list(db.session.scalars(
                select(WalletEvent).where(WalletEvent.program_id == program_id)))
            self.answers = list(db.session.scalars(select(FeedbackInvitation).where(
                FeedbackInvitation.program_id == program_id,
                FeedbackInvitation.answered_at.is_not(None))))
            self.lots = list(db.session.scalars(select(PointLot).where(
                PointLot.card_id.in_(self.cards))))
            self.apple_now = len(db.session.scalars(select(Registration).where(
                Registration.card_id.in_(self.cards),
                Registration.removed_at.is_(None))).all())
            self.google_now = len(db.session.scalars(select(GoogleObjectState).where(
                GoogleObjectState.card_id.in_(self.cards),
                GoogleObjectState.saved.is_(True))).all())
            db.session.expunge_all()  # the rows stay as read, detached
            db.session.rollback()

    # windows are [start, end) instants
    def within(self, start: datetime, end: datetime) -> list[LedgerEntry]:
        return [e for e in self.entries if start <= e.created_at < end]

    def visitors(self, start: datetime, end: datetime, kinds: tuple[str, ...] = (
            "earn", "redeem")) -> set[int]:
        return {e.card_id for e in self.within(start, end) if e.kind.value in kinds}

    def purchasers(self, start: datetime, end: datetime) -> set[int]:
        return {e.card_id for e in self.within(start, end)
                if e.kind.value == "earn" and e.amount is not None}

    def additive(self, start: datetime, end: datetime) -> dict[str, Any]:
        entries = self.within(start, end)

        def moved(e: LedgerEntry) -> int:
            return e.points + e.pending_points

        def kind(k: str) -> list[LedgerEntry]:
            return [e for e in entries if e.kind.value == k]

        issued = {
            "earn": sum(moved(e) for e in kind("earn")),
            "bonus": sum(moved(e) for e in kind("bonus")),
            "adjust": sum(moved(e) for e in kind("adjust") if moved(e) > 0),
            "reverse": sum(moved(e) for e in kind("reverse") if moved(e) > 0),
        }
        purchases = [e for e in kind("earn") if e.amount is not None]
        reversed_purchases = [self.by_id[e.reverses_id] for e in kind("reverse")
                              if e.reverses_id and self.by_id[e.reverses_id].kind.value
                              == "earn" and self.by_id[e.reverses_id].amount is not None]
        amount = (sum(e.amount for e in purchases)
                  - sum(e.amount for e in reversed_purchases)
                  - sum(e.amount or 0 for e in kind("refund")))
        answers = [a for a in self.answers if start <= a.answered_at < end]
        promoters = sum(1 for a in answers if a.score >= 9)
        detractors = sum(1 for a in answers if a.score <= 6)

        def event(platform: str, what: str) -> int:
            return sum(1 for v in self.events if start <= v.at < end
                       and v.platform.value == platform and v.kind.value == what)

        return {
            "issued": issued,
            "new_members": sum(1 for m in self.members if start <= m.created_at < end),
            "apple_installs": event("apple", "installed"),
            "apple_removals": event("apple", "removed"),
            "google_installs": event("google", "installed"),
            "google_removals": event("google", "removed"),
            "points_issued": sum(issued.values()),
            "points_redeemed": -sum(e.points for e in kind("redeem")),
            "points_expired": -sum(e.points for e in kind("expire")),
            "points_clawed_back": -sum(moved(e) for e in entries if e.kind.value == "refund"
                                       or (e.kind.value in ("adjust", "reverse")
                                           and moved(e) < 0)),
            "purchases": len(purchases) - len(reversed_purchases),
            "purchase_amount": amount,
            "amounts": sorted(e.amount for e in purchases),
            "visits": len(kind("earn")) + len(kind("redeem")),
            "nps": round(100 * (promoters - detractors) / len(answers), 1) if answers
            else None,
            "nps_responses": len(answers),
            "answers": answers,
        }


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=TZ)


def expected(rows: Rows, start: datetime, end: datetime, now: datetime,
             interval: str) -> dict[str, Any]:
    """The figures and series of docs/metrics.md for ``start``..``end`` as given."""
    first = start.astimezone(TZ).date()
    end_local = end.astimezone(TZ)
    end_day = end_local.date() + timedelta(days=0 if end_local == midnight(end_local.date())
                                           else 1)
    s, e = midnight(first), min(midnight(end_day), now)
    last = (e - timedelta(microseconds=1)).astimezone(TZ).date()
    n = (last - first).days + 1
    ps = midnight(first - timedelta(days=n))

    def period(s: datetime, e: datetime, last: date) -> dict[str, Any]:
        first = s.astimezone(TZ).date()
        n = (last - first).days + 1
        before = midnight(first - timedelta(days=n))
        values = rows.additive(s, e)
        visitors = rows.visitors(s, e)
        earlier = rows.visitors(before, s)
        churned = len(earlier - visitors)
        purchasers = rows.purchasers(s, e)
        first_purchase: dict[int, date] = {}
        for x in sorted(rows.entries, key=lambda x: x.created_at):
            if x.kind.value == "earn" and x.amount is not None and x.created_at < e:
                first_purchase.setdefault(x.card_id, x.created_at.astimezone(TZ).date())
        last_in_window: dict[int, date] = {}
        for x in rows.within(s, e):
            if x.kind.value == "earn" and x.amount is not None:
                day = x.created_at.astimezone(TZ).date()
                last_in_window[x.card_id] = max(day, last_in_window.get(x.card_id, day))
        returning = sum(1 for c in purchasers if first_purchase[c] < last_in_window[c])
        liability = sum(x.points for x in rows.entries if x.created_at < e)
        amounts = values["amounts"]
        purchases, amount = values["purchases"], values["purchase_amount"]
        redeemers = rows.visitors(s, e, ("redeem",))
        def installed(platform: str) -> int:
            return sum(1 if v.kind.value == "installed" else -1 for v in rows.events
                       if v.platform.value == platform and v.at < e)

        values.update({
            "apple_installed_now": installed("apple"),
            "google_installed_now": installed("google"),
            "members": sum(1 for c in rows.cards.values() if c.member_joined_at < e
                           and c.status is not CardStatus.VOIDED),
            "active_members_30d": len(rows.visitors(midnight(last - timedelta(days=29)), e)),
            "active_members_90d": len(rows.visitors(midnight(last - timedelta(days=89)), e)),
            "liability_points": liability,
            "liability_money": liability * rows.value_1000 // 1000,
            "redemption_rate_points": values["points_redeemed"] / values["points_issued"]
            if values["points_issued"] else None,
            "redemption_rate_members": len(redeemers) / len(visitors) if visitors else None,
            "members_redeemed": len(redeemers),
            "purchasers": len(purchasers),
            "active_members": len(visitors),
            "repeat_purchase_rate": returning / len(purchasers) if purchasers else None,
            "churned_members": churned,
            "churn_rate": churned / len(earlier) if earlier else None,
            "average_purchase": amount // purchases if purchases > 0 else None,
            "median_purchase": bucket(amounts[(len(amounts) + 1) // 2 - 1]) if amounts
            else None,
            "visits_per_member": values["visits"] / len(visitors) if visitors else None,
            "customer_lifetime_value": amount * len(earlier) // (len(visitors) * churned)
            if visitors and churned else None,
        })
        return values

    current = period(s, e, last)
    previous = period(ps, s, first - timedelta(days=1))
    d = min(e, now).astimezone(TZ).date()
    for ahead in (30, 90):
        current[f"expiring_{ahead}d_points"] = sum(
            lot.remaining for lot in rows.lots if lot.expires_at is not None
            and midnight(d) <= lot.expires_at < midnight(d + timedelta(days=ahead)))

    step = 1 if interval == "day" else 7
    series: dict[str, list[Any]] = defaultdict(list)
    day = first
    while day <= last:
        a, b = midnight(day), min(midnight(day + timedelta(days=step)), e)
        values = rows.additive(a, b)
        values["active_members"] = len(rows.visitors(a, b))
        series["periods"].append(day.isoformat())
        for name in ("new_members", "active_members", "points_issued", "points_redeemed",
                     "points_expired", "points_clawed_back", "purchases", "purchase_amount",
                     "apple_installs", "apple_removals", "google_installs",
                     "google_removals", "nps", "nps_responses"):
            series[name].append(values[name])
        day += timedelta(days=step)

    by_location: dict[int | None, list[int]] = defaultdict(lambda: [0, 0, 0])
    for answer in current["answers"]:
        kind = 0 if answer.score >= 9 else 2 if answer.score <= 6 else 1
        by_location[answer.location_id][kind] += 1
    return {"from": s, "to": e, "previous": {"from": ps, "to": s},
            "current": current, "previous_values": previous, "series": dict(series),
            "by_location": {loc: {"promoters": c[0], "passives": c[1], "detractors": c[2]}
                            for loc, c in by_location.items()},
            "issued": current["issued"]}


# --- The test --------------------------------------------------------------------------------

FIGURES = ("members", "new_members", "apple_installs", "apple_removals",
           "apple_installed_now", "google_installs", "google_removals",
           "google_installed_now", "active_members_30d", "active_members_90d",
           "points_issued", "points_redeemed", "points_expired", "points_clawed_back",
           "liability_points", "liability_money", "expiring_30d_points", "expiring_90d_points",
           "redemption_rate_points", "redemption_rate_members", "repeat_purchase_rate",
           "churn_rate", "churned_members", "purchases", "purchase_amount", "average_purchase",
           "median_purchase", "visits_per_member", "customer_lifetime_value", "nps",
           "nps_responses", "active_members", "members_redeemed", "purchasers", "visits")
NOW_ONLY = {"expiring_30d_points", "expiring_90d_points"}


def check(body: dict[str, Any], want: dict[str, Any], rule_name: str) -> None:
    assert datetime.fromisoformat(body["from"]) == want["from"]
    assert datetime.fromisoformat(body["to"]) == want["to"]
    assert datetime.fromisoformat(body["previous"]["from"]) == want["previous"]["from"]
    assert datetime.fromisoformat(body["previous"]["to"]) == want["previous"]["to"]
    for name in FIGURES:
        got = body["figures"][name]
        assert got["value"] == want["current"][name], (name, "value")
        if name in NOW_ONLY:
            assert got["previous"] is None, name
        else:
            assert got["previous"] == want["previous_values"][name], (name, "previous")
    assert body["points_issued_by_kind"] == want["issued"]
    rule_points = want["issued"]["bonus"]  # every bonus here is the one rule's
    assert body["points_issued_by_rule"] == ([{"rule_id": body["points_issued_by_rule"][0][
        "rule_id"], "name": rule_name, "points": rule_points}] if rule_points else [])
    locations = {row["location_id"]: {k: row[k] for k in ("promoters", "passives",
                                                          "detractors")}
                 for row in body["nps_by_location"]}
    assert locations == want["by_location"]
    for row in body["nps_by_location"]:
        assert row["responses"] == row["promoters"] + row["passives"] + row["detractors"]
    for name, values in want["series"].items():
        assert body["series"][name] == values, name


def test_every_figure_equals_its_recomputation(app: Flask, api: ApiClient, clock: FakeClock,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    started = timer.monotonic()
    scenario = Scenario(app, api, clock)
    scenario.run()
    # A second on: "now" is after the last posting (a window ends before its end instant,
    # the lots are read as they are now).
    clock.advance(1)
    generated = timer.monotonic() - started
    pid = scenario.program["id"]
    path = f"/api/v1/programs/{pid}/stats"
    now = datetime.fromtimestamp(clock.now(), UTC)
    rows = Rows(app, pid)
    assert len(rows.cards) == MEMBERS
    with app.app_context():  # a span read as rows (the open day's tail) or added up in SQL
        visited = 0
        for n in range(DAYS):
            day = CLOCK_START.date() + timedelta(days=n)
            t0 = rollup.day_start(TZ, day)
            t1 = rollup.day_start(TZ, day + timedelta(days=1))
            in_sql = (rollup.span_counts(pid, TZ, t0, t1), *rollup.span_activities(pid, t0, t1))
            assert rollup.span_rows(pid, TZ, t0, t1) == in_sql, day
            visited += bool(in_sql[1])
        assert visited >= 100  # days with visits: the comparisons compared something
        db.session.rollback()
    # The scenario has all it should: otherwise the checks below prove little.
    kinds = {e.kind.value for e in rows.entries}
    assert {"earn", "bonus", "redeem", "expire", "refund", "reverse", "adjust"} <= kinds
    assert {(v.platform.value, v.kind.value) for v in rows.events} == {
        ("apple", "installed"), ("apple", "removed"), ("google", "installed"),
        ("google", "removed")}
    assert rows.answers

    day0 = CLOCK_START.date()
    ranges = [
        ("", None, None, "day"),
        (f"?from={day0 + timedelta(days=5)}&to={day0 + timedelta(days=95)}&interval=week",
         midnight(day0 + timedelta(days=5)), midnight(day0 + timedelta(days=95)), "week"),
        (f"?from={day0 + timedelta(days=100)}&to={now.isoformat().replace('+', '%2B')}",
         midnight(day0 + timedelta(days=100)), now, "day"),
        (f"?from={day0}&to={day0 + timedelta(days=DAYS + 5)}&interval=week",
         midnight(day0), midnight(day0 + timedelta(days=DAYS + 5)), "week"),
    ]
    answers = []
    asked = timer.monotonic()
    for query, start, end, interval in ranges:
        response = api.get(path + query)
        assert response.status_code == 200, response.json
        if start is None:
            start = midnight(now.astimezone(TZ).date() - timedelta(days=30))
            end = now
        check(response.json, expected(rows, start, end, now, interval), "Big basket")
        if end >= now:  # installed at the end = what the registrations and objects say now
            figures = response.json["figures"]
            assert figures["apple_installed_now"]["value"] == rows.apple_now
            assert figures["google_installed_now"]["value"] == rows.google_now
        answers.append(response.json)
    answered = timer.monotonic() - asked
    with app.app_context():  # today was read from the sweep's open day and what came after
        assert db.session.get(OpenDay, pid).day == now.astimezone(TZ).date()
        db.session.rollback()

    # Rolled up from scratch (every day again), the answers are the same; and with nothing
    # rolled up at all (every day computed from the tables) too.
    with app.app_context():
        program = db.session.get(Program, pid)
        rollup.rebuild(program)
        assert db.session.get(Progress, pid).rolled_through == rollup.last_closed_day(
            TZ, now)
        db.session.rollback()
    assert [api.get(path + query).json for query, *_ in ranges] == answers
    # The expiring points per day set from the lots (as after the upgrade that added them)
    # are the ones the days added up to.
    with app.app_context():
        db.session.execute(delete(ExpiryDay).where(ExpiryDay.program_id == pid))
        db.session.get(Progress, pid).expiry_through = None
        db.session.commit()
    assert [api.get(path + query).json for query, *_ in ranges] == answers
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ExpiryDay).where(
            ExpiryDay.program_id == pid))
        db.session.rollback()
    with app.app_context():
        for model in (DayCount, ActivityDay, CardActivity, ExpiryDay, OpenCard, OpenDay,
                      Progress):
            db.session.execute(delete(model).where(model.program_id == pid))
        db.session.commit()
    monkeypatch.setattr(rollup, "catch_up", lambda *args, **kwargs: None)  # no rolling up
    assert [api.get(path + query).json for query, *_ in ranges[1:3]] == answers[1:3]
    with app.app_context():
        assert db.session.get(Progress, pid) is None  # every day was computed live
        db.session.rollback()
    print(f"\nscenario: generated in {generated:.1f}s, 4 stats answers in {answered:.2f}s, "
          f"{len(rows.entries)} entries, {len(rows.events)} wallet events")
