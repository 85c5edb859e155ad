"""Segment counts over 1,000,000 members on PostgreSQL, against the target of 500 ms.

A scratch database gets one program (tiers Bronze, Silver, Gold; ten locations) and
``--members`` members with a card each, written in bulk with ``INSERT ... SELECT
generate_series``:

- members: languages en/id/th/ms in turn, a birthday on four of five (spread over the year),
  joined over the two years before the benchmark's instant;
- cards: 60% Bronze, 30% Silver, 10% Gold, balances 0..1999, one in a hundred voided;
- three ledger entries per card (two earns, one redemption) at locations in turn, spread
  over the last year (the card's ``last_visit_at`` the latest of them; the member's
  language, birthday month and joining time copied to the card, as enrolment does);
- two point lots per card expiring over the next year, one in three used up;
- an iPhone registered for every third card; a Google object for every fourth card, saved
  on every second of those.

Each segment is counted with ``app.campaigns.segments.count`` (the API's code) ``--runs``
times after one warm-up; the median is compared with the target. The indexes each plan uses
come from ``EXPLAIN``. The last line printed is JSON.

    python benchmarks/bench_segments.py [--members 1000000] [--runs 7] [--keep NAME]

With ``--keep NAME`` the database is named NAME and kept afterwards; a later run with the same
name (and ``--members``) migrates it to the newest revision (the migrations backfill what
they add) and counts again without generating (about six minutes at a million members).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import bench_app, kept_or_scratch_postgres, machine

TARGET_MS = 500.0
AS_OF = datetime(2026, 12, 1, tzinfo=UTC)

GENERATE = [
    """INSERT INTO program_locations (program_id, name, latitude, longitude)
       SELECT %(program)s, 'Store ' || g, 1.3 + g / 100.0, 103.8 FROM generate_series(1, 10) g""",
    """INSERT INTO members (id, program_id, name, language, birthday, consent_marketing,
                            consent_terms, referral_code, created_at)
       SELECT g, %(program)s, 'Member ' || g, (ARRAY['en', 'id', 'th', 'ms'])[g %% 4 + 1],
              CASE WHEN g %% 5 = 0 THEN NULL
                   ELSE date '1970-01-01' + (g * 37 %% 18000) END,
              false, true, 'S' || g,
              %(as_of)s::timestamptz - (g %% 730) * interval '1 day' - g * interval '1 second'
       FROM generate_series(1, %(members)s) g""",
    """INSERT INTO cards (id, program_id, member_id, serial_number, authentication_token,
                          barcode_secret, barcode_version, status, balance, lifetime_points,
                          tier_id, version, updated_at, created_at, last_modified,
                          change_stamp, totp_last_counter, last_visit_at, member_language,
                          member_birthday_month, member_joined_at)
       SELECT g, %(program)s, g, 'SEG' || lpad(g::text, 10, '0'), md5(g::text),
              md5('secret' || g), 1, CASE WHEN g %% 100 = 0 THEN 'voided' ELSE 'active' END,
              g %% 2000, g %% 2000 + 100,
              CASE WHEN g %% 10 < 6 THEN %(bronze)s WHEN g %% 10 < 9 THEN %(silver)s
                   ELSE %(gold)s END,
              1, %(as_of)s, %(as_of)s, extract(epoch FROM %(as_of)s::timestamptz)::bigint, 0, 0,
              -- the latest of the visits below (what the postings of the ledger keep)
              (SELECT max(%(as_of)s::timestamptz - ((g * 7 + j * 53) %% 365) * interval '1 day'
                                                  - j * interval '1 hour')
               FROM generate_series(1, 3) j),
              -- copies of the fields of the member (what enrolment writes)
              m.language, extract(month FROM m.birthday), m.created_at
       FROM generate_series(1, %(members)s) g JOIN members m ON m.id = g""",
    """INSERT INTO ledger_entries (id, card_id, kind, points, pending_points, balance_after,
                                   actor, location_id, created_at)
       SELECT (g - 1) * 3 + j, g, CASE WHEN j = 3 THEN 'redeem' ELSE 'earn' END,
              CASE WHEN j = 3 THEN -50 ELSE 100 END, 0, 100, 'bench',
              %(first_location)s + (g + j) %% 10,
              %(as_of)s::timestamptz - ((g * 7 + j * 53) %% 365) * interval '1 day'
                                     - j * interval '1 hour'
       FROM generate_series(1, %(members)s) g, generate_series(1, 3) j
       ORDER BY 1""",
    """INSERT INTO point_lots (id, card_id, entry_id, points, remaining, pending, available_at,
                               expires_at, created_at)
       SELECT (g - 1) * 2 + j, g, (g - 1) * 3 + j, 100,
              CASE WHEN (g + j) %% 3 = 0 THEN 0 ELSE 100 END, false, %(as_of)s,
              %(as_of)s::timestamptz + ((g * 11 + j * 101) %% 365 + 1) * interval '1 day',
              %(as_of)s
       FROM generate_series(1, %(members)s) g, generate_series(1, 2) j
       ORDER BY 1""",
    """INSERT INTO apple_devices (id, library_identifier, push_token, registered_at, created_at)
       SELECT g, 'device-' || g, md5(g::text) || md5(g::text), %(as_of)s, %(as_of)s
       FROM generate_series(3, %(members)s, 3) g""",
    """INSERT INTO apple_registrations (device_id, card_id, created_at)
       SELECT g, g, %(as_of)s FROM generate_series(3, %(members)s, 3) g""",
    """INSERT INTO google_objects (card_id, synced_version, synced_balance, synced_at, saved)
       SELECT g, 1, g %% 2000, %(as_of)s, g %% 8 = 0 FROM generate_series(4, %(members)s, 4) g""",
    *(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
      for table in ("members", "cards", "ledger_entries", "point_lots", "apple_devices")),
]


def segments_to_time(tiers: dict[str, int], locations: list[int]) -> dict[str, dict[str, Any]]:
    """Representative segments: what a marketer builds."""
    return {
        "everyone": {},
        "silver or gold, en or id": {"tier_ids": [tiers["Silver"], tiers["Gold"]],
                                     "languages": ["en", "id"]},
        "lapsed: last visit over 90 days ago": {
            "last_visit_before": AS_OF - timedelta(days=90)},
        "visited store 3 in the last 30 days": {
            "location_ids": [locations[2]], "last_visit_after": AS_OF - timedelta(days=30)},
        "points expiring within 14 days, balance 500+": {
            "expiring_within_days": 14, "balance_min": 500},
        "December birthdays on an iPhone": {"birthday_month": 12, "apple_installed": True},
        "joined this year, saved to Google": {
            "joined_from": datetime(2026, 1, 1, tzinfo=UTC), "google_installed": True},
        "no wallet installed": {"apple_installed": False, "google_installed": False},
        "everything at once": {
            "tier_ids": [tiers["Silver"]], "languages": ["en", "th"],
            "location_ids": locations[:5], "last_visit_after": AS_OF - timedelta(days=180),
            "balance_min": 100, "balance_max": 1500, "expiring_within_days": 90,
            "apple_installed": True, "joined_until": datetime(2026, 6, 1, tzinfo=UTC)},
    }


def generate(url: str, app: Any, members: int) -> tuple[int, dict[str, int], list[int]]:
    from app.loyalty import programs

    with app.app_context():
        program = programs.create(name="Bench Segments", tiers=[
            {"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 1000},
            {"name": "Gold", "threshold": 5000}])
        program_id = program.id
        tiers = {t.name: t.id for t in program.tiers}
    with psycopg.connect(url) as conn:
        conn.execute(GENERATE[0], {"program": program_id})
        first = conn.execute("SELECT min(id) FROM program_locations WHERE program_id = %s",
                             (program_id,)).fetchone()[0]
        params = {"program": program_id, "members": members, "as_of": AS_OF,
                  "bronze": tiers["Bronze"], "silver": tiers["Silver"], "gold": tiers["Gold"],
                  "first_location": first}
        for statement in GENERATE[1:]:
            conn.execute(statement, params)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return program_id, tiers, list(range(first, first + 10))


def _generated(url: str, members: int) -> tuple[int, dict[str, int], list[int]] | None:
    """The program, tiers and locations of data generated earlier in the database, if it
    holds the benchmark's data for ``members`` members."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM programs WHERE name = 'Bench Segments'").fetchone()
        if row is None:
            return None
        program_id = row[0]
        (cards,) = conn.execute("SELECT count(*) FROM cards WHERE program_id = %s",
                                (program_id,)).fetchone()
        if cards != members:
            raise SystemExit(f"the kept database holds {cards} members, not {members}")
        tiers = dict(conn.execute("SELECT name, id FROM tiers WHERE program_id = %s",
                                  (program_id,)).fetchall())
        locations = [r[0] for r in conn.execute(
            "SELECT id FROM program_locations WHERE program_id = %s ORDER BY id",
            (program_id,))]
    return program_id, tiers, locations


