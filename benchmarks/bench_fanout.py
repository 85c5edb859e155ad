"""Fan-out of one marketer update to 20,000 registered devices, end to end.

Measured from the ``POST /api/v1/programs/<id>/updates`` call to the moment the local APNs test
server (``tests/apns_server.py``, HTTP/2 + TLS with client certificates, in its own process)
has answered a push for every device. The service runs as in production: gunicorn on
PostgreSQL, Redis, and ``pointpass worker`` processes draining the outbox.

Baseline, in the same run: pushes sent one at a time on one connection (``APNsClient`` with
``max_concurrent_streams=1``: the next push leaves when the previous answer arrived) to a
sample of the same devices.

``--latency`` delays each answer of the test server (default 5 ms). APNs is 30-200 ms away
from Southeast Asia, and that round trip is what concurrent streams hide; with ``--latency 0``
on loopback, a sequential push costs only the CPU of the two Python HTTP/2 stacks, so the
ratio measures CPU batching, not waiting.

    python benchmarks/bench_fanout.py [--devices 20000] [--workers 2] [--baseline 1000]
                                      [--latency 0.005]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from redis import Redis
from rq import Queue

from benchmarks.common import BIN, ROOT, SECRET_KEY, bench_app, gunicorn, machine, scratch_postgres


def _serve(paths: dict[str, str], latency: float, pipe: Any) -> None:
    from tests.apns_server import APNsTestServer

    server = APNsTestServer(paths["server_cert"], paths["server_key"], paths["wwdr"],
                            latency=latency).start()
    pipe.send(server.url)
    while True:
        command = pipe.recv()
        if command == "count":
            pipe.send(len({r.token for r in server.requests}))
        elif command == "reset":
            server.reset()
            pipe.send(None)
        elif command == "stats":
            pipe.send({"connections": server.connections,
                       "max_streams": server.max_concurrent_streams_seen})
        else:
            pipe.send({"connections": server.connections,
                       "max_streams": server.max_concurrent_streams_seen})
            server.stop()
            return


def seed(url: str, devices: int) -> tuple[int, str, list[str]]:
    """A program with ``devices`` cards, each held by one registered device."""
    from app.auth import keys
    from app.extensions import db
    from app.loyalty import programs

    app = bench_app(url)
    with app.app_context():
        program = programs.create(name="Fan-out", rewards=[{"name": "Coffee",
                                                            "points_cost": 100}])
        key = keys.create("bench marketer", "marketer")[1]
        program_id = program.id
        db.engine.dispose()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO members (program_id, name, language, consent_marketing, consent_terms,"
            " referral_code, created_at) SELECT %s, 'Member ' || g, 'en', false, false,"
            " 'R' || lpad(g::text, 9, '0'), now() FROM generate_series(1, %s) g",
            (program_id, devices))
        conn.execute(
            "INSERT INTO cards (program_id, member_id, serial_number, authentication_token,"
            " barcode_secret, barcode_version, status, balance, lifetime_points, version,"
            " updated_at, last_modified, change_stamp, created_at)"
            " SELECT %s, id, upper(substr(md5('s' || id), 1, 20)), md5('a' || id),"
            " md5('b' || id), 1, 'active', 0, 0, 1, now(), 0, 0, now()"
            " FROM members WHERE program_id = %s", (program_id, program_id))
        conn.execute(
            "INSERT INTO apple_devices (library_identifier, push_token, registered_at,"
            " created_at) SELECT md5('d' || g), md5('t' || g) || md5('u' || g), now(), now()"
            " FROM generate_series(1, %s) g", (devices,))
        conn.execute(
            "INSERT INTO apple_registrations (device_id, card_id, created_at)"
            " SELECT d.id, c.id, now() FROM"
            " (SELECT id, row_number() OVER (ORDER BY id) AS n FROM apple_devices) d JOIN"
            " (SELECT id, row_number() OVER (ORDER BY id) AS n FROM cards) c USING (n)")
        tokens = [row[0] for row in conn.execute("SELECT push_token FROM apple_devices")]
    return program_id, key, tokens


def baseline(paths: dict[str, str], url: str, tokens: list[str]) -> float:
    from app.wallet.apple.apns import APNsClient
    from passes.devcerts import DEFAULT_PASS_TYPE_ID

    with APNsClient(url=url, cert_path=paths["pass_cert"], key_path=paths["pass_key"],
                    ca_file=paths["server_ca"], topic=DEFAULT_PASS_TYPE_ID,
                    max_concurrent_streams=1) as apns_client:
        apns_client.push_many(tokens[:50])  # connect and warm up
        start = time.perf_counter()
        apns_client.push_many(tokens[50:])
        return (len(tokens) - 50) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2, help="pointpass worker processes")
    parser.add_argument("--baseline", type=int, default=1000, help="pushes in the baseline")
    parser.add_argument("--latency", type=float, default=0.005,
                        help="seconds the test server waits before each answer")
    args = parser.parse_args()

    from passes.devcerts import write_dev_certs
    from tests.apns_server import write_server_certificate

    tmp = Path(tempfile.mkdtemp(prefix="pointpass-fanout-"))
    client_files = write_dev_certs(tmp / "client")
    server_files = write_server_certificate(tmp / "server")
    paths = {"wwdr": str(client_files["wwdr"]), "pass_cert": str(client_files["pass_cert"]),
             "pass_key": str(client_files["pass_key"]), "server_ca": str(server_files["ca"]),
             "server_cert": str(server_files["cert"]), "server_key": str(server_files["key"])}
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(paths, args.latency, theirs), daemon=True)
    server.start()
    apns_url = ours.recv()

    def ask(command: str) -> Any:
        ours.send(command)
        return ours.recv()

    queue = f"pointpass-bench-{uuid.uuid4().hex[:8]}"
    redis_url = os.environ.get("POINTPASS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    with scratch_postgres() as url:
        program_id, key, tokens = seed(url, args.devices)
        env = {"POINTPASS_DATABASE_URL": url, "POINTPASS_SECRET_KEY": SECRET_KEY,
               "POINTPASS_INSTANCE_PATH": str(tmp / "instance"),
               "POINTPASS_REDIS_URL": redis_url, "POINTPASS_RQ_QUEUE": queue,
               "POINTPASS_APPLE_CERT": paths["pass_cert"],
               "POINTPASS_APPLE_KEY": paths["pass_key"],
               "POINTPASS_APPLE_WWDR_CERT": paths["wwdr"],
               "POINTPASS_APNS_URL": apns_url, "POINTPASS_APNS_CA_FILE": paths["server_ca"],
               # The push path alone, as fast as APNs answers (no device fetches here).
               "POINTPASS_APNS_PUSH_RATE": "0"}
        workers = [subprocess.Popen([BIN / "pointpass", "worker"], env={**os.environ, **env},
                                    cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
                   for _ in range(args.workers)]
        try:
            with gunicorn(env, workers=1, threads=4) as (port, _pid):
                time.sleep(1.0)  # workers connected
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/v1/programs/{program_id}/updates",
                    data=json.dumps({"message": "Double points this weekend"}).encode(),
                    headers={"Authorization": f"Bearer {key}",
                             "Content-Type": "application/json"}, method="POST")
                start = time.perf_counter()
                with urllib.request.urlopen(request) as response:
                    update = json.loads(response.read())
                while ask("count") < args.devices:
                    if time.perf_counter() - start > 600:
                        sys.exit(f"timed out: {ask('count')} of {args.devices} pushed")
                    time.sleep(0.01)
                elapsed = time.perf_counter() - start
                status_url = f"http://127.0.0.1:{port}{update['url']}"
                for _ in range(200):  # the drains finish their bookkeeping
                    status = json.loads(urllib.request.urlopen(urllib.request.Request(
                        status_url, headers={"Authorization": f"Bearer {key}"})).read())
                    if status["status"] == "done":
                        break
                    time.sleep(0.05)
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(30)
            Queue(queue, connection=Redis.from_url(redis_url)).delete(delete_jobs=True)
        stats = ask("stats")
        ask("reset")
        base_rate = baseline(paths, apns_url, tokens[: args.baseline])
    ask("stop")
    server.join(10)

    rate = args.devices / elapsed
    print(f"# fan-out benchmark — {dt.date.today()} — {machine()}")
    print(f"# {args.devices} devices, gunicorn 1x4 + {args.workers} pointpass workers, "
          f"PostgreSQL + Redis, APNs test server in its own process, answer latency "
          f"{args.latency * 1000:g} ms")
    print(f"fan-out: API call to last push acknowledged  {elapsed:7.2f} s  {rate:8.0f} pushes/s")
    print(f"baseline: one push at a time, one connection          {base_rate:8.0f} pushes/s")
    print(f"ratio: {rate / base_rate:.1f}x (target >= 5x and >= 1000 pushes/s)")
    print(f"update status: {status['status']}, cards_done {status['cards_done']}/"
          f"{status['cards_total']}, devices_pushed {status['devices_pushed']}, "
          f"failures {status['failures']}; server connections {stats['connections']}, "
          f"max concurrent streams {stats['max_streams']}")


if __name__ == "__main__":
    main()
