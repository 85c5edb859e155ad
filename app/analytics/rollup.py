"""Daily rollups of a program's ledger, wallet events, members and feedback answers.

A program-local day is rolled up once it is over and :data:`GRACE` has passed (a posting's
entries are stamped with the app's clock when written, so none lands in a day that ended
that long ago): the periodic sweep (:func:`sweep_task`) rolls up every program's closed
days in order, each in one transaction, and :func:`app.analytics.stats.compute` asks for the
same before it reads (``catch_up``). Days not rolled up yet (today, and a closed day still
in its grace period) are computed from the tables when asked, with the same functions, so a
rolled-up day and a live one can never disagree. Nothing here runs on the earn path.

The distinct-member figures come from per-day activity gaps (:class:`ActivityDay`): for
every card with a visit (redemption, purchase) on a day, how many days since its previous
one. Counting the cards of a window is then a sum over at most a few hundred rows a day
instead of a scan of the window's entries (docs/metrics.md explains the sums).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased

from app.analytics.models import ActivityDay, CardActivity, DayCount, Progress
from app.extensions import db
from app.feedback.models import FeedbackInvitation
from app.loyalty.models import Card, EntryKind, LedgerEntry, Member, Program
from app.timeutil import now as clock_now
from app.wallet.events import WalletEvent

#: How long after a local day ends it is rolled up.
GRACE = timedelta(minutes=15)
#: The gap of a card's first day with an activity; real gaps are capped at :data:`CAP`
#: (longer than any window a figure looks back over: two ranges of at most 401 days).
FIRST = 9999
CAP = 1000
ACTIVITIES = ("visit", "redeem", "purchase")
CHUNK = 500  # card ids per IN (...) list

Counts = Counter[tuple[str, str]]  # (name, key) -> value
Gaps = Counter[tuple[str, int, bool]]  # (activity, gap, second) -> cards
State = dict[str, tuple[date | None, date | None]]  # activity -> (last day, day before it)


def zone(program: Program) -> ZoneInfo:
    return ZoneInfo(program.time_zone or "UTC")


def day_start(tz: ZoneInfo, day: date) -> datetime:
    """The instant (UTC) a local day starts."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def local_day(tz: ZoneInfo, instant: datetime) -> date:
    return instant.astimezone(tz).date()


def days(first: date, last: date) -> Iterable[date]:
    """``first`` to ``last``, both included."""
    for n in range((last - first).days + 1):
        yield first + timedelta(days=n)


def amount_bucket(amount: int) -> int:
    """An amount rounded down to two significant digits (12,345 → 12,000): the median's
    resolution (docs/metrics.md)."""
    if amount < 100:
        return amount
    step = 10 ** (len(str(amount)) - 2)
    return amount // step * step


# --- One span of time (within one local day) ----------------------------------------------