def indexes_in(plan: str) -> list[str]:
    return sorted(set(re.findall(r"using (\w+)", plan)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workers", type=int, default=0,
                        help="SEGMENT_COUNT_WORKERS: parallel workers a count may use")
    parser.add_argument("--keep", metavar="NAME",
                        help="keep the database under this name; reuse it if it exists")
    args = parser.parse_args(argv)

    with kept_or_scratch_postgres(args.keep) as url:
        app = bench_app(url, CLOCK=lambda: AS_OF.timestamp(),
                        SEGMENT_COUNT_WORKERS=args.workers)
        from sqlalchemy import text
        from sqlalchemy.dialects import postgresql

        from app.campaigns import segments
        from app.extensions import db
        from app.loyalty.models import Program

        started = time.monotonic()
        found = _generated(url, args.members)
        if found is None:
            program_id, tiers, locations = generate(url, app, args.members)
            generated: float | None = time.monotonic() - started
            print(f"generated {args.members:,} members in {generated:.1f} s", flush=True)
        else:
            program_id, tiers, locations = found
            generated = None
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")  # after what a new migration changed
            print(f"reusing the {args.members:,} members of database {args.keep}", flush=True)

        results: dict[str, Any] = {}
        load_before = os.getloadavg()[0]
        with app.app_context():
            program = db.session.get(Program, program_id)
            for name, conditions in segments_to_time(tiers, locations).items():
                segment = segments.Segment.of(conditions)
                count = segments.count(program, segment)  # warm-up
                timings = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    again = segments.count(program, segment)
                    timings.append((time.perf_counter() - started) * 1000)
                    assert again == count
                statement = segments.count_statement(program, segment, AS_OF)
                sql = str(statement.compile(dialect=postgresql.dialect(),
                                            compile_kwargs={"literal_binds": True}))
                with segments.planner_settings():  # the count's own
                    plan = "\n".join(row[0] for row in db.session.execute(
                        text("EXPLAIN " + sql)))
                median = statistics.median(timings)
                results[name] = {
                    "count": count, "median_ms": round(median, 1),
                    "min_ms": round(min(timings), 1), "max_ms": round(max(timings), 1),
                    "ratio_to_target": round(median / TARGET_MS, 2),
                    "indexes": indexes_in(plan)}
                print(f"{name}: {count:,} members, median {median:.0f} ms "
                      f"({median / TARGET_MS:.2f} x the {TARGET_MS:.0f} ms target), "
                      f"indexes {indexes_in(plan)}", flush=True)
                if os.environ.get("BENCH_PLANS"):
                    print(plan, flush=True)
            db.session.rollback()
            db.session.remove()
            db.engine.dispose()

    worst = max(result["median_ms"] for result in results.values())
    summary = {
        "benchmark": "segments", "machine": machine(),
        "date": datetime.now(UTC).date().isoformat(), "data_as_of": AS_OF.isoformat(),
        "members": args.members, "runs": args.runs, "workers": args.workers,
        "generate_seconds": None if generated is None else round(generated, 1),
        "reused_database": generated is None,
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "target_ms": TARGET_MS, "worst_median_ms": worst,
        "worst_ratio_to_target": round(worst / TARGET_MS, 2),
        "all_under_target": worst < TARGET_MS, "segments": results,
    }
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
