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
one, kept as one row a day and activity. Counting the cards of a window is then a binary
search in each day's row instead of a scan of the window's entries (docs/metrics.md
explains the sums).
"""

from __future__ import annotations

import json
import logging
import sys
from array import array
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Date, bindparam, case, cast, delete, func, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased

from app import dbutil
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
from app.loyalty.models import (
    Card,
    EntryKind,
    LedgerEntry,
    LotConsumption,
    Member,
    PointLot,
    Program,
)
from app.timeutil import now as clock_now
from app.wallet.events import WalletEvent

log = logging.getLogger("pointpass.analytics")

#: How long after a local day ends it is rolled up.
GRACE = timedelta(minutes=15)
#: How far behind the clock the sweep rolls up the open day (today): postings stamped
#: before that have committed; a request computes the rest from the tables.
OPEN_LAG = timedelta(minutes=2)
#: A pass that finds nothing new writes nothing, unless the open day's row is older than this
#: (an idle program does not write every sweep; a request reads the empty rest as rows).
OPEN_IDLE = timedelta(minutes=10)
#: The keyed count of the points lots gain (made) and lose (taken by debits) by the local
#: day they expire on (key: ISO date); kept in :class:`ExpiryDay`, not in day counts.
EXPIRING = "expiring"
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
_l, _c = PointLot, LotConsumption


def _expiry_day(postgresql: bool):  # type: ignore[no-untyped-def]
    """A lot's expiry as the program's local day (``tz``) on PostgreSQL; SQLite gives the
    instant, made a day in Python (:func:`_day_of`)."""
    return cast(func.timezone(bindparam("tz"), _l.expires_at), Date) if postgresql \
        else _l.expires_at


def _lot_changes(postgresql: bool) -> tuple:  # type: ignore[type-arg]
    """What the lots made by the span's entries hold, and what the span's debits took from
    lots, by expiry day (lots that never expire left out)."""
    day = _expiry_day(postgresql)
    made = (select(day, func.sum(_l.points)).select_from(_e)
            .join(Card, Card.id == _e.card_id).join(_l, _l.entry_id == _e.id)
            .where(*_in_span, _l.expires_at.is_not(None)).group_by(text("1")))
    taken = (select(day, func.sum(_c.points)).select_from(_e)
             .join(Card, Card.id == _e.card_id).join(_c, _c.entry_id == _e.id)
             .join(_l, _l.id == _c.lot_id)
             .where(*_in_span, _l.expires_at.is_not(None)).group_by(text("1")))
    return made, taken


LOT_CHANGES = {True: _lot_changes(True), False: _lot_changes(False)}


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _day_of(tz: ZoneInfo, value: date | datetime) -> date:
    return local_day(tz, value) if isinstance(value, datetime) else value


def expiry_changes(program_id: int, tz: ZoneInfo, t0: datetime, t1: datetime) -> Counter[date]:
    """How the points left on lots expiring each local day changed in ``[t0, t1)``."""
    made, taken = LOT_CHANGES[_postgresql()]
    return _made_minus_taken(made, taken, {"p": program_id, "t0": t0, "t1": t1, "tz": tz.key},
                             tz)


def _made_minus_taken(made: object, taken: object, params: dict[str, object],
                      tz: ZoneInfo) -> Counter[date]:
    """Points by expiry day: what ``made`` gave lots minus what ``taken`` took from them."""
    changes: Counter[date] = Counter()
    for value, points in db.session.execute(made, params):  # type: ignore[call-overload]
        changes[_day_of(tz, value)] += int(points or 0)
    for value, points in db.session.execute(taken, params):  # type: ignore[call-overload]
        changes[_day_of(tz, value)] -= int(points or 0)
    return changes


def _add_entry_sums(counts: Counts, groups: Iterable[tuple]) -> None:  # type: ignore[type-arg]
    """Count the span's entries from their sums by (kind, rule, positive): rows of
    :data:`ENTRY_SUMS`."""
    for kind, rule_id, positive, n, points, moved, amount, with_amount in groups:
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


def _add_other_tables(counts: Counts, span: dict[str, object]) -> None:
    """The span's new members, wallet events and feedback answers (each table's own index)."""
    counts["new_members", ""] += db.session.scalar(NEW_MEMBERS, span) or 0
    for platform, kind, n in db.session.execute(WALLET_EVENTS, span):
        what = "installs" if kind.value == "installed" else "removals"
        counts[f"{platform.value}_{what}", ""] += n
    for location_id, score, n in db.session.execute(ANSWERS, span):
        counts["nps_answers", f"{location_id or ''}:{score}"] += n
        counts[nps_class(score), ""] += n


def _finished(counts: Counts, expiry: Counter[date]) -> Counts:
    for day, points in expiry.items():
        counts[EXPIRING, day.isoformat()] += points
    return Counts({k: v for k, v in counts.items() if v})


def span_counts(program_id: int, tz: ZoneInfo, t0: datetime, t1: datetime) -> Counts:
    """The additive figures of ``[t0, t1)`` (docs/metrics.md names them), with the changes
    of the points expiring by day (:data:`EXPIRING`), added up in SQL (a whole day)."""
    counts: Counts = Counter()
    span = {"p": program_id, "t0": t0, "t1": t1}
    _add_entry_sums(counts, db.session.execute(ENTRY_SUMS, span))
    n, amount = db.session.execute(REVERSED_PURCHASES, span).one()
    counts["purchases_reversed", ""] += int(n or 0)
    counts["purchase_amount_reversed", ""] += int(amount or 0)
    for amount, n in db.session.execute(PURCHASE_AMOUNTS, span):
        counts["purchase_bucket", str(amount_bucket(int(amount)))] += n
    _add_other_tables(counts, span)
    return _finished(counts, expiry_changes(program_id, tz, t0, t1))


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
            states[card_id] = _state(days_of)
    return found, states


def _state(days_of: list[date | None]) -> State:
    return {act: (days_of[2 * i], days_of[2 * i + 1]) for i, act in enumerate(ACTIVITIES)}


# --- A short span, read as rows --------------------------------------------------------------
# The open day's tail (minutes) is read as its entries' rows and added up here: one scan of
# the ledger's time index, where the statements above scan it once each (on PostgreSQL its
# BRIN index makes each read its last block range whole). Both ways give the same counts;
# tests/analytics/test_scenario.py compares them over every day of its scenario.

SPAN_ENTRIES = (
    select(_e.id, _e.card_id, _e.kind, _e.rule_id, _e.points, _e.pending_points, _e.amount,
           _e.reverses_id).join(Card, Card.id == _e.card_id).where(*_in_span))
REVERSED_OF = select(_e.id, _e.kind, _e.amount).where(
    _e.id.in_(bindparam("ids", expanding=True)))
LOTS_OF = select(_l.expires_at, _l.points).where(
    _l.entry_id.in_(bindparam("ids", expanding=True)), _l.expires_at.is_not(None))
TAKEN_OF = (select(_l.expires_at, _c.points).select_from(_c).join(_l, _l.id == _c.lot_id)
            .where(_c.entry_id.in_(bindparam("ids", expanding=True)),
                   _l.expires_at.is_not(None)))
STATES_OF = select(_a.card_id, _a.visit_last, _a.visit_prev, _a.redeem_last, _a.redeem_prev,
                   _a.purchase_last, _a.purchase_prev).where(
    _a.card_id.in_(bindparam("ids", expanding=True)))


def span_rows(program_id: int, tz: ZoneInfo, t0: datetime, t1: datetime
              ) -> tuple[Counts, dict[int, set[str]], dict[int, State]]:
    """What :func:`span_counts` and :func:`span_activities` give, from the span's rows."""
    counts: Counts = Counter()
    span = {"p": program_id, "t0": t0, "t1": t1}
    rows = db.session.execute(SPAN_ENTRIES, span).all()
    sums: dict[tuple, list[int]] = {}  # type: ignore[type-arg]
    found: dict[int, set[str]] = defaultdict(set)
    reversals: list[int] = []
    expiry: Counter[date] = Counter()
    for _id, card_id, kind, rule_id, points, pending, amount, reverses_id in rows:
        moved = points + pending
        group = sums.setdefault((kind, rule_id, 1 if moved > 0 else 0), [0, 0, 0, 0, 0])
        group[0] += 1
        group[1] += points
        group[2] += moved
        if amount is not None:
            group[3] += amount
            group[4] += 1
        if kind is EntryKind.EARN or kind is EntryKind.REDEEM:
            found[card_id].add("visit")
            if kind is EntryKind.REDEEM:
                found[card_id].add("redeem")
            elif amount is not None:
                found[card_id].add("purchase")
                counts["purchase_bucket", str(amount_bucket(amount))] += 1
        if kind is EntryKind.REVERSE and reverses_id is not None:
            reversals.append(reverses_id)
    _add_entry_sums(counts, ((kind, rule_id, up, *values)
                             for (kind, rule_id, up), values in sums.items()))
    if reversals:
        undone = {i: (kind, amount) for i, kind, amount in _by_ids(REVERSED_OF, reversals)}
        for reverses_id in reversals:
            kind, amount = undone[reverses_id]
            if kind is EntryKind.EARN and amount is not None:
                counts["purchases_reversed", ""] += 1
                counts["purchase_amount_reversed", ""] += amount
    _add_other_tables(counts, span)
    states: dict[int, State] = {}
    if rows:
        ids = [row[0] for row in rows]
        for expires_at, points in _by_ids(LOTS_OF, ids):
            expiry[local_day(tz, expires_at)] += points
        for expires_at, points in _by_ids(TAKEN_OF, ids):
            expiry[local_day(tz, expires_at)] -= points
    for card_id, *days_of in _by_ids(STATES_OF, list(found)):
        if any(days_of):
            states[card_id] = _state(days_of)
    return _finished(counts, expiry), found, states


