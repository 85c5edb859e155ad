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

import logging
import sys
from array import array
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, case, delete, func, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased

from app.analytics.models import ActivityDay, CardActivity, DayCount, Progress
from app.extensions import db
from app.feedback.models import FeedbackInvitation
from app.loyalty.models import Card, EntryKind, LedgerEntry, Member, Program
from app.timeutil import now as clock_now
from app.wallet.events import WalletEvent

log = logging.getLogger("pointpass.analytics")

#: How long after a local day ends it is rolled up.
GRACE = timedelta(minutes=15)
#: The gap of a card's first day with an activity; real gaps are capped at :data:`CAP`
#: (longer than any window a figure looks back over: two ranges of at most 401 days).
FIRST = 9999
CAP = 1000
ACTIVITIES = ("visit", "redeem", "purchase")

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


def nps_class(score: int) -> str:
    """Promoters answer 9-10, passives 7-8, detractors 0-6."""
    return "nps_promoters" if score >= 9 else "nps_detractors" if score <= 6 \
        else "nps_passives"


def amount_bucket(amount: int) -> int:
    """An amount rounded down to two significant digits (12,345 → 12,000): the median's
    resolution (docs/metrics.md)."""
    if amount < 100:
        return amount
    step = 10 ** (len(str(amount)) - 2)
    return amount // step * step


# --- One span of time (within one local day) ----------------------------------------------
# The statements are built once (a day's rollup and every live day run them all); their
# parameters are the program ``p`` and the span ``[t0, t1)``.

_e = LedgerEntry
_total = _e.points + _e.pending_points
_up = case((_total > 0, 1), else_=0)
_in_span = (Card.program_id == bindparam("p"), _e.created_at >= bindparam("t0"),
            _e.created_at < bindparam("t1"))
_reversed = aliased(LedgerEntry)
ENTRY_SUMS = (
    select(_e.kind, _e.rule_id, _up, func.count(), func.sum(_e.points), func.sum(_total),
           func.sum(_e.amount), func.count(_e.amount))
    .join(Card, Card.id == _e.card_id).where(*_in_span).group_by(_e.kind, _e.rule_id, _up))
REVERSED_PURCHASES = (
    select(func.count(), func.sum(_reversed.amount)).select_from(_e)
    .join(Card, Card.id == _e.card_id).join(_reversed, _reversed.id == _e.reverses_id)
    .where(*_in_span, _e.kind == EntryKind.REVERSE, _reversed.kind == EntryKind.EARN,
           _reversed.amount.is_not(None)))
PURCHASE_AMOUNTS = (
    select(_e.amount, func.count()).join(Card, Card.id == _e.card_id)
    .where(*_in_span, _e.kind == EntryKind.EARN, _e.amount.is_not(None)).group_by(_e.amount))
NEW_MEMBERS = select(func.count()).select_from(Member).where(
    Member.program_id == bindparam("p"), Member.created_at >= bindparam("t0"),
    Member.created_at < bindparam("t1"))
WALLET_EVENTS = (
    select(WalletEvent.platform, WalletEvent.kind, func.count())
    .where(WalletEvent.program_id == bindparam("p"), WalletEvent.at >= bindparam("t0"),
           WalletEvent.at < bindparam("t1"))
    .group_by(WalletEvent.platform, WalletEvent.kind))
_f = FeedbackInvitation
ANSWERS = (
    select(_f.location_id, _f.score, func.count())
    .where(_f.program_id == bindparam("p"), _f.answered_at >= bindparam("t0"),
           _f.answered_at < bindparam("t1"), _f.score.is_not(None))
    .group_by(_f.location_id, _f.score))
_a = CardActivity
# Each card with a visit in the span, what it did, and its rolled-up last days (one query:
# no lookup per card).
ACTIVITIES_OF_SPAN = (
    select(_e.card_id, _e.kind, _e.amount.is_not(None), _a.visit_last, _a.visit_prev,
           _a.redeem_last, _a.redeem_prev, _a.purchase_last, _a.purchase_prev).distinct()
    .join(Card, Card.id == _e.card_id).outerjoin(_a, _a.card_id == _e.card_id)
    .where(*_in_span, _e.kind.in_([EntryKind.EARN, EntryKind.REDEEM])))


