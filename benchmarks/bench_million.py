"""A design change on a program of 1,000,000 cards, end to end (issue 20).

What runs, as in production: gunicorn (gthread) and ``pointpass worker`` processes on
PostgreSQL and Redis, Apple passes signed with development certificates, pushes to the local
APNs test server (``tests/apns_server.py``, HTTP/2 + TLS) and Google Wallet calls to the local
Google test server (``tests/google_server.py``, in a process of its own, holding the program's
class and every card's object before the change).

1. Data. ``--cards`` cards (default 1,000,000) of one program made with
   ``app.loyalty.programs.create`` (rewards, two tiers, expiring points), generated with
   set-based SQL: members in en/id/th/ms who joined in the last 40 days, 0 to 3 purchases
   each in the last 30 days (ledger entries and their point lots, so balances, tiers and the
   pass's activity lines vary; no lot expires or is due for a reminder), and the analytics
   rollups brought up to date, as a live service's sweep keeps them. Three cards in five are
   held by one registered Apple device each, two in five have a Google object already synced
   (``google_objects`` at the card's version, ``google_classes`` at the program's design
   version). ``--keep NAME`` keeps the database for later runs, which reuse it (after
   settling what the last run left: outbox rows, Google objects behind, unfinished updates).
2. The change: ``PATCH /api/v1/programs/<id>`` with a new ``background_color`` (a marketer
   key), or with ``--change message`` ``POST /api/v1/programs/<id>/updates`` with a message
   to every card; every time is measured from that call.
3. The devices: one process runs the APNs test server and the Wallet simulator on one event
   loop. A push wakes the device with that token, which asks
   ``GET /passkit/v1/devices/<device>/registrations/<type>?passesUpdatedSince=<tag>`` (its tag
   before the change is the service's horizon read just before the call, the tag it would
   hold), then ``GET /passkit/v1/passes/<type>/<serial>`` with ``Authorization: ApplePass
   <token>`` and ``If-Modified-Since`` (the Last-Modified it had), as Wallet does. Woken
   devices wait for one of ``--clients`` keep-alive HTTP/1.1 connections (an asyncio
   protocol of a few lines: the simulator shares the cores with the service).
   ``fetch_p99_ms`` is the p99 of push received -> pass in hand (the phone's wait);
   ``request_p99_ms`` that of single requests.
4. Google: requests the test server received after the call (token exchanges apart), and when
   the Google side was done (no Google outbox row left, the class at the new design (with
   ``--change message``: holding the message), and the
   pass update ``done`` when the change made one), waiting at most ``--google-timeout``
   seconds after the last Apple pass was fetched.
5. CPU and memory from /proc, sampled every 0.5 s: ``service_cpu_s`` is the user+system CPU of
   the gunicorn processes and the workers (and their children) from the call until every
   device had its pass. Beside it: PostgreSQL (the backends serving this database, and the
   server's other processes: it may be shared), the simulator with the APNs test server, the
   Google server, Redis, this process and the whole machine. ``max_rss_mb`` is the largest
   RSS of any one service process; ``rss_mb_at_100k`` the largest when 100,000 devices had
   their pass.
6. ``rsa_limit_per_cpu_s``: raw RSA-2048 signatures (PKCS#1 v1.5, SHA-256, 200 bytes) per CPU
   second in a subprocess of this run, before the change. ``ratio`` = passes served (200) per
   service CPU-second / ``rsa_limit_per_cpu_s``.
7. ``--kill-worker``: when half the devices were pushed, the workers get SIGKILL and a fresh one
   starts; ``pushed_twice`` counts devices pushed more than once.
8. Housekeeping a production database has: when the PostgreSQL server runs without autovacuum
   (the shared test server does), the benchmark analyzes and vacuums as autovacuum would
   (:class:`AutovacuumStandIn`); the service's queries are planned on those statistics.
   The service keeps every signed pass in Redis (about 30 KB each): the run stops if Redis
   grows past ``--redis-limit-mb``.

The last line of output is one JSON object. The exit status is 1 when something did not
complete (a device without its pass, the update or the Google side not done).

    python benchmarks/bench_million.py --cards 20000          # a quick run
    python benchmarks/bench_million.py --keep pointpass_million --setup-only  # made once
    python benchmarks/bench_million.py --keep pointpass_million  # 1,000,000 cards, kept
        [--web-workers 2] [--threads 4] [--workers 1] [--clients 32] [--kill-worker]
        [--env POINTPASS_NAME=VALUE ...] [--google-timeout 30] [--apns-latency 0.005]

PostgreSQL and Redis must run (``POINTPASS_TEST_POSTGRES_URL``, ``POINTPASS_TEST_REDIS_URL``;
the run's rq queue and the signed passes it stored in Redis are deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from array import array
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from benchmarks.common import (
    BIN,
    POSTGRES_ADMIN_URL,
    ROOT,
    SECRET_KEY,
    Connection,
    _descendants,
    _machine_busy,
    _postgres_pids,
    _stat,
    bench_app,
    granian,
    gunicorn,
    kept_or_scratch_postgres,
    machine,
    migrate,
)

SLUG = "bench-million"
ISSUER_ID = "3388000000012345678"
BASE_URL = "https://pointpass.bench.invalid"
# Dark backgrounds with AA contrast for white text and the light labels; each run picks the
# next one that differs from the program's current colour.
COLOURS = ("#14532D", "#1E3A8A", "#7C2D12", "#4C1D95")
MESSAGE = "Double points this weekend at every outlet"  # --change message
SAMPLE_SECONDS = 0.5
RSS_MARK = 100_000  # devices with their pass when rss_mb_at_100k is taken

# Shared counters the device process writes and this one reads.
PUSHES, DEVICES_PUSHED, DEVICES_FETCHED, REQUESTS, FAILED = range(5)


def say(message: str) -> None:
    print(message, flush=True)


# --- data -----------------------------------------------------------------------------------

def _h(expression: str, salt: int) -> str:
    """A pseudo-random non-negative int of the integer SQL ``expression`` (per ``salt``)."""
    return f"(hashint8(({expression})::bigint * 64 + {salt}) & 2147483647)"


def create_program(app: Any) -> int:
    from app.loyalty import programs

    with app.app_context():
        program = programs.create(
            name="Kopi Sejuta", slug=SLUG, currency="IDR", earn_points=1, earn_amount=1000,
            background_color=COLOURS[0], foreground_color="#FFFFFF", label_color="#E5E7EB",
            points_expire_after_days=365, time_zone="Asia/Jakarta",
            terms="Points expire 365 days after they are earned.",
            rewards=[{"name": "Iced coffee", "points_cost": 150},
                     {"name": "Pastry box", "points_cost": 400},
                     {"name": "Lunch set", "points_cost": 900}],
            tiers=[{"name": "Silver", "threshold": 300, "multiplier_percent": 110},
                   {"name": "Gold", "threshold": 900, "multiplier_percent": 125}])
        return int(program.id)


def generate(dsn: str, program_id: int, cards: int) -> None:
    """Members, cards, purchases with their lots, Apple devices and Google objects."""
    p = {"program": program_id, "cards": cards}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        silver, gold = (row[0] for row in conn.execute(
            "SELECT id FROM tiers WHERE program_id = %s ORDER BY threshold", (program_id,)))
        p.update(silver=silver, gold=gold)
        conn.execute(
            "INSERT INTO members (program_id, name, language, consent_marketing, consent_terms,"
            " referral_code, created_at)"
            " SELECT %(program)s, 'Member ' || g, (ARRAY['id','id','id','id','en','en','en',"
            f" 'th','th','ms'])[1 + {_h('g', 1)} %% 10], {_h('g', 2)} %% 3 = 0, true,"
            " 'M' || lpad(g::text, 9, '0'),"
            f" now() - interval '1 day' - ({_h('g', 3)} %% 40) * interval '1 day'"
            " FROM generate_series(1, %(cards)s) g", p)
        # 0 to 3 purchases per member, in the last 30 days (so no lot expires or is due for a
        # reminder while the benchmark runs: the tick would change passes of its own). Short
        # spans, because the analytics rollups are brought up to date day by day.
        conn.execute(
            "CREATE TEMP TABLE purchases AS SELECT m.id AS member_id, j,"
            f" 20 + {_h('m.id * 4 + j', 4)} %% 380 AS points,"
            " greatest(m.created_at, now() - interval '30 days') + (now() - interval '1 hour'"
            " - greatest(m.created_at, now() - interval '30 days')) * (j / 4.0) AS t"
            " FROM members m, generate_series(1, 3) j"
            f" WHERE m.program_id = %(program)s AND j <= {_h('m.id', 5)} %% 4", p)
        conn.execute("CREATE INDEX ON purchases (member_id)")
        conn.execute(
            "INSERT INTO cards (program_id, member_id, serial_number, authentication_token,"
            " barcode_secret, barcode_version, status, balance, lifetime_points, tier_id,"
            " version, updated_at, last_modified, change_stamp, created_at, last_visit_at,"
            " member_language, member_joined_at)"
            " SELECT %(program)s, m.id, upper(substr(md5('s' || m.id), 1, 20)),"
            " md5('a' || m.id), md5('b' || m.id), 1, 'active', coalesce(s.total, 0),"
            " coalesce(s.total, 0), CASE WHEN s.total >= 900 THEN %(gold)s"
            " WHEN s.total >= 300 THEN %(silver)s END, 1, m.created_at,"
            " extract(epoch FROM coalesce(s.last, m.created_at))::bigint, 0, m.created_at,"
            " s.last, m.language, m.created_at"
            " FROM members m LEFT JOIN (SELECT member_id, sum(points) AS total, max(t) AS last"
            " FROM purchases GROUP BY member_id) s ON s.member_id = m.id"
            " WHERE m.program_id = %(program)s ORDER BY m.id", p)
        conn.execute(
            "INSERT INTO ledger_entries (card_id, kind, points, balance_after, actor, reference,"
            " amount, currency, created_at, pending_points)"
            " SELECT c.id, 'earn', x.points, sum(x.points) OVER (PARTITION BY c.id ORDER BY"
            " x.j), 'bench', 'B' || c.id || '-' || x.j, x.points * 1000, 'IDR', x.t, 0"
            " FROM purchases x JOIN cards c ON c.member_id = x.member_id ORDER BY x.t", p)
        conn.execute(
            "INSERT INTO point_lots (card_id, entry_id, points, remaining, pending,"
            " available_at, expires_at, created_at)"
            " SELECT l.card_id, l.id, l.points, l.points, false, l.created_at,"
            " l.created_at + interval '365 days', l.created_at FROM ledger_entries l"
            " JOIN cards c ON c.id = l.card_id WHERE c.program_id = %(program)s", p)
        conn.execute(
            "INSERT INTO apple_devices (library_identifier, push_token, registered_at,"
            " created_at) SELECT md5('d' || c.id), md5('t' || c.id) || md5('u' || c.id),"
            " c.created_at, c.created_at FROM cards c"
            " WHERE c.program_id = %(program)s AND c.id %% 5 < 3", p)
        conn.execute(
            "INSERT INTO apple_registrations (device_id, card_id, created_at)"
            " SELECT d.id, c.id, c.created_at FROM cards c JOIN apple_devices d"
            " ON d.library_identifier = md5('d' || c.id)"
            " WHERE c.program_id = %(program)s AND c.id %% 5 < 3", p)
        conn.execute(
            "INSERT INTO google_objects (card_id, synced_version, synced_balance, synced_at,"
            " saved, saved_changed_at) SELECT id, version, balance, now(), true, now()"
            " FROM cards WHERE program_id = %(program)s AND id %% 5 >= 3", p)
        conn.execute("DROP TABLE purchases")
        for table in ("members", "cards", "ledger_entries", "point_lots", "apple_devices",
                      "apple_registrations", "google_objects"):
            conn.execute(f"VACUUM ANALYZE {table}")


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh migrated database, dropped afterwards, cloned from a template (migrating takes
    5-10 s on a busy 2-core machine, cloning about one). The template,
    ``pointpass_bench_tpl_<hash of app/migrations>``, is made once per set of migrations and
    kept (a newer one replaces the older ones); drop it freely."""
    digest = hashlib.sha1()
    for path in sorted((ROOT / "app" / "migrations").rglob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    template = f"pointpass_bench_tpl_{digest.hexdigest()[:10]}"
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                             (template,)).fetchone()
        if found is None:
            building = f"pointpass_bench_building_{uuid.uuid4().hex[:8]}"
            conn.execute(f'CREATE DATABASE "{building}"')
            try:
                migrate(f"{base}/{building}")
                for (old,) in conn.execute("SELECT datname FROM pg_database WHERE datname"
                                           " LIKE 'pointpass\\_bench\\_tpl\\_%'").fetchall():
                    conn.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
                conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
            except psycopg.Error:
                conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
                raise
        name = f"pointpass_bench_{uuid.uuid4().hex[:10]}"
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def roll_up_analytics(app: Any, program_id: int) -> float:
    """Bring the program's analytics rollups up to date, as the sweep of a live service has
    (otherwise the workers' first sweep would do it during the change). Returns seconds."""
    from app.analytics import rollup
    from app.extensions import db
    from app.loyalty.models import Program

    began = time.monotonic()
    with app.app_context():
        program = db.session.get(Program, program_id)
        assert program is not None
        rollup.catch_up(program)
        rollup.advance_open_day(program)
        db.session.remove()
        db.engine.dispose()
    return time.monotonic() - began