def span_counts(program_id: int, t0: datetime, t1: datetime) -> Counts:
    """The additive figures of ``[t0, t1)`` (docs/metrics.md names them)."""
    counts: Counts = Counter()
    e = LedgerEntry
    in_span = (Card.program_id == program_id, e.created_at >= t0, e.created_at < t1)
    total = e.points + e.pending_points
    up = case((total > 0, 1), else_=0)
    rows = db.session.execute(
        select(e.kind, e.rule_id, up, func.count(), func.sum(e.points), func.sum(total),
               func.sum(e.amount), func.count(e.amount))
        .join(Card, Card.id == e.card_id).where(*in_span).group_by(e.kind, e.rule_id, up))
    for kind, rule_id, positive, n, points, moved, amount, with_amount in rows:
        points, moved, amount = int(points or 0), int(moved or 0), int(amount or 0)
        counts["net_points", ""] += points
        if kind is EntryKind.EARN:
            counts["issued_earn", ""] += moved
            counts["visits", ""] += n
            counts["purchases_gross", ""] += with_amount
            counts["purchase_amount_gross", ""] += amount
        elif kind is EntryKind.REDEEM:
            counts["points_redeemed", ""] += -moved
            counts["visits", ""] += n
        elif kind is EntryKind.BONUS:
            counts["issued_bonus", ""] += moved
            if rule_id is not None:
                counts["rule_points", str(rule_id)] += moved
        elif kind is EntryKind.EXPIRE:
            counts["points_expired", ""] += -moved
        elif kind is EntryKind.REFUND:
            counts["clawed_refund", ""] += -moved
            counts["refunds", ""] += n
            counts["refund_amount", ""] += amount
        elif kind in (EntryKind.ADJUST, EntryKind.REVERSE):
            name = kind.value
            if positive:
                counts[f"issued_{name}", ""] += moved
            else:
                counts[f"clawed_{name}", ""] += -moved
    reversed_earn = aliased(LedgerEntry)
    n, amount = db.session.execute(
        select(func.count(), func.sum(reversed_earn.amount)).select_from(e)
        .join(Card, Card.id == e.card_id).join(reversed_earn, reversed_earn.id == e.reverses_id)
        .where(*in_span, e.kind == EntryKind.REVERSE, reversed_earn.kind == EntryKind.EARN,
               reversed_earn.amount.is_not(None))).one()
    counts["purchases_reversed", ""] += int(n or 0)
    counts["purchase_amount_reversed", ""] += int(amount or 0)
    for amount, n in db.session.execute(
            select(e.amount, func.count()).join(Card, Card.id == e.card_id)
            .where(*in_span, e.kind == EntryKind.EARN, e.amount.is_not(None))
            .group_by(e.amount)):
        counts["purchase_bucket", str(amount_bucket(int(amount)))] += n
    counts["new_members", ""] += db.session.scalar(
        select(func.count()).select_from(Member).where(
            Member.program_id == program_id, Member.created_at >= t0,
            Member.created_at < t1)) or 0
    w = WalletEvent
    for platform, kind, n in db.session.execute(
            select(w.platform, w.kind, func.count()).where(
                w.program_id == program_id, w.at >= t0, w.at < t1)
            .group_by(w.platform, w.kind)):
        what = "installs" if kind.value == "installed" else "removals"
        counts[f"{platform.value}_{what}", ""] += n
    f = FeedbackInvitation
    for location_id, score, n in db.session.execute(
            select(f.location_id, f.score, func.count()).where(
                f.program_id == program_id, f.answered_at >= t0, f.answered_at < t1,
                f.score.is_not(None)).group_by(f.location_id, f.score)):
        counts["nps_answers", f"{location_id or ''}:{score}"] += n
    return Counts({k: v for k, v in counts.items() if v})


def span_activities(program_id: int, t0: datetime, t1: datetime) -> dict[int, set[str]]:
    """The cards with a visit in ``[t0, t1)``, and which activities (visit, redeem,
    purchase) they had."""
    e = LedgerEntry
    found: dict[int, set[str]] = defaultdict(set)
    for card_id, kind, purchase in db.session.execute(
            select(e.card_id, e.kind, e.amount.is_not(None)).distinct()
            .join(Card, Card.id == e.card_id)
            .where(Card.program_id == program_id, e.created_at >= t0, e.created_at < t1,
                   e.kind.in_([EntryKind.EARN, EntryKind.REDEEM]))):
        found[card_id].add("visit")
        if kind is EntryKind.REDEEM:
            found[card_id].add("redeem")
        elif purchase:
            found[card_id].add("purchase")
    return found


def load_states(card_ids: Iterable[int]) -> dict[int, State]:
    """The rolled-up last days of these cards' activities (cards without any: absent)."""
    ids = list(card_ids)
    states: dict[int, State] = {}
    a = CardActivity
    for start in range(0, len(ids), CHUNK):
        for row in db.session.execute(select(a).where(
                a.card_id.in_(ids[start:start + CHUNK]))).scalars():
            states[row.card_id] = {act: (getattr(row, f"{act}_last"), getattr(row, f"{act}_prev"))
                                   for act in ACTIVITIES}
    return states


def day_gaps(day: date, activities: dict[int, set[str]],
             states: dict[int, State]) -> Gaps:
    """The gap rows of ``day`` from its cards' activities; moves ``states`` on to it."""
    gaps: Gaps = Counter()
    for card_id, acts in activities.items():
        state = states.setdefault(card_id, {act: (None, None) for act in ACTIVITIES})
        for act in acts:
            last, prev = state[act]
            if last is None:
                gaps[act, FIRST, False] += 1
            else:
                gaps[act, min((day - last).days, CAP), prev is None] += 1
            state[act] = (day, last)
    return gaps


@dataclass
class Day:
    """One local day's figures: additive counts and activity gaps."""

    counts: Counts = field(default_factory=Counter)
    gaps: Gaps = field(default_factory=Counter)


# --- Rolling up -----------------------------------------------------------------------------

def first_day(program: Program, tz: ZoneInfo) -> date:
    """The first local day a program can have figures on."""
    joined = db.session.scalar(select(func.min(Member.created_at))
                               .where(Member.program_id == program.id))
    start = min(program.created_at, joined) if joined else program.created_at
    return local_day(tz, start)