def span_counts(program_id: int, t0: datetime, t1: datetime) -> Counts:
    """The additive figures of ``[t0, t1)`` (docs/metrics.md names them)."""
    counts: Counts = Counter()
    span = {"p": program_id, "t0": t0, "t1": t1}
    for kind, rule_id, positive, n, points, moved, amount, with_amount in \
            db.session.execute(ENTRY_SUMS, span):
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
    n, amount = db.session.execute(REVERSED_PURCHASES, span).one()
    counts["purchases_reversed", ""] += int(n or 0)
    counts["purchase_amount_reversed", ""] += int(amount or 0)
    for amount, n in db.session.execute(PURCHASE_AMOUNTS, span):
        counts["purchase_bucket", str(amount_bucket(int(amount)))] += n
    counts["new_members", ""] += db.session.scalar(NEW_MEMBERS, span) or 0
    for platform, kind, n in db.session.execute(WALLET_EVENTS, span):
        what = "installs" if kind.value == "installed" else "removals"
        counts[f"{platform.value}_{what}", ""] += n
    for location_id, score, n in db.session.execute(ANSWERS, span):
        counts["nps_answers", f"{location_id or ''}:{score}"] += n
        counts[nps_class(score), ""] += n
    return Counts({k: v for k, v in counts.items() if v})


def span_activities(program_id: int, t0: datetime, t1: datetime
                    ) -> tuple[dict[int, set[str]], dict[int, State]]:
    """The cards with a visit in ``[t0, t1)``, which activities (visit, redeem, purchase)
    they had, and the rolled-up last days of those that have some."""
    found: dict[int, set[str]] = defaultdict(set)
    states: dict[int, State] = {}
    for card_id, kind, purchase, *days_of in db.session.execute(
            ACTIVITIES_OF_SPAN, {"p": program_id, "t0": t0, "t1": t1}):
        found[card_id].add("visit")
        if kind is EntryKind.REDEEM:
            found[card_id].add("redeem")
        elif purchase:
            found[card_id].add("purchase")
        if any(days_of) and card_id not in states:
            states[card_id] = {act: (days_of[2 * i], days_of[2 * i + 1])
                               for i, act in enumerate(ACTIVITIES)}
    return found, states


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


Index = tuple[array, array, array, int]  # gaps, cumulative cards, cumulative seconds, total


def index_of(rows: dict[int, list[int]]) -> Index:
    """A day's activity as sorted gaps with cumulative counts (``rows``: gap -> [cards,
    of them second])."""
    gaps, cards, seconds = array("h"), array("i"), array("i")
    total = total_second = 0
    for gap in sorted(rows):
        total += rows[gap][0]
        total_second += rows[gap][1]
        gaps.append(gap)
        cards.append(total)
        seconds.append(total_second)
    return gaps, cards, seconds, total


def indexes(gaps: Gaps) -> dict[str, Index]:
    by_act: dict[str, dict[int, list[int]]] = defaultdict(dict)
    for (act, gap, second), n in gaps.items():
        row = by_act[act].setdefault(gap, [0, 0])
        row[0] += n
        if second:
            row[1] += n
    return {act: index_of(rows) for act, rows in by_act.items()}


def _bytes(values: array) -> bytes:
    if sys.byteorder == "big":  # stored little-endian
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _values(typecode: str, data: bytes) -> array:
    values = array(typecode)
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def decode(gaps: bytes, cards: bytes, seconds: bytes) -> Index:
    cumulative = _values("i", cards)
    return (_values("h", gaps), cumulative, _values("i", seconds),
            cumulative[-1] if cumulative else 0)


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
    progress = db.session.get(Progress, program_id, populate_existing=True)
    if progress is not None and progress.time_zone == program.time_zone and \
            progress.rolled_through is not None and progress.rolled_through >= last:
        return progress.rolled_through  # nothing to do: no lock taken
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
    activities, states = span_activities(program_id, t0, t1)
    known = set(states)
    gaps = day_gaps(day, activities, states)
    if counts:
        db.session.execute(insert(DayCount), [
            {"program_id": program_id, "day": day, "name": name, "key": key, "value": value}
            for (name, key), value in counts.items()])
    if gaps:
        db.session.execute(insert(ActivityDay), [
            {"program_id": program_id, "day": day, "activity": act, "gaps": _bytes(g),
             "cards": _bytes(c), "seconds": _bytes(sec)}
            for act, (g, c, sec, _) in indexes(gaps).items()])

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
    """The sweep's task: roll up every program's closed days. A program whose rollup fails
    is logged and left for the next sweep (or the next stats request): the sweep's other
    work goes on."""
    for program_id in db.session.scalars(select(Program.id).order_by(Program.id)).all():
        try:
            program = db.session.get(Program, program_id)
            if program is not None:
                catch_up(program)
        except OperationalError:  # another sweep holds the lock, or SQLite is busy
            db.session.rollback()
        except Exception:
            db.session.rollback()
            log.exception("Rolling up the analytics of program %s failed", program_id)


# --- Reading ----------------------------------------------------------------------------------

#: The counts without a key: loaded per day (the others are summed in SQL per range).
DAILY = ("net_points", "new_members", "visits", "issued_earn", "issued_bonus",
         "issued_adjust", "issued_reverse", "points_redeemed", "points_expired",
         "clawed_refund", "clawed_adjust", "clawed_reverse", "refunds", "refund_amount",
         "purchases_gross", "purchase_amount_gross", "purchases_reversed",
         "purchase_amount_reversed", "apple_installs", "apple_removals", "google_installs",
         "google_removals", "nps_promoters", "nps_passives", "nps_detractors")