def existing_program(dsn: str) -> tuple[int, int] | None:
    """``(program id, cards)`` of the benchmark's program in a kept database, if any."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT id FROM programs WHERE slug = %s", (SLUG,)).fetchone()
        if row is None:
            return None
        count = conn.execute("SELECT count(*) FROM cards WHERE program_id = %s",
                             (row[0],)).fetchone()
        return int(row[0]), int(count[0]) if count else 0


def settle(dsn: str, program_id: int) -> dict[str, int]:
    """Bring a kept database to a quiet state, as between two changes on a live system:
    nothing waiting in the outbox, every Google object and the class synced, no update
    running. Returns what had to be settled."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        outbox = conn.execute("DELETE FROM pass_outbox").rowcount
        objects = conn.execute(
            "UPDATE google_objects g SET synced_version = c.version, synced_balance = c.balance"
            " FROM cards c WHERE c.id = g.card_id AND g.synced_version <> c.version").rowcount
        conn.execute(
            "INSERT INTO google_classes (program_id, synced_design_version, synced_at)"
            " SELECT id, design_version, now() FROM programs WHERE id = %s"
            " ON CONFLICT (program_id) DO UPDATE SET"
            " synced_design_version = excluded.synced_design_version", (program_id,))
        updates = conn.execute(
            "UPDATE pass_updates SET status = 'done', lease_until = NULL,"
            " finished_at = coalesce(finished_at, now()) WHERE status <> 'done'").rowcount
    return {"outbox_rows": outbox, "google_objects": objects, "updates": updates}