def last_closed_day(tz: ZoneInfo, now: datetime) -> date:
    """The latest local day that ended at least :data:`GRACE` before ``now``."""
    return local_day(tz, now - GRACE) - timedelta(days=1)


def _locked_progress(program: Program) -> Progress:
    progress = db.session.get(Progress, program.id, with_for_update=True,
                              populate_existing=True)
    if progress is None:
        db.session.add(Progress(program_id=program.id, time_zone=program.time_zone))
        db.session.flush()
        progress = db.session.get(Progress, program.id, with_for_update=True)
        assert progress is not None
    if progress.time_zone != program.time_zone:  # days are the zone's: start again
        _forget(program.id)
        progress.time_zone, progress.rolled_through = program.time_zone, None
    return progress


def _forget(program_id: int) -> None:
    for model in (DayCount, ActivityDay, CardActivity):
        db.session.execute(delete(model).where(model.program_id == program_id))


def catch_up(program: Program, now: datetime | None = None) -> date | None:
    """Roll up the program's closed days not rolled up yet, oldest first, one transaction
    each (committed). Returns the last day rolled up (None: none yet)."""
    now = now or clock_now()
    tz = zone(program)
    program_id = program.id
    last = last_closed_day(tz, now)
    while True:
        progress = _locked_progress(program)
        done = progress.rolled_through
        day = done + timedelta(days=1) if done else first_day(program, tz)
        if day > last:
            db.session.commit()
            return done
        roll_up(program_id, tz, day)
        progress.rolled_through = day
        progress.updated_at = now
        db.session.commit()


def roll_up(program_id: int, tz: ZoneInfo, day: date) -> None:
    """Write the rows of one closed day (in the caller's transaction)."""
    t0, t1 = day_start(tz, day), day_start(tz, day + timedelta(days=1))
    counts = span_counts(program_id, t0, t1)
    activities = span_activities(program_id, t0, t1)
    states = load_states(activities)
    known = set(states)
    gaps = day_gaps(day, activities, states)
    if counts:
        db.session.execute(insert(DayCount), [
            {"program_id": program_id, "day": day, "name": name, "key": key, "value": value}
            for (name, key), value in counts.items()])
    if gaps:
        db.session.execute(insert(ActivityDay), [
            {"program_id": program_id, "day": day, "activity": act, "gap": gap,
             "second": second, "cards": n} for (act, gap, second), n in gaps.items()])

    def row(card_id: int) -> dict[str, object]:
        values: dict[str, object] = {}
        for act, (last, prev) in states[card_id].items():
            values[f"{act}_last"], values[f"{act}_prev"] = last, prev
        return values

    changed = [card_id for card_id in activities if card_id in known]
    if changed:
        db.session.execute(update(CardActivity), [
            {"card_id": card_id, **row(card_id)} for card_id in changed])
    new = [card_id for card_id in activities if card_id not in known]
    if new:
        db.session.execute(insert(CardActivity), [
            {"card_id": card_id, "program_id": program_id, **row(card_id)}
            for card_id in new])


def rebuild(program: Program, now: datetime | None = None) -> None:
    """Forget a program's rollups and roll up all its closed days again (commits)."""
    progress = _locked_progress(program)
    _forget(program.id)
    progress.rolled_through = None
    db.session.commit()
    catch_up(program, now)


def sweep_task() -> None:
    """The sweep's task: roll up every program's closed days."""
    for program in db.session.scalars(select(Program).order_by(Program.id)).all():
        try:
            catch_up(program)
        except OperationalError:  # another sweep holds the lock, or SQLite is busy
            db.session.rollback()


# --- Reading ----------------------------------------------------------------------------------

