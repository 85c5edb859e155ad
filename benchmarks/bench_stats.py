"""The stats endpoint over 1,000,000 members and 20,000,000 ledger entries on PostgreSQL.

Targets (issue 18): ``GET /api/v1/programs/<id>/stats`` for a 90-day range answers with p95
under 300 ms, and keeping the rollups current costs under 10% of the earn rate.

1. A scratch database gets one program (IDR, Asia/Jakarta, points expiring after 365 days,
   ten stores, four rewards, three earning rules) and ``--members`` members with a card each
   and 20 ledger entries per card on average over ~400 days up to now: purchases, rule
   bonuses, redemptions, refunds, expiries, adjustments and reversals, with their lots,
   lot consumptions, redemptions, feedback invitations and Apple/Google wallet history
   (``benchmarks/stats_data.py`` describes the mix). Then the rollups are brought up to date
   once (the backfill, timed).
2. Under gunicorn (as the other benchmarks run it), ``--requests`` GETs of the stats from
   ``--clients`` concurrent clients for each range: the last 90 days (the dashboard's
   default use), 90 days a year ago, the last 30 days; p50/p95/p99 against 300 ms. The
   baseline in the same run: ``GET /api/v1/programs/<id>`` (authenticated, program-scoped)
   with the same clients.
3. Rollup upkeep: earns per second (bench_earn's load, on this database's cards) without and
   with the rollup's work running, interleaved ``--pairs`` times. "With" rolls up the last
   closed day again and again without pause in a process of its own (each time rolled
   back): the worst case. The served app's own sweep runs at its real cadence on both sides.
   The median with/without ratio gives the continuous cost; scaled by the share of a day
   one day's roll-up takes, the cost at the real cadence (one day rolled up per day).

The last line printed is JSON.

    python benchmarks/bench_stats.py [--members 1000000] [--keep NAME] [--requests 200]
        [--pairs 4] [--generate-only] [--check-ledger]

``--members 20000`` takes about five minutes (most of it the rollup backfill of 730 days);
``--members 2000 --generate-only --check-ledger`` well under a minute. With ``--keep NAME``
the database is named NAME and kept; a later run with the same name and ``--members`` reuses
its data (migrated to the newest revision, the rollups caught up), and ``--requests 0`` or
``--pairs 0`` skips a part.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, stats_data
from benchmarks.common import bench_app, machine

TARGET_P95_MS = 300.0
UPKEEP_BUDGET = 0.10
PROGRAM_NAME = "Bench Stats"
# The benchmark's own app runs no periodic sweep or tick (they would roll up the data while it
# is being written); the served app keeps both at their real cadence.
QUIET = {"OUTBOX_SWEEP_SECONDS": 10**9, "TICK_INTERVAL": 0}


def say(message: str) -> None:
    print(message, flush=True)


def make_program(app: Any) -> dict[str, Any]:
    """The program, its stores, rewards and rules; the ids the generator needs."""
    from app.extensions import db
    from app.loyalty import programs
    from app.loyalty.models import EarningRule

    with app.app_context():
        program = programs.create(
            name=PROGRAM_NAME, currency="IDR", time_zone="Asia/Jakarta",
            earn_points=1, earn_amount=100_000, points_expire_after_days=365,
            value_of_1000_points=1_000_000,
            tiers=[{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 5000},
                   {"name": "Gold", "threshold": 20000}],
            rewards=[{"name": name, "points_cost": cost} for name, cost in stats_data.REWARDS])
        for i in range(10):
            programs.add_location(program, name=f"Store {i + 1}", latitude=-6.2 + i / 100,
                                  longitude=106.8)
        conditions = [{"days_of_week": [2]}, {"days_of_week": [6, 7]},
                      {"min_amount": 30_000_000}]
        rules = [EarningRule(program_id=program.id, kind=kind, name=name, points=points,
                             percent=percent, conditions=condition)
                 for (kind, name, points, percent), condition
                 in zip(stats_data.RULES, conditions, strict=True)]
        db.session.add_all(rules)
        db.session.commit()
        tiers = {t.name: t.id for t in program.tiers}
        made = {"id": program.id, "first_store": min(loc.id for loc in program.locations),
                "first_reward": min(r.id for r in program.rewards),
                "first_rule": min(r.id for r in rules), "bronze": tiers["Bronze"],
                "silver": tiers["Silver"], "gold": tiers["Gold"]}
        db.session.remove()
        db.engine.dispose()
    return made


def generated(url: str, members: int) -> tuple[int, datetime] | None:
    """The program and the data's instant of data generated earlier in the database."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id, created_at FROM programs WHERE name = %s",
                           (PROGRAM_NAME,)).fetchone()
        if row is None:
            return None
        as_of = row[1]  # the program is made just before its data
        (cards,) = conn.execute("SELECT count(*) FROM cards WHERE program_id = %s",
                                (row[0],)).fetchone()
        if cards != members:
            raise SystemExit(f"the kept database holds {cards} members, not {members}")
    return row[0], as_of