def counts(dsn: str, program_id: int) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM cards WHERE program_id = %(p)s),"
            " (SELECT count(DISTINCT r.device_id) FROM apple_registrations r JOIN cards c"
            "  ON c.id = r.card_id WHERE c.program_id = %(p)s AND r.removed_at IS NULL),"
            " (SELECT count(*) FROM google_objects g JOIN cards c ON c.id = g.card_id"
            "  WHERE c.program_id = %(p)s)", {"p": program_id}).fetchone()
    assert row is not None
    return {"cards": row[0], "apple_devices": row[1], "google_objects": row[2]}


# --- the Google test server, in a process of its own ----------------------------------------

def _google(sa_file: str, log: str, pipe: Any) -> None:
    from tests.google_server import GoogleWalletTestServer

    sys.stderr = open(log, "w")  # noqa: SIM115 - http.server prints clients' hang-ups there

    info = json.loads(Path(sa_file).read_text())
    server = GoogleWalletTestServer(sa_file, issuer_id=ISSUER_ID)
    Path(sa_file).write_text(json.dumps({**info, "token_uri": server.token_url}))
    server.start()
    pipe.send({"api_url": server.api_url, "keys_url": server.keys_url})
    mark = (0, 0)
    while True:
        command, argument = pipe.recv()
        if command == "populate":
            class_body, dsn, program_id, latency = argument
            class_id = class_body["id"]
            server.classes[class_id] = {**class_body, "reviewStatus": "APPROVED"}
            with psycopg.connect(dsn) as conn:
                for (serial,) in conn.execute(
                        "SELECT c.serial_number FROM google_objects g JOIN cards c"
                        " ON c.id = g.card_id WHERE c.program_id = %s", (program_id,)):
                    object_id = f"{ISSUER_ID}.{serial}"
                    server.objects[object_id] = {"id": object_id, "classId": class_id,
                                                 "state": "ACTIVE"}
            server.latency = latency
            pipe.send(len(server.objects))
        elif command == "mark":
            with server._lock:
                mark = (len(server.requests), server.token_requests)
            pipe.send(None)
        elif command == "stats":
            with server._lock:
                since = server.requests[mark[0]:]
                tokens = server.token_requests - mark[1]
            api = [r for r in since if r.operation not in ("token", "keys")]
            pipe.send({
                "token_requests": tokens,
                "api_requests": len(api),
                "by_operation": dict(Counter(f"{r.method} {r.path.split('/')[3]} {r.status}"
                                             for r in api)),
                "first": api[0].time if api else None,
                "last": api[-1].time if api else None,
                "busiest_second": server.max_in_window(1.0, since=mark[0]) if api else 0,
            })
        else:
            server.stop()
            pipe.send(None)
            return


# --- the devices: APNs test server and Wallet simulator on one event loop -------------------