def _by_ids(statement: object, ids: list[int]) -> Iterable[tuple]:  # type: ignore[type-arg]
    for i in range(0, len(ids), 5000):
        yield from db.session.execute(statement, {"ids": ids[i:i + 5000]})  # type: ignore[arg-type]


#: Spans up to this long are read as rows (:func:`span_rows`), longer ones added up in SQL.
ROWS_SPAN = timedelta(hours=1)


def span_figures(program_id: int, tz: ZoneInfo, t0: datetime, t1: datetime
         ) -> tuple[Counts, dict[int, set[str]], dict[int, State]]:
    """The counts, cards' activities and their rolled-up states of ``[t0, t1)``."""
    if t1 - t0 <= ROWS_SPAN:
        return span_rows(program_id, tz, t0, t1)
    activities, states = span_activities(program_id, t0, t1)
    return span_counts(program_id, tz, t0, t1), activities, states


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
        progress.expiry_through = None
    return progress


def _forget(program_id: int) -> None:
    for model in (DayCount, ActivityDay, CardActivity, ExpiryDay, OpenCard, OpenDay):
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
            progress.rolled_through is not None and progress.rolled_through >= last and \
            progress.expiry_through == progress.rolled_through:
        return progress.rolled_through  # nothing to do: no lock taken
    while True:
        progress = _locked_progress(program)
        done = progress.rolled_through
        if progress.expiry_through != done:
            seed_expiry(program_id, tz, done)
            progress.expiry_through = done
        day = done + timedelta(days=1) if done else first_day(program, tz)
        if day > last:
            db.session.commit()
            return done
        roll_up(program_id, tz, day)
        progress.rolled_through = progress.expiry_through = day
        progress.updated_at = now
        db.session.commit()