def backfill(app: Any, program_id: int) -> dict[str, Any]:
    """Bring the program's rollups up to date once (what the sweep does, day by day)."""
    from app.analytics import rollup
    from app.extensions import db
    from app.loyalty.models import Program

    with app.app_context():
        program = db.session.get(Program, program_id)
        started = time.monotonic()
        last = rollup.catch_up(program)
        seconds = time.monotonic() - started
        done = db.session.execute(text_("SELECT count(DISTINCT day) FROM analytics_day_counts "
                                        "WHERE program_id = :p"), {"p": program_id}).scalar()
        db.session.remove()
        db.engine.dispose()
    return {"seconds": round(seconds, 1), "rolled_through": str(last), "days_with_rows": done}


def open_day(app: Any, program_id: int) -> dict[str, Any]:
    """Roll up today so far (the sweep's first pass over the open day), then a second pass
    (the sweep's steady state: nothing new here, the data stops at its instant)."""
    from app.analytics import rollup
    from app.extensions import db
    from app.loyalty.models import Program

    with app.app_context():
        passes = []
        for _ in range(2):
            program = db.session.get(Program, program_id)
            started = time.monotonic()
            through = rollup.advance_open_day(program)
            passes.append(round(time.monotonic() - started, 2))
        cards = db.session.execute(text_("SELECT count(*) FROM analytics_open_cards "
                                         "WHERE program_id = :p"), {"p": program_id}).scalar()
        day = db.session.execute(text_("SELECT day, through FROM analytics_open_days "
                                       "WHERE program_id = :p"), {"p": program_id}).first()
        db.session.remove()
        db.engine.dispose()
    return {"first_pass_seconds": passes[0], "second_pass_seconds": passes[1],
            "day": str(day[0]) if day else None,
            "through": day[1].isoformat() if day else None, "open_card_rows": cards,
            "second_pass_through": through.isoformat() if through else None}


def text_(sql: str) -> Any:
    from sqlalchemy import text

    return text(sql)


def keys_for(app: Any, program_id: int) -> tuple[str, str]:
    """A marketer key reaching the program (the stats) and a POS key (the earns)."""
    from app.auth import keys
    from app.extensions import db

    with app.app_context():
        marketer = keys.create("bench-stats", "marketer", [program_id])[1]
        pos = keys.create("bench-stats-pos", "pos", [program_id])[1]
        db.session.remove()
        db.engine.dispose()
    return marketer, pos


def timed_gets(port: int, path: str, headers: dict[str, str], requests: int, clients: int,
               ) -> dict[str, Any]:
    """``requests`` GETs of ``path`` from ``clients`` concurrent keep-alive connections (one
    warm-up each first): latencies in ms, and the statuses that were not 200."""
    import http.client
    import threading

    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    left = [requests]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", path, headers=headers)
        conn.getresponse().read()
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            began = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            spent = (time.perf_counter() - began) * 1000
            with lock:
                latencies.append(spent)
                if response.status != 200:
                    failures.append(response.status)
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)

    return {"requests": len(ordered), "errors": len(failures),
            "statuses": sorted(set(failures)), "per_second": round(len(ordered) / elapsed, 1),
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "max_ms": round(ordered[-1], 1)}


def ranges(now: datetime) -> dict[str, str]:
    """The query strings of the ranges timed (ISO datetimes with their offset)."""
    def q(start: datetime, end: datetime) -> str:
        from urllib.parse import urlencode

        return urlencode({"from": start.isoformat(), "to": end.isoformat()})

    year_ago = now - timedelta(days=365)
    return {"last 90 days": q(now - timedelta(days=90), now),
            "90 days a year ago": q(year_ago - timedelta(days=90), year_ago),
            "last 30 days": q(now - timedelta(days=30), now)}


UPKEEP = """
import sys, time
sys.path.insert(0, {root!r})
from datetime import timedelta
from sqlalchemy import delete
from benchmarks.common import bench_app
from app.analytics import rollup
from app.analytics.models import ActivityDay, DayCount
from app.extensions import db
from app.loyalty.models import Program
from app.timeutil import now

app = bench_app({url!r}, OUTBOX_SWEEP_SECONDS=10**9, TICK_INTERVAL=0)
with app.app_context():
    program = db.session.get(Program, {program_id})
    tz = rollup.zone(program)
    day = rollup.last_closed_day(tz, now())
    rounds = 0
    while True:
        # The rollup of the last closed day, done again and again, rolled back: the sweep's
        # work for one day (a program's sweep rolls up one new day per day).
        db.session.execute(delete(DayCount).where(DayCount.program_id == program.id,
                                                  DayCount.day == day))
        db.session.execute(delete(ActivityDay).where(ActivityDay.program_id == program.id,
                                                     ActivityDay.day == day))
        started = time.perf_counter()
        rollup.roll_up(program.id, tz, day)
        db.session.flush()
        db.session.rollback()
        rounds += 1
        print(f"{{rounds}} {{time.perf_counter() - started:.3f}}", flush=True)
"""