class Devices:
    """Every Apple device of the program, woken by pushes, fetching as Wallet does."""

    def __init__(self, pass_type_id: str, clients: int, shared: Any) -> None:
        self.pass_type_id = pass_type_id.encode()
        self.clients = clients
        self.shared = shared
        self.index: dict[str, int] = {}
        self.library: list[bytes] = []
        self.serial: list[bytes] = []
        self.auth: list[bytes] = []
        self.modified: list[bytes] = []  # the If-Modified-Since to send
        self.tags: list[bytes] = []
        self.pushes = bytearray()
        self.pushed_at = array("d")
        self.fetched_at = array("d")
        self.state = bytearray()  # 0 idle, 1 waiting for a client, 2 being served
        self.again = bytearray()  # pushed again while being served
        self.latencies = array("f")  # ms per request
        self.statuses: Counter[str] = Counter()
        self.unknown_pushes = 0
        self.reconnects = 0
        self.pass_bytes = 0
        self.queue: asyncio.Queue[int] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.port = 0

    def load(self, dsn: str, program_id: int) -> None:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT d.push_token, d.library_identifier, c.serial_number,"
                " c.authentication_token, c.last_modified FROM apple_devices d"
                " JOIN apple_registrations r ON r.device_id = d.id AND r.removed_at IS NULL"
                " JOIN cards c ON c.id = r.card_id WHERE c.program_id = %s ORDER BY d.id",
                (program_id,))
            for token, library, serial, auth, modified in rows:
                if token in self.index:
                    continue  # one device, several cards: not generated
                self.index[token] = len(self.library)
                self.library.append(library.encode())
                self.serial.append(serial.encode())
                self.auth.append(auth.encode())
                self.modified.append(formatdate(modified, usegmt=True).encode())
        n = len(self.library)
        self.pushes = bytearray(n)
        self.pushed_at = array("d", bytes(8 * n))
        self.fetched_at = array("d", bytes(8 * n))
        self.state = bytearray(n)
        self.again = bytearray(n)

    # Called by the APNs test server on its loop, for every push it answers 200.
    def pushed(self, token: str) -> None:
        shared = self.shared
        shared[PUSHES] += 1
        i = self.index.get(token)
        if i is None:
            self.unknown_pushes += 1
            return
        if self.pushes[i] < 255:
            self.pushes[i] += 1
        if not self.pushed_at[i]:
            self.pushed_at[i] = time.monotonic()
            shared[DEVICES_PUSHED] += 1
        if self.state[i] == 0:
            self.state[i] = 1
            assert self.queue is not None
            self.queue.put_nowait(i)
        elif self.state[i] == 2:
            self.again[i] = 1

    async def arm(self, port: int, tag: int) -> None:
        """Every device holds ``tag``; start the client pool for the service on ``port``.

        A client connects when it first has a device to serve, as a phone does: gunicorn's
        gthread worker gives a new connection a thread until its first request arrives, so
        connections opened ahead would hold every thread."""
        self.port = port
        self.tags = [str(tag).encode()] * len(self.library)
        self.queue = asyncio.Queue()
        for _ in range(self.clients):
            self.tasks.append(asyncio.get_running_loop().create_task(self._client()))

    async def _connect(self) -> Connection:
        _transport, connection = await asyncio.get_running_loop().create_connection(
            Connection, "127.0.0.1", self.port)
        return connection

    async def _request(self, client: list[Connection], data: bytes
                       ) -> tuple[int, bytes, bytes]:
        """Send one request on the client's connection and wait for its answer; reconnect
        and send again once if the server had closed the keep-alive connection."""
        for attempt in (0, 1):
            if not client or client[0].closed:
                if client:
                    self.reconnects += 1
                client[:] = [await self._connect()]
            try:
                status, head, body = await client[0].request(data)
                break
            except ConnectionError:
                if attempt:
                    raise
        if head.lower().find(b"\r\nconnection: close") >= 0:
            client[0].close()
        return status, head, body

    async def _client(self) -> None:
        assert self.queue is not None
        connection: list[Connection] = []
        queue = self.queue
        monotonic = time.monotonic
        latencies = self.latencies
        shared = self.shared
        pass_type = self.pass_type_id
        while True:
            i = await queue.get()
            self.state[i] = 2
            try:
                ask = (b"GET /passkit/v1/devices/" + self.library[i] + b"/registrations/"
                       + pass_type + b"?passesUpdatedSince=" + self.tags[i]
                       + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
                began = monotonic()
                status, _head, body = await self._request(connection, ask)
                latencies.append((monotonic() - began) * 1000)
                shared[REQUESTS] += 1
                self.statuses[f"registrations {status}"] += 1
                if status == 200:
                    answer = json.loads(body)
                    self.tags[i] = answer["lastUpdated"].encode()
                    for serial in answer["serialNumbers"]:
                        await self._fetch(connection, i, serial.encode())
                elif status != 204:
                    shared[FAILED] += 1
            except Exception as exc:  # counted; the device gives up this time
                self.statuses[f"error {type(exc).__name__}"] += 1
                shared[FAILED] += 1
                if connection:
                    connection[0].close()
            self.state[i] = 0
            if self.again[i]:
                self.again[i] = 0
                self.state[i] = 1
                queue.put_nowait(i)

    async def _fetch(self, connection: list[Connection], i: int, serial: bytes) -> None:
        if serial != self.serial[i]:
            self.statuses["unexpected serial"] += 1
            return
        request = (b"GET /passkit/v1/passes/" + self.pass_type_id + b"/" + serial
                   + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ApplePass "
                   + self.auth[i] + b"\r\nIf-Modified-Since: " + self.modified[i]
                   + b"\r\nAccept: */*\r\n\r\n")
        began = time.monotonic()
        status, head, body = await self._request(connection, request)
        now = time.monotonic()
        self.latencies.append((now - began) * 1000)
        self.shared[REQUESTS] += 1
        if status == 200 and body[:4] == b"PK\x03\x04":
            self.statuses["pass 200"] += 1
            self.pass_bytes += len(body)
            lower = head.lower()
            at = lower.find(b"\r\nlast-modified:")
            if at >= 0:
                self.modified[i] = head[at + 16:head.index(b"\r\n", at + 2)].strip()
            if not self.fetched_at[i]:
                self.fetched_at[i] = now
                self.shared[DEVICES_FETCHED] += 1
        else:
            self.statuses[f"pass {status}"] += 1
            if status != 304:
                self.shared[FAILED] += 1

    async def results(self) -> dict[str, Any]:
        n = len(self.library)
        pushed = [i for i in range(n) if self.pushed_at[i]]
        pushed.sort(key=self.pushed_at.__getitem__)
        waits = [(self.fetched_at[i] - self.pushed_at[i]) * 1000 for i in pushed
                 if self.fetched_at[i]]
        slices = []
        for k in range(10):
            part = pushed[k * len(pushed) // 10:(k + 1) * len(pushed) // 10]
            done = [(self.fetched_at[i] - self.pushed_at[i]) * 1000 for i in part
                    if self.fetched_at[i]]
            slices.append({"devices": len(part), "fetched": len(done),
                           "pushed_from": self.pushed_at[part[0]] if part else None,
                           "pushed_to": self.pushed_at[part[-1]] if part else None,
                           "p99_ms": percentile(done, 99)})
        return {
            "devices": n,
            "pushed": len(pushed),
            "fetched": len(waits),
            "pushed_twice": sum(1 for c in self.pushes if c > 1) + self.unknown_pushes,
            "unknown_pushes": self.unknown_pushes,
            "last_first_push": max(self.pushed_at) if n else None,
            "first_push": self.pushed_at[pushed[0]] if pushed else None,
            "last_fetch": max(self.fetched_at) if n else None,
            "fetch_ms": {"p50": percentile(waits, 50), "p99": percentile(waits, 99),
                         "max": percentile(waits, 100)},
            "request_ms": {"p50": percentile(self.latencies, 50),
                           "p99": percentile(self.latencies, 99),
                           "max": percentile(self.latencies, 100)},
            "slices": slices,
            "statuses": dict(self.statuses),
            "requests": len(self.latencies),
            "reconnects": self.reconnects,
            "pass_bytes": self.pass_bytes,
        }

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()


def percentile(values: Any, p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(float(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]), 2)


def _devices(conf: dict[str, Any], shared: Any, pipe: Any) -> None:
    from tests.apns_server import APNsTestServer

    devices = Devices(conf["pass_type_id"], conf["clients"], shared)
    devices.load(conf["dsn"], conf["program_id"])
    server = APNsTestServer(conf["server_cert"], conf["server_key"], conf["wwdr"],
                            latency=conf["latency"], record=False, strict_headers=False,
                            on_push=devices.pushed).start()
    loop = server.loop
    assert loop is not None
    pipe.send({"apns_url": server.url, "devices": len(devices.library)})

    def on_loop(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=600)

    while True:
        command, argument = pipe.recv()
        if command == "arm":
            on_loop(devices.arm(*argument))
            pipe.send(None)
        elif command == "results":
            pipe.send(on_loop(devices.results()))
        else:
            on_loop(devices.close())
            server.stop()
            pipe.send(None)
            return


# --- CPU and memory from /proc -------------------------------------------------------------

def _named(name: str) -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip().startswith(name):
                pids.append(int(comm.parent.name))
        except OSError:
            pass
    return pids


class Meter:
    """CPU per kind of process since :meth:`start`, and RSS of the service's processes.

    Each process's CPU is its last sample less its first (0 for one born after the start),
    so a worker killed halfway keeps what it used until its last sample (one is taken just
    before the kill)."""

    SERVICE = ("web", "worker")

    def __init__(self, dsn: str) -> None:
        # Asks PostgreSQL which backends serve the benchmark's database: the server is
        # shared, and its other databases' work is not the service's.
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.roots: dict[str, list[int]] = {}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kind: dict[int, str] = {}
        self.started = False
        self.rss_max: dict[str, int] = {}
        self.rss_now = 0
        self.machine_start = 0.0
        self._scanned: dict[str, list[int]] = {}
        self._scanned_at = 0.0

    def pids(self) -> dict[str, list[int]]:
        found = {kind: [p for root in roots for p in _descendants(root)]
                 for kind, roots in self.roots.items()}
        ours = {row[0] for row in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()")}
        if time.monotonic() - self._scanned_at > 10:  # scanning all of /proc costs
            self._scanned = {"postgres": _postgres_pids(), "redis": _named("redis-server")}
            self._scanned_at = time.monotonic()
        found["PostgreSQL, this database's backends"] = sorted(ours)
        found["PostgreSQL, all other processes"] = [p for p in self._scanned["postgres"]
                                                     if p not in ours]
        found["Redis"] = self._scanned["redis"]
        found["benchmark"] = [os.getpid()]
        return found

    def start(self) -> None:
        self.first.clear()
        self.last.clear()
        self.rss_max.clear()
        self.started = True
        self.machine_start = _machine_busy()
        self._scanned_at = 0.0
        self.sample(baseline=True)

    def sample(self, baseline: bool = False) -> None:
        now_rss = 0
        for kind, pids in self.pids().items():
            for pid in pids:
                got = _stat(pid)
                if got is None:
                    continue
                cpu, rss = got
                if pid not in self.first:
                    self.first[pid] = cpu if baseline else 0.0
                self.last[pid] = cpu
                self.kind[pid] = kind
                if kind in self.SERVICE:
                    now_rss = max(now_rss, rss)
                    self.rss_max[kind] = max(self.rss_max.get(kind, 0), rss)
        self.rss_now = now_rss

    def cpu(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for pid, last in self.last.items():
            kind = self.kind[pid]
            used[kind] = used.get(kind, 0.0) + last - self.first[pid]
        used["machine (all processes, both cores)"] = _machine_busy() - self.machine_start
        return {kind: round(seconds, 2) for kind, seconds in used.items()}


class AutovacuumStandIn(threading.Thread):
    """What PostgreSQL's autovacuum would do, for a server that runs without it (the shared
    test server does: ``autovacuum = off``). Production runs it, and the service's queries
    are planned on the statistics it keeps: without it, statistics taken before the change
    stay for the whole run. Every ``naptime`` seconds (PostgreSQL's default 60; the first pass
    half a naptime after the start, autovacuum's mean delay) each table past autovacuum's
    default thresholds is analyzed (50 + 10% of its rows changed) or vacuumed (50 + 20% dead),
    vacuums throttled like autovacuum's (cost delay 2 ms, limit 200)."""

    def __init__(self, dsn: str, naptime: float) -> None:
        super().__init__(name="autovacuum-stand-in", daemon=True)
        self.dsn = dsn
        self.naptime = naptime
        self.stopping = threading.Event()
        self.actions: list[tuple[float, str, float]] = []  # (started, "ANALYZE cards", s)
        self.t0 = time.monotonic()

    def run(self) -> None:
        wait = self.naptime / 2
        while not self.stopping.wait(wait):
            self.one_pass()
            wait = self.naptime

    def one_pass(self) -> list[str]:
        done = []
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET vacuum_cost_delay = 2")
            conn.execute("SET vacuum_cost_limit = 200")
            rows = conn.execute(
                "SELECT s.relname, s.n_mod_since_analyze, s.n_dead_tup,"
                " greatest(c.reltuples, 0) FROM pg_stat_user_tables s"
                " JOIN pg_class c ON c.oid = s.relid").fetchall()
            for name, changed, dead, tuples in rows:
                if dead > 50 + 0.2 * tuples:
                    action = f"VACUUM ANALYZE {name}"
                elif changed > 50 + 0.1 * tuples:
                    action = f"ANALYZE {name}"
                else:
                    continue
                began = time.monotonic()
                conn.execute(action)
                self.actions.append((round(began - self.t0, 1), action,
                                     round(time.monotonic() - began, 2)))
                done.append(action)
        return done


def autovacuum_off(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return row is not None and row[0] == "off"


def rsa_limit(seconds: float = 2.0) -> subprocess.Popen[str]:
    """Start counting raw RSA-2048 signatures per CPU-second in a subprocess (it prints the
    rate). A rate per CPU-second of its own: it may run beside the services' start."""
    code = (
        "import sys, time\n"
        "from cryptography.hazmat.primitives import hashes\n"
        "from cryptography.hazmat.primitives.asymmetric import padding, rsa\n"
        "key = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n"
        "message, pad, sha = b'm' * 200, padding.PKCS1v15(), hashes.SHA256()\n"
        "for _ in range(20):\n    key.sign(message, pad, sha)\n"
        "signed, began = 0, time.process_time()\n"
        "while time.process_time() - began < float(sys.argv[1]):\n"
        "    for _ in range(20):\n        key.sign(message, pad, sha)\n"
        "    signed += 20\n"
        "print(signed / (time.process_time() - began))\n")
    return subprocess.Popen([sys.executable, "-c", code, str(seconds)],
                            stdout=subprocess.PIPE, text=True)


# --- the run ---------------------------------------------------------------------------------

def api(port: int, method: str, path: str, key: str, body: dict[str, Any] | None = None,
        timeout: float = 30) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([BIN / "pointpass", "worker"], env={**os.environ, **env},
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def google_state(dsn: str, program_id: int, since_update: int) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pass_outbox WHERE channel = 'google'),"
            " (SELECT count(*) FROM pass_outbox WHERE channel = 'apple'),"
            " (SELECT g.synced_design_version >= p.design_version FROM programs p"
            "  LEFT JOIN google_classes g ON g.program_id = p.id WHERE p.id = %s),"
            " (SELECT max(id) FROM pass_updates WHERE program_id = %s AND id > %s),"
            " (SELECT messages_through FROM google_classes WHERE program_id = %s)",
            (program_id, program_id, since_update, program_id)).fetchone()
    assert row is not None
    return {"google_rows": row[0], "apple_rows": row[1], "class_synced": bool(row[2]),
            "update_id": row[3], "messages_through": row[4] or 0}


def forget_queue(redis_url: str, name: str) -> None:
    """Delete the run's rq queue with its jobs, results and registries (rq keeps failed jobs
    for a year), and the service's coalescing keys for it."""
    from redis import Redis
    from rq import Queue

    with Redis.from_url(redis_url) as connection:
        queue = Queue(name, connection=connection)
        ids = set(queue.job_ids)
        for registry in (queue.started_job_registry, queue.finished_job_registry,
                         queue.failed_job_registry, queue.scheduled_job_registry,
                         queue.deferred_job_registry, queue.canceled_job_registry):
            ids.update(registry.get_job_ids())
        queue.delete(delete_jobs=True)
        keys = [f"rq:{kind}:{i}" for i in ids for kind in ("job", "results")]
        keys += connection.scan_iter(match=f"rq:*:{name}")
        keys += connection.scan_iter(match=f"pointpass:{name}:*")
        for start in range(0, len(keys), 1000):
            connection.delete(*keys[start:start + 1000])


def redis_used_mb(redis_url: str) -> float:
    from redis import Redis

    with Redis.from_url(redis_url) as connection:
        return int(connection.info("memory")["used_memory"]) / 2**20  # type: ignore[index]


def pass_store(redis_url: str, delete: bool) -> dict[str, float]:
    """The signed passes the service stored in Redis (count, MB); deleted with ``delete``."""
    from redis import Redis

    connection = Redis.from_url(redis_url)
    keys = list(connection.scan_iter(match="pointpass:pkpass:*", count=1000))
    size = 0
    for start in range(0, len(keys), 1000):
        pipe = connection.pipeline(transaction=False)
        for key in keys[start:start + 1000]:
            pipe.strlen(key)
        size += sum(pipe.execute())
        if delete:
            connection.delete(*keys[start:start + 1000])
    return {"passes": len(keys), "mb": round(size / 2**20, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--change", choices=("design", "message"), default="design",
                        help="a new background colour (default), or a marketer's message "
                             "to every card (POST /programs/<id>/updates)")
    parser.add_argument("--keep", metavar="DBNAME",
                        help="keep the database under this name; reuse its data if it exists")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--server", choices=("gunicorn", "granian"), default="gunicorn",
                        help="the web server (README: Deployment)")
    parser.add_argument("--workers", type=int, default=1, help="pointpass worker processes")
    parser.add_argument("--clients", type=int, default=32,
                        help="simulated Wallet connections (the bounded client pool)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment of the web and worker processes (repeatable)")
    parser.add_argument("--kill-worker", action="store_true",
                        help="SIGKILL the workers when half the devices were pushed, then "
                        "start a fresh one")
    parser.add_argument("--apns-latency", type=float, default=0.005,
                        help="seconds the APNs test server waits before each answer")
    parser.add_argument("--google-latency", type=float, default=0.0,
                        help="seconds each Google API request takes")
    parser.add_argument("--google-timeout", type=float, default=30.0,
                        help="seconds to wait for the Google side after the last Apple fetch")
    parser.add_argument("--autovacuum-naptime", type=float, default=60.0,
                        help="when the PostgreSQL server runs without autovacuum, do its "
                        "work this often from the change on (0: do not)")
    parser.add_argument("--redis-limit-mb", type=float,
                        default=0.4 * os.sysconf("SC_PHYS_PAGES")
                        * os.sysconf("SC_PAGE_SIZE") / 2**20,
                        help="stop the run when Redis uses more memory than this (default "
                        "40%% of the machine's): the service stores every signed pass there")
    parser.add_argument("--setup-only", action="store_true",
                        help="generate (or reuse and settle) the data, then stop: with --keep, "
                        "a 1,000,000-card database made ahead of the runs")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for every device's pass (default 120 + 10 ms a "
                        "card)")
    args = parser.parse_args()
    args.redis_url = os.environ.get("POINTPASS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    extra_env = dict(item.split("=", 1) for item in args.env)
    timeout = args.timeout or 120 + args.cards * 0.01
    began = time.monotonic()
    say(f"# bench_million — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — {machine()}")
    say(f"# args: {' '.join(sys.argv[1:]) or '(defaults)'}; load average "
        f"{os.getloadavg()[0]:.1f}")

    from passes.devcerts import DEFAULT_PASS_TYPE_ID, write_dev_certs
    from tests.apns_server import write_server_certificate

    tmp = Path(tempfile.mkdtemp(prefix="pointpass-million-"))
    certs = write_dev_certs(tmp / "client")
    server_files = write_server_certificate(tmp / "server")
    sa_file = str(certs["google_service_account"])
    ctx = multiprocessing.get_context("spawn")
    google_pipe, theirs = ctx.Pipe()
    google_proc = ctx.Process(target=_google, args=(sa_file, str(tmp / "google.log"), theirs),
                              daemon=True)
    google_proc.start()
    google_urls = google_pipe.recv()

    def google(command: str, argument: Any = None) -> Any:
        google_pipe.send((command, argument))
        return google_pipe.recv()

    redis_url = args.redis_url
    queue = f"pointpass-million-{uuid.uuid4().hex[:8]}"
    summary: dict[str, Any] = {"benchmark": "million", "machine": machine(),
                               "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "args": sys.argv[1:]}
    failed: list[str] = []
    with kept_or_scratch_postgres(args.keep) if args.keep else scratch_database() as url:
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        google_settings = {"GOOGLE_ISSUER_ID": ISSUER_ID, "GOOGLE_SERVICE_ACCOUNT": sa_file,
                           "GOOGLE_API_URL": google_urls["api_url"],
                           "GOOGLE_CALLBACK_KEYS_URL": google_urls["keys_url"],
                           "BASE_URL": BASE_URL}
        # Jobs the set-up makes go to the run's queue, as from another instance of the
        # service (without Redis, the app would run its own sweep in this process).
        app = bench_app(url, REDIS_URL=redis_url, RQ_QUEUE=queue, **google_settings)
        found = existing_program(dsn)
        generation = time.monotonic()
        if found is None:
            program_id = create_program(app)
            generate(dsn, program_id, args.cards)
            summary["generate_seconds"] = round(time.monotonic() - generation, 1)
            say(f"generated {args.cards:,} cards in {summary['generate_seconds']} s "
                f"(after {generation - began:.1f} s of set-up: certificates, the database, "
                "the Google test server)")
        else:
            program_id, have = found
            if have != args.cards:
                sys.exit(f"database {args.keep} holds {have:,} cards, not {args.cards:,}: "
                         "use another --keep name")
            summary["generate_seconds"] = None
            summary["reused_database"] = args.keep
            say(f"reusing the {have:,} cards of database {args.keep}")
        settled = settle(dsn, program_id)
        if any(settled.values()):
            say(f"settled what the last run left: {settled}")
        summary["rollup_seconds"] = round(roll_up_analytics(app, program_id), 1)
        say(f"analytics rollups brought up to date in {summary['rollup_seconds']} s")
        stand_in = None
        if autovacuum_off(dsn) and args.autovacuum_naptime > 0:
            stand_in = AutovacuumStandIn(dsn, args.autovacuum_naptime)
            caught_up = stand_in.one_pass()  # as autovacuum would have between two runs
            say("PostgreSQL runs without autovacuum: the benchmark does its work every "
                f"{args.autovacuum_naptime:g} s from the change on"
                + (f" (caught up now: {', '.join(caught_up)})" if caught_up else ""))
            stand_in.actions.clear()
        summary["autovacuum_stand_in"] = stand_in is not None
        summary.update(counts(dsn, program_id))
        if args.setup_only:
            say(f"set up in {time.monotonic() - began:.1f} s: {summary['cards']:,} cards, "
                f"{summary['apple_devices']:,} Apple devices, {summary['google_objects']:,} "
                "Google objects")
            print(json.dumps(summary), flush=True)
            google("stop")
            return 0

        from app.auth import keys
        from app.extensions import db
        from app.loyalty.models import Program
        from app.wallet.google.setup import google_wallet
        from app.wallet.google.sync import class_content
        from passes.google.payloads import loyalty_class_body

        with app.app_context():
            key = keys.create(f"bench million {uuid.uuid4().hex[:6]}", "marketer")[1]
            program = db.session.get(Program, program_id)
            assert program is not None
            wallet = google_wallet()
            assert wallet is not None
            class_body = loyalty_class_body(class_content(wallet, program))
            colour = next(c for c in COLOURS[1:] + COLOURS[:1] if c != program.background_color)
            db.engine.dispose()
        objects = google("populate", (class_body, dsn, program_id, args.google_latency))

        shared = ctx.RawArray("q", 8)
        device_pipe, theirs = ctx.Pipe()
        device_proc = ctx.Process(target=_devices, daemon=True, args=({
            "dsn": dsn, "program_id": program_id, "pass_type_id": DEFAULT_PASS_TYPE_ID,
            "clients": args.clients, "latency": args.apns_latency,
            "server_cert": str(server_files["cert"]), "server_key": str(server_files["key"]),
            "wwdr": str(certs["wwdr"])}, shared, theirs))
        device_proc.start()

        def devices(command: str, argument: Any = None) -> Any:
            device_pipe.send((command, argument))
            return device_pipe.recv()

        loaded = device_pipe.recv()
        n_devices = loaded["devices"]
        say(f"data: {summary['cards']:,} cards, {summary['apple_devices']:,} Apple devices "
            f"(simulated: {n_devices:,}), {summary['google_objects']:,} Google objects "
            f"(test server holds {objects:,} and the class) — ready "
            f"{time.monotonic() - began:.1f} s after the start")

        env = {"POINTPASS_DATABASE_URL": url, "POINTPASS_SECRET_KEY": SECRET_KEY,
               "POINTPASS_INSTANCE_PATH": str(tmp / "instance"), "POINTPASS_BASE_URL": BASE_URL,
               "POINTPASS_REDIS_URL": redis_url, "POINTPASS_RQ_QUEUE": queue,
               "POINTPASS_APPLE_CERT": str(certs["pass_cert"]),
               "POINTPASS_APPLE_KEY": str(certs["pass_key"]),
               "POINTPASS_APPLE_WWDR_CERT": str(certs["wwdr"]),
               "POINTPASS_APNS_URL": loaded["apns_url"],
               "POINTPASS_APNS_CA_FILE": str(server_files["ca"]),
               **{f"POINTPASS_{k}": str(v) for k, v in google_settings.items()},
               **extra_env}
        meter = Meter(dsn)
        rsa = rsa_limit()
        worker_log = tmp / "worker.log"
        workers = [start_worker(env, worker_log) for _ in range(args.workers)]
        meter.roots["worker"] = [w.pid for w in workers]
        try:
            serve = granian if args.server == "granian" else gunicorn
            with serve(env, workers=args.web_workers, threads=args.threads,
                       error_log=tmp / "web.log") as (port, master):
                meter.roots["web"] = [master]
                meter.roots["simulator"] = [device_proc.pid]
                meter.roots["Google server"] = [google_proc.pid]
                summary["rsa_limit_per_cpu_s"] = round(float(rsa.communicate()[0]), 1)
                say(f"raw RSA-2048 signatures: {summary['rsa_limit_per_cpu_s']:,.0f} per "
                    "CPU-second (PKCS#1 v1.5, SHA-256, measured now in a subprocess)")
                run = change(args, dsn, port, key, program_id, colour, n_devices, timeout,
                             meter, shared, devices, google, env, workers, worker_log,
                             stand_in)
                summary.update(run.pop("summary"))
                failed += run["failed"]
                served, service = summary["passes_served"], summary["service_cpu_s"]
                summary["passes_per_service_cpu_s"] = (round(served / service, 1)
                                                       if service else None)
                summary["ratio"] = (round(served / service / summary["rsa_limit_per_cpu_s"], 3)
                                    if service and served else None)
        finally:
            # A worker finishes its job before it stops (rq's warm shut-down): the rest of a
            # drain can take minutes, and the next run settles what is left anyway.
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
            for worker in workers:
                try:
                    worker.wait(3)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            forget_queue(redis_url, queue)
            summary["pass_store"] = pass_store(redis_url, delete=True)
            devices("stop")
            google("stop")
    report(summary, failed, tmp)
    return 1 if failed else 0


def change(args: Any, dsn: str, port: int, key: str, program_id: int, colour: str,
           n_devices: int, timeout: float, meter: Meter, shared: Any, devices: Any,
           google: Any, env: dict[str, str], workers: list[Any], worker_log: Path,
           stand_in: AutovacuumStandIn | None) -> dict[str, Any]:
    """The design change, followed to the end. Returns the summary's part and failures."""
    failed: list[str] = []
    out: dict[str, Any] = {}
    with psycopg.connect(dsn) as conn:
        (last_update,) = conn.execute("SELECT coalesce(max(id), 0) FROM pass_updates"
                                      ).fetchone() or (0,)
        # The tag every device holds: the service's horizon (app.loyalty.changes.horizon)
        # read just before the change, as if each had asked for its passes then.
        (tag,) = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
                              ).fetchone() or (0,)
    devices("arm", (port, tag))
    google("mark")
    patch: dict[str, Any] = {}

    def call() -> None:
        began = time.monotonic()
        if args.change == "message":  # a marketer's message to every card
            patch["status"], patch["body"] = api(
                port, "POST", f"/api/v1/programs/{program_id}/updates", key,
                {"message": MESSAGE}, timeout=3600)
        else:
            patch["status"], patch["body"] = api(
                port, "PATCH", f"/api/v1/programs/{program_id}", key,
                {"background_color": colour}, timeout=3600)
        patch["seconds"] = time.monotonic() - began

    meter.start()
    t0 = time.monotonic()
    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    if stand_in is not None:
        stand_in.t0 = t0
        stand_in.start()
    say(f"message to every card: POST updates at t=0 (devices hold tag {tag})"
        if args.change == "message" else
        f"design change: PATCH background_color {colour} at t=0 (devices hold tag {tag})")
    killed: list[int] = []
    rss_at_mark: float | None = None
    cpu_at_fetched: dict[str, float] | None = None
    next_sample = t0 + SAMPLE_SECONDS
    next_progress = t0 + 10
    redis_mb = redis_used_mb(args.redis_url)
    out["redis_used_mb_before"] = round(redis_mb)
    redis_max, next_redis = redis_mb, t0 + 2
    while True:
        now = time.monotonic()
        if now >= next_sample:
            meter.sample()
            next_sample = now + SAMPLE_SECONDS
            if rss_at_mark is None and shared[DEVICES_FETCHED] >= RSS_MARK:
                rss_at_mark = meter.rss_now / 2**20
        if now >= next_redis:
            redis_mb = redis_used_mb(args.redis_url)
            redis_max, next_redis = max(redis_max, redis_mb), now + 2
            if redis_mb > args.redis_limit_mb:
                meter.sample()
                cpu_at_fetched = meter.cpu()
                failed.append(f"stopped at {now - t0:.0f} s: Redis uses {redis_mb:,.0f} MB, "
                              f"over --redis-limit-mb {args.redis_limit_mb:,.0f}")
                break
        fetched = shared[DEVICES_FETCHED]
        if args.kill_worker and not killed and shared[DEVICES_PUSHED] >= n_devices / 2:
            meter.sample()
            for worker in workers:
                worker.kill()
                worker.wait()
                killed.append(worker.pid)
            workers.append(start_worker(env, worker_log))
            meter.roots["worker"] = [w.pid for w in workers if w.poll() is None]
            say(f"  t={now - t0:6.1f} s: {shared[DEVICES_PUSHED]:,} devices pushed: "
                f"SIGKILL worker(s) {killed}, started a fresh one")
        if now >= next_progress:
            say(f"  t={now - t0:6.1f} s: pushed {shared[DEVICES_PUSHED]:,}, fetched "
                f"{fetched:,} of {n_devices:,}, {shared[REQUESTS]:,} requests, "
                f"{shared[FAILED]:,} failed" + ("" if "status" in patch else
                                                 " (PATCH not answered yet)"))
            next_progress = now + 10
        if fetched >= n_devices and "status" in patch:
            meter.sample()
            cpu_at_fetched = meter.cpu()
            break
        if now - t0 > timeout:
            meter.sample()
            cpu_at_fetched = meter.cpu()
            failed.append(f"timed out after {timeout:.0f} s: {fetched:,} of {n_devices:,} "
                          "devices have their pass")
            break
        time.sleep(0.05)
    if "status" in patch and patch["status"] != (202 if args.change == "message" else 200):
        failed.append(f"the change answered {patch['status']}: {str(patch['body'])[:300]}")
    apple_done = time.monotonic()

    # The Google side and the update (if the change made one), at most --google-timeout more.
    state = google_state(dsn, program_id, last_update)
    update: dict[str, Any] | None = None
    google_done_at = None
    while True:
        now = time.monotonic()
        if now >= next_sample:
            meter.sample()
            next_sample = now + SAMPLE_SECONDS
        state = google_state(dsn, program_id, last_update)
        if state["update_id"] is not None:
            status, body = api(port, "GET", f"/api/v1/updates/{state['update_id']}", key)
            update = body if status == 200 and isinstance(body, dict) else {"status": None}
        update_done = update is None or update.get("status") == "done"
        told = args.change != "message" or (
            state["update_id"] is not None and state["messages_through"] >= state["update_id"])
        if state["google_rows"] == 0 and state["class_synced"] and told and update_done:
            google_done_at = now
            break
        if now - apple_done > args.google_timeout:
            break
        time.sleep(0.25)
    # Read once more: the rows counted above were read before the update's status, so a
    # drain that finished in between left them counted.
    state = google_state(dsn, program_id, last_update)
    end = meter.rss_now / 2**20
    out["redis_used_mb_max"] = round(redis_max)
    if stand_in is not None:
        stand_in.stopping.set()
        out["autovacuum_actions"] = stand_in.actions
    results = devices("results")
    gstats = google("stats")

    service = (cpu_at_fetched or {}).get("web", 0.0) + (cpu_at_fetched or {}).get("worker", 0.0)
    served = results["statuses"].get("pass 200", 0)
    fetched_seconds = (results["last_fetch"] - t0) if results["fetched"] else None
    out["patch_seconds"] = round(patch["seconds"], 2) if "seconds" in patch else None
    out["seconds_to_all_pushed"] = (round(results["last_first_push"] - t0, 2)
                                    if results["pushed"] >= n_devices else None)
    out["seconds_to_all_fetched"] = (round(fetched_seconds, 2)
                                     if results["fetched"] >= n_devices and fetched_seconds
                                     else None)
    out["devices_pushed"] = results["pushed"]
    out["devices_fetched"] = results["fetched"]
    out["passes_served"] = served
    out["passes_signed_per_s"] = (round(served / fetched_seconds, 1)
                                  if fetched_seconds else None)
    out["service_cpu_s"] = round(service, 2)
    out["service_cpu_ms_per_pass"] = round(service / served * 1000, 2) if served else None
    out["cpu_s"] = cpu_at_fetched
    out["fetch_p50_ms"] = results["fetch_ms"]["p50"]
    out["fetch_p99_ms"] = results["fetch_ms"]["p99"]
    out["fetch_max_ms"] = results["fetch_ms"]["max"]
    out["fetch_p99_ms_by_tenth"] = [s["p99_ms"] for s in results["slices"]]
    out["request_p50_ms"] = results["request_ms"]["p50"]
    out["request_p99_ms"] = results["request_ms"]["p99"]
    out["requests"] = results["requests"]
    out["statuses"] = results["statuses"]
    out["reconnects"] = results["reconnects"]
    out["pass_kb_mean"] = round(results["pass_bytes"] / served / 1024, 1) if served else None
    out["max_rss_mb"] = round(max(meter.rss_max.values(), default=0) / 2**20, 1)
    out["max_rss_mb_by_kind"] = {k: round(v / 2**20, 1) for k, v in meter.rss_max.items()}
    out["rss_mb_at_100k"] = round(rss_at_mark, 1) if rss_at_mark is not None else None
    out["rss_mb_at_end"] = round(end, 1)
    out["pushed_twice"] = results["pushed_twice"]
    out["unknown_pushes"] = results["unknown_pushes"]
    out["killed_workers"] = killed
    out["google_requests"] = gstats["api_requests"]
    out["google_token_requests"] = gstats["token_requests"]
    out["google_by_operation"] = gstats["by_operation"]
    out["google_busiest_second"] = gstats["busiest_second"]
    out["google_done"] = google_done_at is not None
    out["google_seconds"] = (round(max(gstats["last"] or t0, t0) - t0, 2)
                             if google_done_at is not None else None)
    out["seconds_to_done"] = (round(google_done_at - t0, 2) if google_done_at is not None
                              and not failed else None)
    out["google_rows_left"] = state["google_rows"]
    out["apple_rows_left"] = state["apple_rows"]
    out["google_class_synced"] = state["class_synced"]
    out["update_id"] = state["update_id"]
    out["update_status"] = (update or {}).get("status") if update else (
        "none (the PATCH marked the cards itself)" if state["update_id"] is None else None)
    if update:
        out["update"] = {k: update.get(k) for k in ("status", "cards_total", "cards_done",
                                                   "cards_with_wallet", "devices_pushed",
                                                   "devices_skipped", "failures")}
    out["slices"] = [{**s, "pushed_from": None if s["pushed_from"] is None
                      else round(s["pushed_from"] - t0, 2),
                      "pushed_to": None if s["pushed_to"] is None
                      else round(s["pushed_to"] - t0, 2)} for s in results["slices"]]
    if results["fetched"] < n_devices:
        failed.append(f"{n_devices - results['fetched']:,} devices never got their pass")
    if state["apple_rows"]:
        failed.append(f"{state['apple_rows']:,} Apple outbox rows left (a drain deletes a "
                      "batch's rows together, Google's in it too)")
    if update is not None and update.get("status") != "done":
        failed.append(f"update {state['update_id']} is {update.get('status')}, not done")
    if google_done_at is None:
        failed.append(f"the Google side was not done {args.google_timeout:g} s after the last "
                      f"fetch ({state['google_rows']:,} Google outbox rows left, class "
                      f"{'synced' if state['class_synced'] else 'not synced'})")
    if args.kill_worker and results["pushed_twice"]:
        failed.append(f"{results['pushed_twice']:,} devices pushed twice after the kill")
    return {"summary": out, "failed": failed}


def report(s: dict[str, Any], failed: list[str], tmp: Path) -> None:
    def ms(value: Any) -> str:
        return "-" if value is None else f"{value:,.0f} ms"

    say(f"PATCH answered in {s.get('patch_seconds')} s")
    say(f"apple: {s['devices_pushed']:,} of {s['apple_devices']:,} devices pushed "
        f"(all by {s['seconds_to_all_pushed']} s), {s['devices_fetched']:,} have their pass "
        f"(all by {s['seconds_to_all_fetched']} s); {s['passes_served']:,} passes served "
        f"(mean {s['pass_kb_mean']} KB), {s['passes_signed_per_s']} passes/s; "
        f"{s['requests']:,} requests {s['statuses']}, {s['reconnects']} reconnects")
    say(f"fetch wait (push received -> pass in hand): p50 {ms(s['fetch_p50_ms'])}, "
        f"p99 {ms(s['fetch_p99_ms'])}, max {ms(s['fetch_max_ms'])}; single requests: "
        f"p50 {ms(s['request_p50_ms'])}, p99 {ms(s['request_p99_ms'])}")
    say("fetch p99 by tenth of the devices in push order: " + ", ".join(
        f"{k + 1}: {ms(sl['p99_ms'])} (pushed {sl['pushed_from']}-{sl['pushed_to']} s)"
        for k, sl in enumerate(s["slices"])))
    cpu = s["cpu_s"] or {}
    say("CPU seconds from the call until every device had its pass: " + ", ".join(
        f"{kind} {seconds:.1f}" for kind, seconds in sorted(cpu.items(), key=lambda x: -x[1])))
    say(f"service (web + worker) {s['service_cpu_s']} CPU-s = {s['service_cpu_ms_per_pass']} ms "
        f"per pass served; {s['rsa_limit_per_cpu_s']:,.0f} raw signatures per CPU-s; "
        f"ratio {s['ratio']} (target >= 0.5)")
    say(f"memory: max RSS of a service process {s['max_rss_mb']} MB {s['max_rss_mb_by_kind']}; "
        f"at {RSS_MARK:,} fetched {s['rss_mb_at_100k']} MB; at the end {s['rss_mb_at_end']} MB")
    say(f"google: {s['google_requests']} API requests {s['google_by_operation']} and "
        f"{s['google_token_requests']} token requests, busiest second "
        f"{s['google_busiest_second']}; " + (
            f"done at {s['google_seconds']} s (last request); everything done (outbox "
            f"empty, update done) seen at {s['seconds_to_done']} s" if s["google_done"] else
            f"NOT done ({s['google_rows_left']:,} Google outbox rows left, class "
            f"{'synced' if s['google_class_synced'] else 'not synced'})"))
    say(f"update: {s['update_status']} {s.get('update', '')}; pushed twice: {s['pushed_twice']}"
        f"; killed workers {s['killed_workers']}")
    say(f"Redis: {s.get('redis_used_mb_before')} MB used before the change, at most "
        f"{s.get('redis_used_mb_max')} MB during the run; signed passes the service stored "
        f"there (deleted now): {s['pass_store']}")
    if s.get("autovacuum_actions"):
        say("autovacuum stand-in (t, action, seconds): " + "; ".join(
            f"{t} s {action} {took} s" for t, action, took in s["autovacuum_actions"]))
    say(f"logs: {tmp}/web.log, {tmp}/worker.log, {tmp}/google.log")
    for problem in failed:
        say(f"INCOMPLETE: {problem}")
    keys = ("cards", "apple_devices", "google_objects", "seconds_to_all_pushed",
            "seconds_to_all_fetched", "passes_signed_per_s", "service_cpu_s",
            "rsa_limit_per_cpu_s", "ratio", "fetch_p99_ms", "request_p99_ms", "max_rss_mb",
            "rss_mb_at_100k", "google_requests", "google_token_requests", "google_seconds",
            "pushed_twice", "update_status")
    line = {k: s.get(k) for k in keys}
    line.update({k: v for k, v in s.items() if k not in line and k != "slices"})
    line["complete"] = not failed
    line["incomplete"] = failed
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