def _add_expiry(program_id: int, changes: dict[date, int]) -> None:
    rows = [{"program_id": program_id, "day": day, "points": points}
            for day, points in changes.items() if points]
    if rows:
        upsert = dbutil.INSERT[db.session.get_bind().dialect.name](ExpiryDay)
        db.session.execute(upsert.on_conflict_do_update(
            index_elements=[ExpiryDay.program_id, ExpiryDay.day],
            set_={"points": ExpiryDay.points + upsert.excluded.points}), rows)


def seed_expiry(program_id: int, tz: ZoneInfo, through: date | None) -> None:
    """Set the program's :class:`ExpiryDay` rows from its lots as they were at the end of
    ``through`` (None: no day rolled up, no rows): what the lots made by then hold, minus
    what debits took from them by then (in the caller's transaction)."""
    db.session.execute(delete(ExpiryDay).where(ExpiryDay.program_id == program_id))
    if through is None:
        return
    end = day_start(tz, through + timedelta(days=1))
    postgresql = _postgresql()
    day = _expiry_day(postgresql)
    ours = (Card.program_id == program_id, _l.expires_at.is_not(None), _e.created_at < end)
    made = (select(day, func.sum(_l.points)).select_from(_l)
            .join(Card, Card.id == _l.card_id).join(_e, _e.id == _l.entry_id)
            .where(*ours).group_by(text("1")))
    taken = (select(day, func.sum(_c.points)).select_from(_c)
             .join(_e, _e.id == _c.entry_id).join(_l, _l.id == _c.lot_id)
             .join(Card, Card.id == _l.card_id).where(*ours).group_by(text("1")))
    _add_expiry(program_id, _made_minus_taken(made, taken, {"tz": tz.key}, tz))


