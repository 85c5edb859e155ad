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
   with the rollups' upkeep running, interleaved ``--pairs`` times; the median ratio must be
   above 0.90.

The last line printed is JSON.

    python benchmarks/bench_stats.py [--members 1000000] [--keep NAME] [--requests 200]

``--members 20000`` runs in about a minute. With ``--keep NAME`` the database is named NAME
and kept; a later run with the same name and ``--members`` reuses its data (migrating it to
the newest revision first).
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
from benchmarks.common import POSTGRES_ADMIN_URL, bench_app, machine, migrate

TARGET_P95_MS = 300.0
UPKEEP_BUDGET = 0.10
PROGRAM_NAME = "Bench Stats"


def say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def database(keep: str | None) -> Iterator[str]:
    """A scratch database (dropped afterwards), or with ``keep`` the database of that name,
    created if missing, migrated to the newest revision and kept."""
    if keep is None:
        with common.scratch_postgres() as url:
            yield url
        return
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (keep,)).fetchone() \
                is None:
            conn.execute(f'CREATE DATABASE "{keep}"')
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{keep}"
    migrate(url)
    yield url


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
        row = conn.execute("SELECT id FROM programs WHERE name = %s",
                           (PROGRAM_NAME,)).fetchone()
        if row is None:
            return None
        (cards, as_of) = conn.execute(
            "SELECT count(*), max(updated_at) FROM cards WHERE program_id = %s",
            (row[0],)).fetchone()
        if cards != members:
            raise SystemExit(f"the kept database holds {cards} members, not {members}")
    return row[0], as_of


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
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args(argv)

    summary: dict[str, Any] = {
        "benchmark": "stats", "machine": machine(), "date": datetime.now(UTC).isoformat(),
        "command": " ".join(["benchmarks/bench_stats.py", *(argv or sys.argv[1:])]),
        "members": args.members, "load_average_start": round(os.getloadavg()[0], 1)}
    with database(args.keep) as url:
        app = bench_app(url)
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
        if args.generate_only:
            print(json.dumps(summary), flush=True)
            return summary
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
