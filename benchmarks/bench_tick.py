"""``pointpass tick`` over 1,000,000 point lots on PostgreSQL: time and peak memory.

A scratch database gets one program (365-day expiry, 14-day reminders, tiers Bronze at 0 and
Silver at 450) and ``--lots / 5`` cards of five lots each, written in bulk with
``INSERT ... SELECT generate_series`` so that the ledger's invariants hold (every lot has its
earn entry, one redemption per card consumed 40 points of its first lot). Per card:

- lot 1 (60 of 100 left) and lot 2: past their expiry on every second card (the others
  expire in 100 days),
- lot 3: pending, due for release (the card then reaches Silver),
- lot 4: expires in 200 days (nothing to do),
- lot 5: expires in 7 days (a reminder).

So a tick releases ``cards`` lots, expires ``cards`` lots (``cards / 2 * 160`` points) and
reminds every card. It runs in this process (``app.loyalty.tick.run``); then the invariants
are checked (``app.loyalty.invariants.violations``) and the counts compared with what was
made. The last line printed is JSON: seconds, peak RSS (``resource.getrusage``) and the
report.

    python benchmarks/bench_tick.py [--lots 1000000] [--batch-size 10000]

The target is under 60 s for 1,000,000 lots on the 2-core benchmark machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import _cpu_of, bench_app, machine, scratch_postgres

LOTS_PER_CARD = 5
ENTRIES_PER_CARD = 6  # an earn per lot and one redemption

GENERATE = [
    """INSERT INTO members (id, program_id, name, language, consent_marketing, consent_terms,
                            referral_code, created_at)
       SELECT g, %(program)s, 'Member ' || g, 'en', false, false, 'B' || g, %(t0)s
       FROM generate_series(1, %(cards)s) g""",
    """INSERT INTO cards (id, program_id, member_id, serial_number, authentication_token,
                          barcode_secret, barcode_version, status, balance, lifetime_points,
                          tier_id, version, updated_at, created_at, last_modified,
                          change_stamp, totp_last_counter, last_visit_at, member_language,
                          member_joined_at)
       SELECT g, %(program)s, g, 'BENCH' || lpad(g::text, 10, '0'), md5(g::text),
              md5('secret' || g), 1, 'active', 360, 400, %(bronze)s, 1, %(t0)s, %(t0)s,
              extract(epoch FROM %(t0)s::timestamptz)::bigint, 0, 0,
              %(t0)s::timestamptz + interval '6 minutes', 'en', %(t0)s
       FROM generate_series(1, %(cards)s) g""",
    # Earns of lots 1-5 (lot 3 pending), then a redemption of 40 points.
    """INSERT INTO ledger_entries (id, card_id, kind, points, pending_points, balance_after,
                                   actor, created_at)
       SELECT (g - 1) * 6 + j, g, CASE WHEN j = 6 THEN 'redeem' ELSE 'earn' END,
              CASE WHEN j = 6 THEN -40 WHEN j = 3 THEN 0 ELSE 100 END,
              CASE WHEN j = 3 THEN 100 ELSE 0 END,
              (ARRAY[100, 200, 200, 300, 400, 360])[j], 'bench',
              %(t0)s::timestamptz + j * interval '1 minute'
       FROM generate_series(1, %(cards)s) g, generate_series(1, 6) j
       ORDER BY 1""",
    """INSERT INTO point_lots (id, card_id, entry_id, points, remaining, pending, available_at,
                               expires_at, created_at)
       SELECT (g - 1) * 5 + j, g, (g - 1) * 6 + j, 100, CASE WHEN j = 1 THEN 60 ELSE 100 END,
              j = 3,
              CASE WHEN j = 3 THEN %(as_of)s::timestamptz - interval '1 hour' ELSE %(t0)s END,
              CASE j
                WHEN 1 THEN CASE WHEN g %% 2 = 0 THEN %(as_of)s::timestamptz - interval '35 days'
                                 ELSE %(as_of)s::timestamptz + interval '100 days' END
                WHEN 2 THEN CASE WHEN g %% 2 = 0 THEN %(as_of)s::timestamptz - interval '1 day'
                                 ELSE %(as_of)s::timestamptz + interval '100 days' END
                WHEN 3 THEN %(as_of)s::timestamptz + interval '358 days'
                WHEN 4 THEN %(as_of)s::timestamptz + interval '200 days'
                ELSE %(as_of)s::timestamptz + interval '7 days' END,
              %(t0)s
       FROM generate_series(1, %(cards)s) g, generate_series(1, 5) j
       ORDER BY 1""",
    """INSERT INTO lot_consumptions (entry_id, lot_id, points)
       SELECT (g - 1) * 6 + 6, (g - 1) * 5 + 1, 40 FROM generate_series(1, %(cards)s) g""",
    *(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
      for table in ("members", "cards", "ledger_entries", "point_lots")),
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(url: str, app: object, cards: int, as_of: datetime) -> None:
    from app.loyalty import programs

    with app.app_context():  # type: ignore[attr-defined]
        program = programs.create(
            name="Bench Tick", points_expire_after_days=365, expiry_reminder_days=14,
            tiers=[{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 450}])
        program_id = program.id
        bronze = next(t.id for t in program.tiers if t.name == "Bronze")
    params = {"program": program_id, "bronze": bronze, "cards": cards, "as_of": as_of,
              "t0": as_of - timedelta(days=400)}
    with psycopg.connect(url) as conn:
        for statement in GENERATE:
            conn.execute(statement, params)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args(argv)
    cards = max(2, args.lots // LOTS_PER_CARD)
    as_of = datetime(2026, 12, 1, tzinfo=UTC)

    with scratch_postgres() as url:
        app = bench_app(url, TICK_INTERVAL=0)
        from sqlalchemy import event

        from app.extensions import db
        from app.loyalty import invariants, tick

        # The PostgreSQL backends of the app's connections, to count their CPU: the
        # machine may be shared, so CPU seconds say more than the wall clock alone.
        backends: set[int] = set()
        with app.app_context():
            @event.listens_for(db.engine, "connect")
            def _remember_backend(dbapi_connection: object, _record: object) -> None:
                backends.add(int(dbapi_connection.info.backend_pid))  # type: ignore[attr-defined]

        started = time.monotonic()
        generate(url, app, cards, as_of)
        generated = time.monotonic() - started
        print(f"generated {cards * LOTS_PER_CARD:,} lots of {cards:,} cards in "
              f"{generated:.1f} s", flush=True)

        rss_before = peak_rss_mib()
        load_before = os.getloadavg()[0]
        with app.app_context():
            db.session.execute(text("SELECT 1"))  # a pooled connection, its backend known
            db.session.rollback()
            options = {} if args.batch_size is None else {"batch_size": args.batch_size}
            backend_cpu = {pid: _cpu_of(pid) for pid in backends}
            own_cpu = resource.getrusage(resource.RUSAGE_SELF)
            started = time.monotonic()
            report = tick.run(as_of, **options)
            seconds = time.monotonic() - started
            own_after = resource.getrusage(resource.RUSAGE_SELF)
            postgres_cpu = sum(_cpu_of(pid) - backend_cpu.get(pid, 0.0) for pid in backends)
            python_cpu = (own_after.ru_utime + own_after.ru_stime
                          - own_cpu.ru_utime - own_cpu.ru_stime)
            rss_after = peak_rss_mib()
            load_after = os.getloadavg()[0]
            print(f"tick: {report}", flush=True)
            started = time.monotonic()
            found = invariants.violations()
            checked = time.monotonic() - started
            # Every card reached Silver with its release; balances: 360 + 100 (released)
            # - 160 (expired) on even cards, 460 on odd ones.
            silver, balances = db.session.execute(text(
                "SELECT count(*) FILTER (WHERE t.name = 'Silver'), sum(c.balance) "
                "FROM cards c LEFT JOIN tiers t ON t.id = c.tier_id")).one()

            db.session.remove()
            db.engine.dispose()

    expected = {"released": cards, "points_released": 100 * cards,
                "expired": 2 * (cards // 2), "points_expired": 160 * (cards // 2),
                "reminded": cards, "lots_reminded": cards}
    expected.update({"silver_cards": cards,
                     "balances": 300 * (cards // 2) + 460 * (cards - cards // 2)})
    got = {name: getattr(report, name) for name in expected if hasattr(report, name)}
    got.update({"silver_cards": int(silver), "balances": int(balances)})
    result: dict[str, object] = {
        "benchmark": "tick", "machine": machine(), "lots": cards * LOTS_PER_CARD,
        "cards": cards, "batch_size": args.batch_size or tick.BATCH_SIZE,
        "tick_seconds": round(seconds, 2),
        "tick_cpu_seconds": {"python": round(python_cpu, 1), "postgres": round(postgres_cpu, 1),
                             "total": round(python_cpu + postgres_cpu, 1)},
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "generate_seconds": round(generated, 1),
        "check_ledger_seconds": round(checked, 2),
        "peak_rss_mib_before_tick": round(rss_before, 1),
        "peak_rss_mib": round(rss_after, 1), "report": report.as_dict(),
        "violations": len(found), "counts_as_expected": got == expected,
    }
    for line in found[:10]:
        print(line, file=sys.stderr)
    if got != expected:
        print(f"expected {expected}, got {got}", file=sys.stderr)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome["violations"] == 0 and outcome["counts_as_expected"] else 1)