def roll_up(program_id: int, tz: ZoneInfo, day: date) -> None:
    """Write the rows of one closed day (in the caller's transaction); the day's open-day
    rows are done with."""
    t0, t1 = day_start(tz, day), day_start(tz, day + timedelta(days=1))
    counts = span_counts(program_id, tz, t0, t1)
    activities, states = span_activities(program_id, t0, t1)
    known = set(states)
    gaps = day_gaps(day, activities, states)
    _add_expiry(program_id, {date.fromisoformat(key): value
                             for (name, key), value in counts.items() if name == EXPIRING})
    rows = [{"program_id": program_id, "day": day, "name": name, "key": key, "value": value}
            for (name, key), value in counts.items() if name != EXPIRING]
    if rows:
        db.session.execute(insert(DayCount), rows)
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
    db.session.execute(delete(OpenCard).where(OpenCard.program_id == program_id,
                                              OpenCard.day <= day))
    db.session.execute(delete(OpenDay).where(OpenDay.program_id == program_id,
                                             OpenDay.day <= day))


def rebuild(program: Program, now: datetime | None = None) -> None:
    """Forget a program's rollups and roll up all its closed days again (commits)."""
    progress = _locked_progress(program)
    _forget(program.id)
    progress.rolled_through = progress.expiry_through = None
    db.session.commit()
    catch_up(program, now)


# --- The open day ---------------------------------------------------------------------------
# The day after the last rolled-up one is rolled up by the sweep as it goes, up to
# OPEN_LAG before the clock: its counts and gaps in one row (OpenDay), the cards it counted in
# OpenCard. Reading it and computing only what came after its ``through`` gives the same as
# computing the whole day (the scenario test checks it): a card's activity already counted
# is not counted again, and its gap is measured from the same rolled-up state.

def _dump_counts(counts: Counts) -> str:
    return json.dumps([[name, key, value] for (name, key), value in counts.items() if value])


def _load_counts(data: str) -> Counts:
    return Counts({(name, key): value for name, key, value in json.loads(data)})


def _dump_gaps(gaps: Gaps) -> str:
    return json.dumps([[act, gap, second, n] for (act, gap, second), n in gaps.items()])