CUMULATIVE = ("net_points", "new_members")


class DaySeries:
    """A program's days up to ``last`` (rolled up, else computed up to ``to``): the daily
    counts from ``count_first``, the activity gaps from ``gap_first``, with sums over
    windows of them."""

    def __init__(self, program: Program, count_first: date, gap_first: date, last: date,
                 to: datetime) -> None:
        self.program_id = program.id
        self.tz = zone(program)
        self.first, self.last = count_first, last
        progress = db.session.get(Progress, program.id)
        done = progress.rolled_through if progress and \
            progress.time_zone == program.time_zone else None
        self.rolled_through = done
        self.counts: dict[date, Counts] = defaultdict(Counter)
        self.live: dict[date, Counts] = {}
        self._index: dict[tuple[date, str], Index] = {}
        stored_last = min(done, last) if done else None
        if stored_last is not None:
            d = DayCount
            for day, name, value in db.session.execute(
                    select(d.day, d.name, d.value).where(
                        d.program_id == program.id, d.name.in_(DAILY),
                        d.day >= count_first, d.day <= stored_last, d.key == "")):
                self.counts[day][name, ""] += value
            a = ActivityDay
            # Visits reach back furthest (churn of the previous range, 90 days active);
            # redemptions and purchases are counted in the range and the previous one.
            for day, act, gaps, cards, seconds in db.session.execute(
                    select(a.day, a.activity, a.gaps, a.cards, a.seconds).where(
                        a.program_id == program.id, a.day >= gap_first,
                        a.day <= stored_last,
                        (a.activity == "visit") | (a.day >= count_first))):
                self._index[day, act] = decode(gaps, cards, seconds)
        # Cumulative figures (members, liability) of the stored days before ``count_first``.
        self.before: Counts = Counter()
        if stored_last is not None:
            for name, value in db.session.execute(
                    select(DayCount.name, func.sum(DayCount.value)).where(
                        DayCount.program_id == program.id, DayCount.name.in_(CUMULATIVE),
                        DayCount.day < min(count_first, stored_last + timedelta(days=1)))
                    .group_by(DayCount.name)):
                self.before[name, ""] += int(value or 0)
        self.stored_last = stored_last
        # The days not rolled up: computed now, in order, from the rolled-up card states.
        live_first = done + timedelta(days=1) if done else first_day(program, self.tz)
        states: dict[int, State] = {}
        for day in days(live_first, last):
            t0 = day_start(self.tz, day)
            t1 = min(day_start(self.tz, day + timedelta(days=1)), to)
            if t1 <= t0:
                break
            counts = span_counts(program.id, t0, t1)
            activities, stored = span_activities(program.id, t0, t1)
            # A card seen on an earlier live day goes on from there, not from its row.
            states.update({c: state for c, state in stored.items() if c not in states})
            day_gap = day_gaps(day, activities, states)
            if day >= count_first:
                self.live[day] = counts
                self.counts[day] = Counter({k: v for k, v in counts.items() if k[1] == ""})
            else:
                self.before.update({k: v for k, v in counts.items() if k[0] in CUMULATIVE})
            if day >= gap_first:
                for act, index in indexes(day_gap).items():
                    self._index[day, act] = index

    # Sums of additive counts -------------------------------------------------------------
    def total(self, name: str, first: date, last: date) -> int:
        return sum(self.counts[d].get((name, ""), 0) for d in days(first, last)
                   if d in self.counts)

    def keyed(self, name: str, first: date, last: date) -> Counter[str]:
        """A keyed count (rule points, amount buckets, answers) summed over the days."""
        found: Counter[str] = Counter()
        if self.stored_last is not None and first <= self.stored_last:
            d = DayCount
            for key, value in db.session.execute(
                    select(d.key, func.sum(d.value)).where(
                        d.program_id == self.program_id, d.name == name, d.day >= first,
                        d.day <= min(last, self.stored_last)).group_by(d.key)):
                found[key] += int(value or 0)
        for day, counts in self.live.items():
            if first <= day <= last:
                for (n, key), value in counts.items():
                    if n == name:
                        found[key] += value
        return Counter({k: v for k, v in found.items() if v})

    def up_to(self, name: str, last: date) -> int:
        """The sum of a count over every day up to ``last`` (members, liability)."""
        return self.before.get((name, ""), 0) + self.total(name, self.first, last)

    # Distinct cards -----------------------------------------------------------------------
    def _le(self, day: date, act: str, k: int) -> tuple[int, int, int]:
        """(cards with gap <= k, of them with ``second``, all cards) of a day's activity."""
        found = self._index.get((day, act))
        if found is None:
            return 0, 0, 0
        gaps, cum, cum_second, total = found
        i = bisect_right(gaps, k)
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
