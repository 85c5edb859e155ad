"""Earn requests per second through gunicorn on PostgreSQL, against the bare transaction.

Baseline, measured in the same run: the same statements (lock the card and look up the
idempotency key, read the tiers, guarded update, ledger insert, outbox insert) and commit,
issued directly with psycopg by the same number of concurrent clients, with no HTTP, Flask or
ORM in between.

    python benchmarks/bench_earn.py [--clients 32] [--seconds 8]
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from benchmarks import common

CARDS = 1000


def seed(url: str) -> tuple[list[str], str]:
    from app.auth import keys
    from app.enrollment import service as enrollment
    from app.extensions import db
    from app.loyalty import programs

    app = common.bench_app(url)
    with app.app_context():
        program = programs.create(
            name="Bench",
            tiers=[{"name": "Base", "threshold": 0}, {"name": "Gold", "threshold": 10**6}],
        )
        serials = [
            enrollment.enroll(program, enrollment.Enrollment(name=f"M{i}")).serial_number
            for i in range(CARDS)
        ]
        key = keys.create("bench", "pos")[1]
        db.engine.dispose()
    return serials, key


def requests(key: str, serials: list[str]):  # type: ignore[no-untyped-def]
    rngs: dict[int, random.Random] = {}

    def request_for(i: int, n: int) -> bytes:
        rng = rngs.setdefault(i, random.Random(i))
        return common.json_post(f"/api/v1/cards/{rng.choice(serials)}/earn",
                                {"points": 5, "reference": "bench"},
                                {"Authorization": f"Bearer {key}", "Idempotency-Key": f"c{i}-{n}"})

    return request_for


def psycopg_worker(url: str, serials: list[str]):  # type: ignore[no-untyped-def]
    dsn = url.replace("postgresql+psycopg://", "postgresql://")

    def make(i: int):  # type: ignore[no-untyped-def]
        conn = psycopg.connect(dsn)
        rng = random.Random(1000 + i)
        counter = itertools.count()

        def op() -> bool:
            serial = rng.choice(serials)
            key = f"p{i}-{next(counter)}"
            with conn.transaction():
                card_id, _program_id = common.floor_lock(conn, serial, key, read_tiers=True)
                balance, _version = common.floor_post(conn, card_id, 5, lifetime=5, rotate=0)
                conn.execute(
                    "INSERT INTO ledger_entries (card_id, kind, points, balance_after, actor, "
                    "reference, idempotency_key, request_fingerprint, created_at) VALUES "
                    "(%s, 'earn', 5, %s, 'bench', 'bench', %s, %s, now()) "
                    "ON CONFLICT (card_id, idempotency_key) DO NOTHING RETURNING id",
                    (card_id, balance, key, uuid.uuid4().hex)).fetchone()
                common.floor_announce(conn, card_id)
            return True

        return op

    return make


def main() -> None:
    args = common.load_arguments(__doc__)

    print(f"# earn benchmark — {dt.date.today()} — {common.machine()}")
    print(
        f"# {args.clients} concurrent clients, {args.seconds:.0f} s measured each, "
        f"{CARDS} cards, PostgreSQL"
    )
    with common.scratch_postgres() as url:
        serials, key = seed(url)
        floor = common.run_load(args.clients, args.seconds, psycopg_worker(url, serials))
        env = {
            "POINTPASS_DATABASE_URL": url,
            "POINTPASS_SECRET_KEY": common.SECRET_KEY,
            "POINTPASS_INSTANCE_PATH": "/tmp/pointpass-bench-instance",
        }
        with common.gunicorn(env, workers=args.workers, threads=args.threads) as (port, pid):
            service = common.http_load(port, args.clients, args.seconds, requests(key, serials),
                                       cpu=common.CpuMeter(pid))
    print(floor.line("floor: psycopg transaction, no HTTP"))
    print(service.line(f"service: gunicorn {args.workers}x{args.threads} gthread"))
    for label, result in (("floor", floor), ("service", service)):
        print(f"  CPU per {label} earn: {result.cpu.per_op(result.requests)}")
    print(f"ratio service/floor: {service.rate / floor.rate:.2f}")
    if service.errors or floor.errors:
        sys.exit("errors during the run")


if __name__ == "__main__":
    main()