def _load_gaps(data: str) -> Gaps:
    return Gaps({(act, gap, bool(second)): n for act, gap, second, n in json.loads(data)})


def counted_on_open_day(program_id: int, day: date, card_ids: Iterable[int],
                        through: datetime | None = None) -> dict[int, set[str]]:
    """Which activities of these cards the open day ``day`` counted (up to ``through``:
    rows a later pass of the sweep added are left out)."""
    found: dict[int, set[str]] = defaultdict(set)
    ids = list(card_ids)
    for i in range(0, len(ids), 5000):
        query = select(OpenCard.card_id, OpenCard.activity).where(
            OpenCard.program_id == program_id, OpenCard.day == day,
            OpenCard.card_id.in_(ids[i:i + 5000]))
        if through is not None:
            query = query.where(OpenCard.through <= through)
        for card_id, act in db.session.execute(query):
            found[card_id].add(act)
    return found


def not_counted(activities: dict[int, set[str]], counted: dict[int, set[str]]
                ) -> dict[int, set[str]]:
    """The cards' activities the open day did not count yet."""
    left = {card_id: acts - counted.get(card_id, set()) for card_id, acts in activities.items()}
    return {card_id: acts for card_id, acts in left.items() if acts}


def advance_open_day(program: Program, now: datetime | None = None) -> datetime | None:
    """Roll up the program's open day (the one after the last rolled-up day) from where the
    last pass stopped up to :data:`OPEN_LAG` before ``now`` (commits). Returns where it
    stopped (None: nothing to do)."""
    now = now or clock_now()
    tz = zone(program)
    progress = _locked_progress(program)  # one pass at a time, and none during a roll-up
    done = progress.rolled_through
    if progress.expiry_through != done:  # the caller catches up first
        db.session.commit()
        return None
    day = done + timedelta(days=1) if done else first_day(program, tz)
    t0 = day_start(tz, day)
    through = min(day_start(tz, day + timedelta(days=1)), now - OPEN_LAG)
    open_day = db.session.get(OpenDay, program.id, populate_existing=True)
    if open_day is not None and open_day.day != day:  # left over (a roll-up removes it)
        db.session.expunge(open_day)
        db.session.execute(delete(OpenCard).where(OpenCard.program_id == program.id))
        db.session.execute(delete(OpenDay).where(OpenDay.program_id == program.id))
        open_day = None
    start = open_day.through if open_day is not None else t0
    if through <= start:
        db.session.commit()
        return None
    more, activities, states = span_figures(program.id, tz, start, through)
    if open_day is not None and not more and not activities and \
            through - open_day.through < OPEN_IDLE:
        db.session.commit()  # nothing happened: no write (a request reads the empty tail)
        return None
    counts = _load_counts(open_day.counts) if open_day is not None else Counts()
    gaps = _load_gaps(open_day.gaps) if open_day is not None else Gaps()
    counts.update(more)
    counted = counted_on_open_day(program.id, day, activities) if open_day is not None \
        else {}
    new = not_counted(activities, counted)
    gaps.update(day_gaps(day, new, states))
    if new:
        db.session.execute(insert(OpenCard), [
            {"program_id": program.id, "card_id": card_id, "activity": act, "day": day,
             "through": through} for card_id, acts in new.items() for act in sorted(acts)])
    if open_day is None:
        db.session.add(OpenDay(program_id=program.id, day=day, through=through,
                               counts=_dump_counts(counts), gaps=_dump_gaps(gaps)))
    else:
        open_day.through = through
        open_day.counts, open_day.gaps = _dump_counts(counts), _dump_gaps(gaps)
    db.session.commit()
    return through