@contextmanager
def upkeep(url: str, program_id: int) -> Iterator[Path]:
    """The rollup's work running without pause in a process of its own (a worst case: the
    sweep rolls up one day per day); yields the file its round times go to."""
    import subprocess
    import tempfile

    log = Path(tempfile.mkstemp(prefix="bench-stats-upkeep-", suffix=".log")[1])
    script = UPKEEP.format(root=str(common.ROOT), url=url, program_id=program_id)
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=out,
                                stderr=subprocess.DEVNULL, cwd=common.ROOT)
    try:
        deadline = time.monotonic() + 120
        while not log.read_text().strip() and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the upkeep loop stopped")
            time.sleep(0.2)
        yield log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def upkeep_rounds(log: Path, since: int) -> list[float]:
    return [float(line.split()[1]) for line in log.read_text().splitlines()[since:]
            if len(line.split()) == 2]


def check_ledger(app: Any, url: str) -> dict[str, Any]:
    """The invariants' violations (``app.loyalty.invariants``) and the mix of entries."""
    from app.extensions import db
    from app.loyalty import invariants

    with app.app_context():
        found = invariants.violations()
        db.session.remove()
        db.engine.dispose()
    with psycopg.connect(url) as conn:
        kinds = dict(conn.execute("SELECT kind, count(*) FROM ledger_entries GROUP BY kind "
                                  "ORDER BY kind").fetchall())
        # The balance after each card's latest entry (in time order) is the card's balance.
        (mismatched,) = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT ON (card_id) card_id, balance_after "
            "FROM ledger_entries ORDER BY card_id, created_at DESC, id DESC) last "
            "JOIN cards c ON c.id = last.card_id WHERE c.balance <> last.balance_after"
        ).fetchone()
    return {"ledger_violations": len(found), "ledger_violation_examples": found[:5],
            "entries_by_kind": kinds, "latest_balance_after_mismatches": mismatched}