class DaySeries:
    """A program's days from ``first`` to ``last`` (rolled up, else computed up to ``to``),
    with sums over windows of them."""

    def __init__(self, program: Program, first: date, last: date, to: datetime) -> None:
        self.program_id = program.id
        self.tz = zone(program)
        self.first, self.last = first, last
        progress = db.session.get(Progress, program.id)
        done = progress.rolled_through if progress and \
            progress.time_zone == program.time_zone else None
        self.rolled_through = done
        self.counts: dict[date, Counts] = defaultdict(Counter)
        gaps: dict[date, Gaps] = defaultdict(Counter)
        stored_last = min(done, last) if done else None
        if stored_last is not None and stored_last >= first:
            for day, name, key, value in db.session.execute(
                    select(DayCount.day, DayCount.name, DayCount.key, DayCount.value).where(
                        DayCount.program_id == program.id, DayCount.day >= first,
                        DayCount.day <= stored_last)):
                self.counts[day][name, key] += value
            a = ActivityDay
            for day, act, gap, second, n in db.session.execute(
                    select(a.day, a.activity, a.gap, a.second, a.cards).where(
                        a.program_id == program.id, a.day >= first, a.day <= stored_last)):
                gaps[day][act, gap, bool(second)] += n
        # Cumulative figures (members, liability) of the stored days before ``first``.
        self.before: Counts = Counter()
        if stored_last is not None:
            for name, value in db.session.execute(
                    select(DayCount.name, func.sum(DayCount.value)).where(
                        DayCount.program_id == program.id,
                        DayCount.day < min(first, stored_last + timedelta(days=1)),
                        DayCount.name.in_(["net_points", "new_members"]))
                    .group_by(DayCount.name)):
                self.before[name, ""] += int(value or 0)
        # The days not rolled up: computed now, in order, from the rolled-up card states.
        live_first = done + timedelta(days=1) if done else first_day(program, self.tz)
        states: dict[int, State] = {}
        for day in days(live_first, last):
            t0 = day_start(self.tz, day)
            t1 = min(day_start(self.tz, day + timedelta(days=1)), to)
            if t1 <= t0:
                break
            counts = span_counts(program.id, t0, t1)
            activities = span_activities(program.id, t0, t1)
            states.update(load_states(c for c in activities if c not in states))
            day_gap = day_gaps(day, activities, states)
            if day >= first:
                self.counts[day] = counts
                gaps[day] = day_gap
            else:
                self.before.update({k: v for k, v in counts.items()
                                    if k[0] in ("net_points", "new_members")})
        self._index: dict[tuple[date, str], tuple[list[int], list[int], list[int], int]] = {}
        for day, rows in gaps.items():
            by_act: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(
                lambda: [0, 0]))
            for (act, gap, second), n in rows.items():
                by_act[act][gap][0] += n
                if second:
                    by_act[act][gap][1] += n
            for act, by_gap in by_act.items():
                keys = sorted(by_gap)
                cum, cum_second, total, total_second = [], [], 0, 0
                for gap in keys:
                    total += by_gap[gap][0]
                    total_second += by_gap[gap][1]
                    cum.append(total)
                    cum_second.append(total_second)
                self._index[day, act] = (keys, cum, cum_second, total)

    # Sums of additive counts -------------------------------------------------------------
    def total(self, name: str, first: date, last: date, key: str = "") -> int:
        return sum(self.counts[d].get((name, key), 0) for d in days(first, last)
                   if d in self.counts)

    def keyed(self, name: str, first: date, last: date) -> Counter[str]:
        found: Counter[str] = Counter()
        for d in days(first, last):
            for (n, key), value in self.counts.get(d, {}).items():
                if n == name:
                    found[key] += value
        return found

    def up_to(self, name: str, last: date) -> int:
        """The sum of a count over every day up to ``last`` (members, liability)."""
        return self.before.get((name, ""), 0) + self.total(name, self.first, last)

    # Distinct cards -----------------------------------------------------------------------
    def _le(self, day: date, act: str, k: int) -> tuple[int, int, int]:
        """(cards with gap <= k, of them with ``second``, all cards) of a day's activity."""
        found = self._index.get((day, act))
        if found is None:
            return 0, 0, 0
        keys, cum, cum_second, total = found
        i = bisect_right(keys, k)
        return (cum[i - 1], cum_second[i - 1], total) if i else (0, 0, total)

    def distinct(self, act: str, first: date, last: date) -> int:
        """Cards with the activity on a day of ``first``..``last``: each counted on its first
        such day, the one whose gap reaches back before ``first``."""
        count = 0
        for d in days(first, last):
            le, _, total = self._le(d, act, (d - first).days)
            count += total - le
        return count

    def in_both(self, act: str, before: date, first: date, last: date) -> int:
        """Cards with the activity in ``first``..``last`` and in ``before``..``first``-1:
        on their first day in the window, the previous day falls in the earlier one."""
        count = 0
        for d in days(first, last):
            le_window, _, _ = self._le(d, act, (d - first).days)
            le_both, _, _ = self._le(d, act, (d - before).days)
            count += le_both - le_window
        return count

    def returning(self, act: str, first: date, last: date) -> int:
        """Cards with the activity in the window that also had it on an earlier day (in the
        window or before it)."""
        count = 0
        for d in days(first, last):
            k = (d - first).days
            le, le_second, total = self._le(d, act, k)
            first_ever = total - self._le(d, act, FIRST - 1)[0]
            count += (total - le - first_ever) + le_second
        return count