def sweep_task() -> None:
    """The sweep's task: roll up every program's closed days, then its open day. A program
    whose rollup fails is logged and left for the next sweep (or the next stats request):
    the sweep's other work goes on."""
    for program_id in db.session.scalars(select(Program.id).order_by(Program.id)).all():
        try:
            program = db.session.get(Program, program_id)
            if program is not None:
                catch_up(program)
                advance_open_day(program)
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
CUMULATIVE = ("net_points", "new_members", "apple_installs", "apple_removals",
              "google_installs", "google_removals")


def lots_expiring(program_id: int, tz: ZoneInfo, first: date, last: date) -> int:
    """The points left on the program's lots (pending ones too) that expire on the local
    days ``first`` .. ``last``, read from the lots (what :class:`ExpiryDay` saves reading)."""
    return int(db.session.scalar(
        select(func.coalesce(func.sum(_l.remaining), 0))
        .join(Card, Card.id == _l.card_id)
        .where(Card.program_id == program_id, _l.remaining > 0, _l.expires_at.is_not(None),
               _l.expires_at >= day_start(tz, first),
               _l.expires_at < day_start(tz, last + timedelta(days=1)))) or 0)


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
        self._keyed: dict[tuple[str, date, date], Counter[str]] = {}
        self._running: dict[str, list[int]] = {}  # count name -> running totals by day
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
        # The days not rolled up: computed now, in order, from the rolled-up card states (the
        # open day from the sweep's row and what came after it).
        live_first = done + timedelta(days=1) if done else first_day(program, self.tz)
        ours = progress is not None and progress.time_zone == program.time_zone
        self.expiry_through = progress.expiry_through if progress and ours else None
        self.expiry_live: Counter[date] = Counter()  # changes since the rolled-up days
        self.live_to = day_start(self.tz, live_first)  # ... up to this instant
        open_day = db.session.get(OpenDay, program.id) if ours else None
        if open_day is not None and open_day.day != live_first:
            open_day = None
        self.open_day = open_day
        states: dict[int, State] = {}
        for day in days(live_first, last):
            t0 = day_start(self.tz, day)
            t1 = min(day_start(self.tz, day + timedelta(days=1)), to)
            if t1 <= t0:
                break
            if open_day is not None and day == open_day.day and t1 >= open_day.through:
                counts, day_gap = self._open(open_day, t1, states)
            else:
                counts, activities, stored = span_figures(program.id, self.tz, t0, t1)
                # A card seen on an earlier live day goes on from there, not from its row.
                states.update({c: state for c, state in stored.items() if c not in states})
                if open_day is not None and day > open_day.day:
                    self._carry(open_day, activities, states)
                day_gap = day_gaps(day, activities, states)
            self._expiring(counts)
            self.live_to = t1
            if day >= count_first:
                self.live[day] = counts
                self.counts[day] = Counter({k: v for k, v in counts.items() if k[1] == ""})
            else:
                self.before.update({k: v for k, v in counts.items() if k[0] in CUMULATIVE})
            if day >= gap_first:
                for act, index in indexes(day_gap).items():
                    self._index[day, act] = index

    def _open(self, open_day: OpenDay, t1: datetime, states: dict[int, State]
              ) -> tuple[Counts, Gaps]:
        """The open day up to ``t1``: the sweep's row, and what came after its ``through``
        for the activities it did not count yet."""
        counts, gaps = _load_counts(open_day.counts), _load_gaps(open_day.gaps)
        if t1 > open_day.through:
            more, activities, stored = span_figures(self.program_id, self.tz, open_day.through, t1)
            counts.update(more)
            counted = counted_on_open_day(self.program_id, open_day.day, activities,
                                          open_day.through)
            new = not_counted(activities, counted)
            states.update({c: state for c, state in stored.items() if c not in states})
            gaps.update(day_gaps(open_day.day, new, states))
        return counts, gaps

    def _carry(self, open_day: OpenDay, activities: dict[int, set[str]],
               states: dict[int, State]) -> None:
        """Move the states of a later live day's cards on to the open day where the open
        day's row counted their activity (those counted after it moved already)."""
        counted = counted_on_open_day(self.program_id, open_day.day, activities,
                                      open_day.through)
        for card_id, acts in counted.items():
            state = states.setdefault(card_id, {act: (None, None) for act in ACTIVITIES})
            for act in acts:
                last, _ = state[act]
                if last != open_day.day:
                    state[act] = (open_day.day, last)

    def _expiring(self, counts: Counts) -> None:
        for (name, key), value in counts.items():
            if name == EXPIRING:
                self.expiry_live[date.fromisoformat(key)] += value

    def expiring(self, first: date, n_days: int, now: datetime) -> int:
        """The points left now on lots expiring on the local days ``first`` ..
        ``first + n_days - 1`` (docs/metrics.md): the rolled-up rows, and the changes
        since (those of the live days, then up to ``now``)."""
        last = first + timedelta(days=n_days - 1)
        if self.expiry_through != self.rolled_through:  # not set yet (busy): from the lots
            return lots_expiring(self.program_id, self.tz, first, last)
        if self.live_to < now:
            self._expiring_up_to(now)
        stored = db.session.scalar(select(func.sum(ExpiryDay.points)).where(
            ExpiryDay.program_id == self.program_id, ExpiryDay.day >= first,
            ExpiryDay.day <= last)) if self.rolled_through is not None else 0
        return int(stored or 0) + sum(v for day, v in self.expiry_live.items()
                                      if first <= day <= last)

    def _expiring_up_to(self, now: datetime) -> None:
        """The changes of the expiring points after the live days computed (a range ending
        before now): the open day's row where it covers them, the tables for the rest."""
        start = self.live_to
        open_day = self.open_day
        if open_day is not None and start <= day_start(self.tz, open_day.day) and \
                open_day.through <= now:
            self._expiring(_load_counts(open_day.counts))
            start = open_day.through
        for day, points in expiry_changes(self.program_id, self.tz, start, now).items():
            self.expiry_live[day] += points
        self.live_to = now

    # Sums of additive counts -------------------------------------------------------------
    def total(self, name: str, first: date, last: date) -> int:
        """A count summed over ``first`` .. ``last`` (the days held: ``first`` .. ``last`` of
        the series): a difference of running totals, computed once per count."""
        first, last = max(first, self.first), min(last, self.last)
        if first > last:
            return 0
        running = self._running.get(name)
        if running is None:
            running, total = [0], 0
            for day in days(self.first, self.last):
                counts = self.counts.get(day)
                total += counts.get((name, ""), 0) if counts else 0
                running.append(total)
            self._running[name] = running
        return running[(last - self.first).days + 1] - running[(first - self.first).days]

    def prefetch_keyed(self, names: list[str], periods: list[tuple[date, date]]) -> None:
        """Sum the rolled-up keyed counts ``names`` over each of ``periods`` in one statement
        (what :meth:`keyed` then answers for them without a query of its own)."""
        if self.stored_last is None:
            return
        d = DayCount
        spans = [(first, min(last, self.stored_last)) for first, last in periods]
        sums = [func.sum(case((d.day.between(first, last), d.value), else_=0))
                for first, last in spans]
        for name in names:
            for period in periods:
                self._keyed[name, *period] = Counter()
        for name, key, *values in db.session.execute(
                select(d.name, d.key, *sums).where(
                    d.program_id == self.program_id, d.name.in_(names),
                    d.day >= min(first for first, _ in spans),
                    d.day <= max(last for _, last in spans)).group_by(d.name, d.key)):
            for period, value in zip(periods, values, strict=True):
                self._keyed[name, *period][key] += int(value or 0)

    def keyed(self, name: str, first: date, last: date) -> Counter[str]:
        """A keyed count (rule points, amount buckets, answers) summed over the days."""
        found: Counter[str] = Counter()
        if (name, first, last) in self._keyed:
            found.update(self._keyed[name, first, last])
        elif self.stored_last is not None and first <= self.stored_last:
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