def table_sizes(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in stats_data.TABLES}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--keep", metavar="NAME",
                        help="keep the database under this name; reuse it if it exists")
    parser.add_argument("--chunk", type=int, default=50_000, help="members per generated batch")
    parser.add_argument("--generate-only", action="store_true",
                        help="generate (or reuse) the data and stop")
    parser.add_argument("--check-ledger", action="store_true",
                        help="check the ledger's invariants over the data (pointpass "
                        "check-ledger) and count the entries by kind")
    parser.add_argument("--requests", type=int, default=200,
                        help="stats GETs per range (0: skip the stats)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent stats clients")
    parser.add_argument("--pairs", type=int, default=4,
                        help="interleaved earn runs without and with the upkeep (0: skip)")
    parser.add_argument("--earn-seconds", type=float, default=6.0)
    parser.add_argument("--earn-clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)

    summary: dict[str, Any] = {
        "benchmark": "stats", "machine": machine(), "date": datetime.now(UTC).isoformat(),
        "command": " ".join(["benchmarks/bench_stats.py", *(argv or sys.argv[1:])]),
        "members": args.members, "load_average_start": round(os.getloadavg()[0], 1)}
    with common.kept_or_scratch_postgres(args.keep) as url:
        app = bench_app(url, **QUIET)
        found = generated(url, args.members)
        if found is None:
            as_of = datetime.now(UTC).replace(microsecond=0)
            program = make_program(app)
            program_id = program["id"]
            say(f"generating {args.members:,} members (data up to {as_of.isoformat()})")
            phases = stats_data.generate(url, program, args.members, as_of, chunk=args.chunk,
                                         say=say)
            summary["generate_seconds"] = {k: round(v, 1) for k, v in phases.items()}
            say(f"generated in {phases['total']:.0f} s: {summary['generate_seconds']}")
        else:
            program_id, as_of = found
            summary["reused_database"] = args.keep
            say(f"reusing the data of database {args.keep} (up to {as_of.isoformat()})")
        summary["rows"] = table_sizes(url)
        say(f"rows: {summary['rows']}")
        if args.check_ledger:
            summary.update(check_ledger(app, url))
            say(f"ledger check: {summary['ledger_violations']} violations, entries by kind "
                f"{summary['entries_by_kind']}")
        if args.generate_only:
            print(json.dumps(summary), flush=True)
            return summary
        # The rollups brought up to date (all closed days at first; on a kept database, the
        # days since its last run).
        summary["backfill"] = backfill(app, program_id)
        say(f"rollups backfilled: {summary['backfill']}")
        with psycopg.connect(url, autocommit=True) as conn:  # as autovacuum would, later
            conn.execute("VACUUM ANALYZE analytics_day_counts, analytics_activity_days, "
                         "analytics_card_activity, analytics_expiry_days")
        summary["open_day"] = open_day(app, program_id)
        say(f"open day rolled up: {summary['open_day']}")
        marketer, pos = keys_for(app, program_id)
        with psycopg.connect(url) as conn:
            serials = [row[0] for row in conn.execute(
                "SELECT serial_number FROM cards WHERE program_id = %s AND status = 'active' "
                "ORDER BY md5(id::text) LIMIT 2000", (program_id,))]
        env = {"POINTPASS_DATABASE_URL": url, "POINTPASS_SECRET_KEY": common.SECRET_KEY,
               "POINTPASS_INSTANCE_PATH": "/tmp/pointpass-bench-instance"}
        auth = {"Authorization": f"Bearer {marketer}"}
        with common.gunicorn(env, workers=args.workers, threads=args.threads) as (port, pid):
            if args.requests > 0:
                now = datetime.now(UTC)
                timings: dict[str, Any] = {}
                timings["baseline: GET program"] = timed_gets(
                    port, f"/api/v1/programs/{program_id}", auth, args.requests, args.clients)
                say(f"baseline: {timings['baseline: GET program']}")
                for name, query in ranges(now).items():
                    timings[name] = timed_gets(
                        port, f"/api/v1/programs/{program_id}/stats?{query}", auth,
                        args.requests, args.clients)
                    say(f"stats, {name}: {timings[name]}")
                baseline_p50 = timings["baseline: GET program"]["p50_ms"]
                for name in ranges(now):
                    timings[name]["p50_over_baseline"] = round(timings[name]["p50_ms"]
                                                               / baseline_p50, 1)
                summary["stats"] = timings
                worst = timings["last 90 days"]["p95_ms"]
                summary["target_p95_ms"] = TARGET_P95_MS
                summary["last_90_days_p95_ms"] = worst
                summary["p95_under_target"] = worst < TARGET_P95_MS

            # Earns with and without the rollup's work running, interleaved.
            from benchmarks.bench_earn import requests as earn_requests
            rates: dict[str, list[float]] = {"without": [], "with": []}
            upkeep_times: list[float] = []
            for i in range(args.pairs):
                for mode in (("without", "with") if i % 2 == 0 else ("with", "without")):
                    if mode == "with":
                        with upkeep(url, program_id) as log:
                            seen = len(log.read_text().splitlines())
                            result = common.http_load(port, args.earn_clients,
                                                      args.earn_seconds,
                                                      earn_requests(pos, serials),
                                                      cpu=common.CpuMeter(pid))
                            upkeep_times += upkeep_rounds(log, seen)
                    else:
                        result = common.http_load(port, args.earn_clients, args.earn_seconds,
                                                  earn_requests(pos, serials),
                                                  cpu=common.CpuMeter(pid))
                    if result.errors:
                        raise SystemExit(f"{result.errors} earns failed")
                    rates[mode].append(round(result.rate, 1))
                    say(f"  earn, upkeep {mode}: {result.line('')}")
        if args.pairs > 0:
            ratios = [w / wo for w, wo in zip(rates["with"], rates["without"], strict=True)]
            median = statistics.median(ratios)
            summary["earn"] = {
                "earns_per_second": rates, "with_over_without": [round(r, 3) for r in ratios],
                "median_ratio": round(median, 3), "cost": round(1 - median, 3),
                "budget": UPKEEP_BUDGET, "cost_under_budget": 1 - median < UPKEEP_BUDGET,
                "upkeep": ("the last closed day rolled up again without pause in its own "
                           "process (rolled back each time)"),
                "upkeep_round_seconds_median": round(statistics.median(upkeep_times), 3)
                if upkeep_times else None,
                "upkeep_rounds": len(upkeep_times)}
            if upkeep_times:
                # At its real cadence the sweep rolls up one day per day: the continuous
                # cost, scaled by the share of the day that one day's roll-up takes.
                day_share = statistics.median(upkeep_times) / 86400
                summary["earn"]["cost_at_real_cadence"] = round((1 - median) * day_share, 6)
                summary["earn"]["real_cadence_under_budget"] = \
                    (1 - median) * day_share < UPKEEP_BUDGET
    summary["load_average_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
