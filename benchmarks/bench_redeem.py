"""Redemptions per second and p50/p99 latency through gunicorn on PostgreSQL.

32 concurrent clients each redeem from their own scanned card (``POST /api/v1/redemptions``
with a scan's ``scan_id``, 1 point, a fresh ``Idempotency-Key``). A scan pays for one
redemption (it is bound to the card's code version, which the redemption rotates), so each
request carries a fresh scan of the card's next code version: signed beforehand, as
``POST /api/v1/scans`` would sign it, with the service's key, so scanning is not measured and
the load generator does no signing while measuring. The floor, in the same
run: the same database transaction issued directly with psycopg by 32 threads (lock the card
with its tier and look up the idempotency key, the guarded update that also rotates the code
version, the ledger insert, the redemption insert, the outbox insert for the card's Apple
devices, commit), no HTTP. Apple Wallet is on (development certificates), as in production.

Each round runs, in turn, at saturation (every client sends its next request as soon as it has
an answer): the floor, the service, and for reference the ceiling, the floor's transaction
behind a bare WSGI app under the same gunicorn (benchmarks/bare_redeem_wsgi.py: no Flask,
validation, auth or SQLAlchemy). The machine's speed drifts between runs, so the rounds are
interleaved and the round with the median service/floor ratio is reported. Last, the service
with requests due at half the floor's median rate, spread over the 32 clients (p50/p99
counted from when each request was due), and the ceiling at that rate: what this machine
allows at all. Target: the service reaches at least 50% of the floor's rate with p99 under
50 ms.

    python benchmarks/bench_redeem.py [--clients 32] [--seconds 8] [--workers 2] [--threads 4]
                                      [--rounds 3]
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from benchmarks.common import (
    SECRET_KEY,
    CpuMeter,
    bench_app,
    floor_redeem,
    gunicorn,
    http_load,
    json_post,
    load_arguments,
    machine,
    run_load,
    scratch_postgres,
)
from passes.devcerts import write_dev_certs

BALANCE = 10_000_000


def seed(url: str, cards: int) -> tuple[list[str], str, str]:
    from app.auth import keys
    from app.enrollment import service as enrollment
    from app.extensions import db
    from app.loyalty import ledger, programs

    app = bench_app(url)
    with app.app_context():
        program = programs.create(name="Bench", tiers=[{"name": "Base", "threshold": 0}],
                                  rewards=[{"name": "Coffee", "points_cost": 100}])
        serials = []
        for i in range(cards):
            serial = enrollment.enroll(program, enrollment.Enrollment(name=f"M{i}")).serial_number
            ledger.adjust(serial, points=BALANCE, reason="bench", actor="bench")
            serials.append(serial)
        staff = keys.create("bench staff", "staff")[1]
        admin = keys.create("bench admin", "admin")[1]
        db.engine.dispose()
    return serials, staff, admin


def check_scan(port: int, staff: str, staff_id: int, url: str, serial: str) -> None:
    """Scan one card through the API: the benchmark's scans must be what the service signs."""
    from app.redemption.service import sign_scan

    code, version = card_code(url, serial)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/scans", data=json.dumps({"code": code}).encode(),
        headers={"Authorization": f"Bearer {staff}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        scan_id = json.loads(response.read())["scan_id"]
    signed = sign_scan(SECRET_KEY, serial=serial, staff_id=f"api_key:{staff_id}",
                       version=version)
    if scan_id.rsplit(".", 2)[0] != signed.rsplit(".", 2)[0]:  # the payload, not the time
        sys.exit("the benchmark's scans differ from the service's")


def card_code(url: str, serial: str) -> tuple[str, int]:
    """A card's current code and code version."""
    from app.extensions import db
    from app.loyalty.codes import redemption_code
    from app.loyalty.models import Card

    app = bench_app(url, SECRET_KEY=SECRET_KEY)
    with app.app_context():
        card = db.session.query(Card).filter_by(serial_number=serial).one()
        code, version = redemption_code(card), card.barcode_version
        db.engine.dispose()
    return code, version


class Scans:
    """One fresh ``scan_id`` per redemption: client ``i``'s ``n``-th request redeems version
    ``v + n`` of its card (``v`` its version now; each redemption rotates it once).

    ``per_client`` are signed up front; past that (a faster run than estimated) they are
    signed on the spot, at some cost to the load generator.
    """

    def __init__(self, dsn: str, serials: list[str], staff_id: int, per_client: int) -> None:
        from app.redemption.service import sign_scan

        with psycopg.connect(dsn) as conn:
            versions = dict(conn.execute("SELECT serial_number, barcode_version FROM cards"))
        actor = f"api_key:{staff_id}"
        self.sign = lambda serial, version: sign_scan(SECRET_KEY, serial=serial,
                                                      staff_id=actor, version=version)
        self.cards = [(serial, versions[serial]) for serial in serials]
        self.signed = [[self.sign(serial, version + n) for n in range(per_client)]
                       for serial, version in self.cards]

    def __call__(self, i: int, n: int) -> str:
        signed = self.signed[i]
        if n < len(signed):
            return signed[n]
        serial, version = self.cards[i]
        return self.sign(serial, version + n)


def psycopg_worker(url: str, serials: list[str], staff_key_id: int,  # type: ignore[no-untyped-def]
                   run: str = "p"):
    """The service's redemption transaction, statement for statement, with psycopg."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")

    def make(i: int):  # type: ignore[no-untyped-def]
        conn = psycopg.connect(dsn)
        counter = itertools.count()
        serial = serials[i % len(serials)]

        def op() -> bool:
            floor_redeem(conn, serial, f"{run}-{i}-{next(counter)}", staff_key_id)
            return True

        return op

    return make


def main() -> None:
    args = load_arguments(__doc__, rounds=3)

    print(f"# redemption benchmark — {dt.date.today()} — {machine()}")
    print(f"# {args.clients} concurrent clients, {args.seconds:.0f} s measured each, "
          f"PostgreSQL, one card per client, {args.rounds} interleaved rounds")
    with scratch_postgres() as url, tempfile.TemporaryDirectory() as certs_dir:
        serials, staff, _admin = seed(url, args.clients)
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            (staff_id,) = conn.execute("SELECT id FROM api_keys WHERE role = 'staff'").fetchone()
        certs = write_dev_certs(Path(certs_dir))
        env = {"POINTPASS_DATABASE_URL": url, "POINTPASS_SECRET_KEY": SECRET_KEY,
               "POINTPASS_INSTANCE_PATH": "/tmp/pointpass-bench-instance",
               "POINTPASS_STAFF_RATE_LIMIT": "1000000/minute",
               # Apple Wallet on, as in production: every redemption announces the change.
               "POINTPASS_APPLE_CERT": str(certs["pass_cert"]),
               "POINTPASS_APPLE_KEY": str(certs["pass_key"]),
               "POINTPASS_APPLE_WWDR_CERT": str(certs["wwdr"])}
        # What gunicorn and psycopg alone reach: the floor's transaction, bare WSGI.
        bare_env = {"BARE_DSN": dsn, "BARE_STAFF_KEY_ID": str(staff_id)}
        with gunicorn(env, workers=args.workers, threads=args.threads) as (port, pid), \
                gunicorn(bare_env, workers=args.workers, threads=args.threads,
                         app="benchmarks.bare_redeem_wsgi:app") as (bare_port, bare_pid):

            def requests(run: str, scans: Scans):  # type: ignore[no-untyped-def]
                def request_for(i: int, n: int) -> bytes:
                    return json_post("/api/v1/redemptions",
                                     {"scan_id": scans(i, n), "points": 1},
                                     {"Authorization": f"Bearer {staff}",
                                      "Idempotency-Key": f"{run}-{i}-{n}"})
                return request_for

            def bare_requests(run: str):  # type: ignore[no-untyped-def]
                def request_for(i: int, n: int) -> bytes:
                    return json_post("/", {"serial": serials[i % len(serials)]},
                                     {"Idempotency-Key": f"{run}-{i}-{n}"})
                return request_for

            # The VM's speed drifts between runs: floor, service and ceiling take turns, and
            # the round with the median service/floor ratio is reported.
            check_scan(port, staff, staff_id, url, serials[0])

            def scans_for(rate: float) -> Scans:
                # Enough for the warm-up and the measured seconds at ``rate``, with room.
                per_client = int(rate * (args.seconds + 2) / args.clients * 1.5) + 20
                return Scans(dsn, serials, staff_id, per_client)

            rounds = []
            for r in range(args.rounds):
                floor = run_load(args.clients, args.seconds,
                                 psycopg_worker(url, serials, staff_id, f"floor{r}"))
                # The service does not outrun the floor: its rate bounds the scans needed.
                scans = scans_for(floor.rate)
                service = http_load(port, args.clients, args.seconds,
                                    requests(f"closed{r}", scans), cpu=CpuMeter(pid))
                bare = http_load(bare_port, args.clients, args.seconds,
                                 bare_requests(f"bare{r}"), cpu=CpuMeter(bare_pid))
                print(f"round {r + 1}: floor {floor.rate:.0f}/s, service {service.rate:.0f}/s "
                      f"({service.rate / floor.rate:.2f}), ceiling {bare.rate:.0f}/s "
                      f"({bare.rate / floor.rate:.2f})", flush=True)
                rounds.append((floor, service, bare))
            rounds.sort(key=lambda run: run[1].rate / run[0].rate)
            floor, service, bare = rounds[len(rounds) // 2]
            target_rate = statistics.median(run[0].rate for run in rounds) / 2
            paced = http_load(port, args.clients, args.seconds,
                              requests("paced", scans_for(target_rate)),
                              rate=target_rate, cpu=CpuMeter(pid))
            paced_bare = http_load(bare_port, args.clients, args.seconds,
                                   bare_requests("bare-paced"), rate=target_rate,
                                   cpu=CpuMeter(bare_pid))
    print("median round:")
    print(floor.line("floor: psycopg transaction, no HTTP"))
    print(service.line(f"service: gunicorn {args.workers}x{args.threads} gthread"))
    print(bare.line("ceiling: bare WSGI + psycopg"))
    print(paced.line(f"service at half the floor's median rate ({target_rate:.0f}/s)"))
    print(paced_bare.line(f"ceiling at half the floor's median rate ({target_rate:.0f}/s)"))
    for label, result in (("floor", floor), ("service", service), ("ceiling", bare)):
        print(f"  CPU per {label} redemption: {result.cpu.per_op(result.requests)}")
    ratio = service.rate / floor.rate
    p99 = paced.percentile(99)
    print(f"ratio service/floor at saturation: {ratio:.2f} (target >= 0.50); "
          f"bare WSGI ceiling/floor: {bare.rate / floor.rate:.2f}")
    print(f"at {target_rate:.0f}/s offered: {paced.rate:.0f}/s served, p99 {p99:.1f} ms "
          f"(target < 50 ms); the ceiling {paced_bare.rate:.0f}/s served, "
          f"p99 {paced_bare.percentile(99):.1f} ms")
    if any(run.errors for round_ in rounds for run in round_) or paced.errors \
            or paced_bare.errors:
        sys.exit("errors during the run")


if __name__ == "__main__":
    main()
