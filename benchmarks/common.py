"""Helpers shared by the benchmarks: a scratch PostgreSQL database, gunicorn, a load loop."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# A fixed production-grade key (256 bits or more), so signed URLs and codes stay the same.
SECRET_KEY = "bench-secret-Vt3kQ9zR1mXw7LpA4sJd8HfN2cYg6BuE0oTi5WqK"
POSTGRES_ADMIN_URL = os.environ.get(
    "POINTPASS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def migrate(url: str) -> None:
    """Migrate the database at ``url`` to the newest revision."""
    env = {
        **os.environ,
        "POINTPASS_DATABASE_URL": url,
        "POINTPASS_ENV": "development",
        "POINTPASS_INSTANCE_PATH": "/tmp/pointpass-bench-instance",
    }
    subprocess.run([BIN / "pointpass", "db", "upgrade"], env=env, check=True, capture_output=True)


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, dropped afterwards. Yields its URL."""
    name = f"pointpass_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')



@contextmanager
def kept_or_scratch_postgres(keep: str | None) -> Iterator[str]:
    """A scratch database (dropped afterwards), or with ``keep`` the database of that name,
    created if missing, migrated to the newest revision and kept."""
    if keep is None:
        with scratch_postgres() as url:
            yield url
        return
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (keep,)).fetchone() \
                is None:
            conn.execute(f'CREATE DATABASE "{keep}"')
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{keep}"
    migrate(url)
    yield url

def bench_app(url: str, **settings: Any) -> Any:
    """The app on the benchmark's database ``url`` (development settings, ``settings``
    added), for seeding it and reading it back."""
    # Imported here: the load-generating side of a benchmark never needs the app.
    from app import create_app

    return create_app({"DATABASE_URL": url, "ENV": "development",
                       "INSTANCE_PATH": "/tmp/pointpass-bench-instance", **settings})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(env: dict[str, str], workers: int, threads: int, app: str = "wsgi:app",
             error_log: Path | None = None) -> Iterator[tuple[int, int]]:
    """Start gunicorn serving ``app`` on a free port once every worker has loaded it; yields
    ``(port, master pid)``. With ``error_log`` its standard error (the error log and the
    app's log lines) goes to that file rather than to a pipe nobody reads during the run,
    which a long run could fill."""
    port = free_port()
    ready = Path(tempfile.mkdtemp(prefix="pointpass-bench-ready-"))
    errors = error_log.open("wb") if error_log is not None else None
    proc = subprocess.Popen(
        [
            BIN / "gunicorn",
            "-c",
            "python:benchmarks.gunicorn_ready",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--keep-alive",
            "30",
            app,
        ],
        env={**os.environ, **env, "BENCH_READY_DIR": str(ready)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=errors or subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                if error_log is not None:
                    raise RuntimeError(error_log.read_text(errors="replace")[-5000:])
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "")
            time.sleep(0.1)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(ready, ignore_errors=True)
        if errors is not None:
            errors.close()


@contextmanager
def granian(env: dict[str, str], workers: int, threads: int, app: str = "wsgi:app",
            error_log: Path | None = None) -> Iterator[tuple[int, int]]:
    """Start granian (WSGI, HTTP/1.1) serving ``app`` on a free port, ``threads`` blocking
    threads per worker, once it answers; yields ``(port, pid)`` as :func:`gunicorn` does."""
    port = free_port()
    errors = error_log.open("wb") if error_log is not None else None
    proc = subprocess.Popen(
        [BIN / "granian", "--interface", "wsgi", "--http", "1", "--no-ws", "--host",
         "127.0.0.1", "--port", str(port), "--workers", str(workers), "--blocking-threads",
         str(threads), "--log-level", "warning", app],
        env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=errors or subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        answered = 0
        while answered < 4 * workers:  # every worker has the app loaded (a guess: 4 each)
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(error_log.read_text(errors="replace")[-5000:]
                                   if error_log is not None else "granian did not start")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                    probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
                    if probe.recv(12).startswith(b"HTTP/1.1"):
                        answered += 1
            except OSError:
                time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.terminate()  # granian waits for open keep-alive connections: not for long
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if errors is not None:
            errors.close()


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``; 0 if it is gone."""
    found = _stat(pid)
    return found[0] if found is not None else 0.0


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in task.read_text().split():
                found.extend(_descendants(int(child)))
        except OSError:
            pass
    return found


def _machine_busy() -> float:
    """CPU seconds all cores spent not idle (nor waiting for I/O) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip().startswith("postgres"):
                pids.append(int(stat.parent.name))
        except OSError:
            pass
    return pids


class CpuMeter:
    """CPU seconds used by the load generator (this process), a server's process tree and
    PostgreSQL, between :meth:`start` and :meth:`stop`; per operation in :meth:`per_op`."""

    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid = server_pid
        self.used: dict[str, float] = {}
        self._begin: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        sample = {"load generator": time.process_time(),
                  "PostgreSQL": sum(_cpu_of(p) for p in _postgres_pids())}
        if self.server_pid is not None:
            sample["server"] = sum(_cpu_of(p) for p in _descendants(self.server_pid))
        sample["whole machine"] = _machine_busy()
        return sample

    def start(self) -> None:
        self._begin = self._sample()

    def stop(self) -> None:
        end = self._sample()
        self.used = {name: end[name] - self._begin[name] for name in end}

    def per_op(self, operations: int) -> str:
        return ", ".join(f"{name} {seconds / max(operations, 1) * 1000:.2f} ms"
                         for name, seconds in self.used.items())


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    cpu: CpuMeter | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def line(self, label: str) -> str:
        return (
            f"{label:<38} {self.rate:9.0f}/s  p50 {self.percentile(50):6.2f} ms  "
            f"p99 {self.percentile(99):6.2f} ms  median {statistics.median(self.latencies_ms):6.2f}"
            f" ms  ({self.requests} ok, {self.errors} errors)"
        )


def run_load(
    clients: int,
    seconds: float,
    make_worker: Callable[[int], Callable[[], bool]],
    warmup: float = 1.0,
    cpu: CpuMeter | None = None,
) -> LoadResult:
    """Run ``clients`` threads, each calling its operation in a loop; count the measured window."""
    stop = threading.Event()
    measuring = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0}

    def loop(i: int) -> None:
        op = make_worker(i)
        local: list[float] = []
        ok = errors = 0
        while not stop.is_set():
            start = time.perf_counter()
            success = op()
            if measuring.is_set():
                local.append((time.perf_counter() - start) * 1000)
                if success:
                    ok += 1
                else:
                    errors += 1
        with lock:
            latencies.extend(local)
            counts["ok"] += ok
            counts["errors"] += errors

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    cpu = cpu or CpuMeter()
    cpu.start()
    measuring.set()
    began = time.perf_counter()
    time.sleep(seconds)
    measuring.clear()
    elapsed = time.perf_counter() - began
    cpu.stop()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    return LoadResult(counts["ok"], counts["errors"], elapsed, latencies, cpu)


def json_post(path: str, body: dict[str, object], headers: dict[str, str]) -> bytes:
    """The bytes of an HTTP/1.1 POST of ``body`` as JSON, for :func:`http_load`."""
    import json

    payload = json.dumps(body).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{head}\r\n").encode() + payload


def http_load(
    port: int,
    clients: int,
    seconds: float,
    request_for: Callable[[int, int], bytes],
    *,
    rate: float | None = None,
    ok_status: int = 201,
    warmup: float = 1.0,
    cpu: CpuMeter | None = None,
) -> LoadResult:
    """Drive ``clients`` keep-alive connections from one thread with non-blocking sockets
    (cheap on the CPU the server also needs). Client ``i`` sends ``request_for(i, n)`` for
    its ``n``-th request, one at a time.

    Without ``rate`` (closed loop) each client sends its next request as soon as the last
    is answered: the server's saturation rate. With ``rate`` (open loop) requests are due at
    that many per second and go to the next idle client; a latency counts from when the
    request was due, so time spent waiting for a free client counts (no coordinated
    omission).
    """
    import selectors
    from collections import deque

    selector = selectors.DefaultSelector()
    conns = []
    for i in range(clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, i)
        conns.append(sock)
    sent = [0] * clients
    due_at = [0.0] * clients
    busy = [False] * clients
    buffers = [b""] * clients
    idle = deque(range(clients))
    waiting: deque[float] = deque()
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0}
    cpu = cpu or CpuMeter()

    def send(i: int, due: float) -> None:
        conns[i].sendall(request_for(i, sent[i]))
        sent[i] += 1
        due_at[i] = due
        busy[i] = True

    def complete(i: int) -> int | None:
        """The status of client ``i``'s response once it is whole, else None."""
        data = buffers[i]
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = data[:head_end].decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if len(data) < head_end + 4 + length:
            return None
        buffers[i] = data[head_end + 4 + length:]
        return int(head[0].split()[1])

    began = time.perf_counter()
    measure_from = began + warmup
    measure_to = measure_from + seconds
    measuring = False
    next_due = began
    if rate is None:
        while idle:
            send(idle.popleft(), began)
    while True:
        now = time.perf_counter()
        if not measuring and now >= measure_from:
            measuring = True
            cpu.start()
        if now >= measure_to:
            break
        if rate is not None:
            while next_due <= now:
                waiting.append(next_due)
                next_due += 1.0 / rate
            while waiting and idle:
                send(idle.popleft(), waiting.popleft())
            timeout = max(0.0, min(next_due, measure_to) - time.perf_counter())
        else:
            timeout = max(0.0, measure_to - now)
        for key, _ in selector.select(timeout):
            i = key.data
            chunk = conns[i].recv(65536)
            if not chunk:
                raise RuntimeError("the server closed a connection")
            buffers[i] += chunk
            status = complete(i)
            if status is None:
                continue
            done = time.perf_counter()
            busy[i] = False
            if measure_from <= done < measure_to:
                latencies.append((done - due_at[i]) * 1000)
                counts["ok" if status == ok_status else "errors"] += 1
            if rate is None:
                send(i, done)
            else:
                idle.append(i)
    cpu.stop()
    # Let requests in flight finish, so the next run starts on a quiet server.
    deadline = time.perf_counter() + 10
    while any(busy) and time.perf_counter() < deadline:
        for key, _ in selector.select(0.5):
            i = key.data
            buffers[i] += conns[i].recv(65536)
            if complete(i) is not None:
                busy[i] = False
    for sock in conns:
        selector.unregister(sock)
        sock.close()
    return LoadResult(counts["ok"], counts["errors"], seconds, latencies, cpu)


# The floors issue the service's own statements, as SQL, with psycopg.

def floor_lock(conn: Any, serial: str, key: str, *, read_tiers: bool) -> tuple[int, int]:
    """Lock the card (with its program and tier name) and look up the idempotency key; read
    the program's tiers when the posting may change the tier. ``(card id, program)``."""
    card_id, program_id, _tier, _replay = conn.execute(
        "SELECT c.id, c.program_id, t.name, (SELECT l.id FROM ledger_entries l WHERE "
        "l.card_id = c.id AND l.idempotency_key = %s) FROM cards c JOIN programs p "
        "ON p.id = c.program_id LEFT JOIN tiers t ON t.id = c.tier_id "
        "WHERE c.serial_number = %s FOR UPDATE OF c",
        (key, serial)).fetchone()
    if read_tiers:
        conn.execute("SELECT id, name, threshold, multiplier_percent FROM tiers "
                     "WHERE program_id = %s", (program_id,)).fetchall()
    return card_id, program_id


def floor_post(conn: Any, card_id: int, points: int, *, lifetime: int, rotate: int
               ) -> tuple[int, int]:
    """The posting's guarded update, as the service issues it. ``(balance, code version)``."""
    now = int(time.time())
    row = conn.execute(
        "UPDATE cards SET barcode_version = barcode_version + %(rotate)s, balance = balance "
        "+ %(points)s, lifetime_points = lifetime_points + %(lifetime)s, tier_id = tier_id, "
        "totp_last_counter = COALESCE(NULL, totp_last_counter), version = version + 1, "
        "updated_at = now(), last_modified = CASE WHEN last_modified + 1 > %(now)s "
        "THEN last_modified + 1 ELSE %(now)s END, change_stamp = "
        "pg_current_xact_id()::text::bigint WHERE id = %(card)s AND balance + %(points)s >= 0 "
        "RETURNING balance, barcode_version",
        {"rotate": rotate, "points": points, "lifetime": lifetime, "now": now, "card": card_id},
    ).fetchone()
    return int(row[0]), int(row[1])


def load_arguments(description: str | None, threads: int = 4, rounds: int | None = None,
                   ) -> Any:
    """The options every gunicorn benchmark takes (and ``--rounds`` when given a default)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=threads)
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds,
                            help="interleaved rounds; the median round is reported")
    return parser.parse_args()


def floor_announce(conn: Any, card_id: int) -> None:
    """The outbox insert (only for wallets with someone to tell)."""
    conn.execute(
        "INSERT INTO pass_outbox (card_id, channel, update_id, attempts, available_at, "
        "created_at) SELECT c.id, 'apple', NULL, 0, now(), now() FROM cards c WHERE c.id IN "
        "(%s) AND EXISTS (SELECT 1 FROM apple_registrations r WHERE r.card_id = c.id"
        " AND r.removed_at IS NULL)",
        (card_id,))


def floor_redeem(conn: Any, serial: str, key: str, staff_key_id: int) -> int:
    """The service's redemption transaction, statement for statement (1 point); the new
    balance."""
    with conn.transaction():
        card_id, _program_id = floor_lock(conn, serial, key, read_tiers=False)
        balance, version = floor_post(conn, card_id, -1, lifetime=0, rotate=1)
        (entry_id,) = conn.execute(
            "INSERT INTO ledger_entries (card_id, kind, points, balance_after, actor, "
            "idempotency_key, request_fingerprint, created_at) VALUES "
            "(%s, 'redeem', -1, %s, 'bench', %s, %s, now()) "
            "ON CONFLICT (card_id, idempotency_key) DO NOTHING RETURNING id",
            (card_id, balance, key, uuid.uuid4().hex)).fetchone()
        conn.execute(
            "INSERT INTO redemptions (card_id, ledger_entry_id, points, code_version, "
            "staff_key_id, created_at) VALUES (%s, %s, 1, %s, %s, now()) RETURNING id",
            (card_id, entry_id, version - 1, staff_key_id)).fetchone()
        floor_announce(conn, card_id)
    return balance


_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[float, int] | None:
    """CPU seconds (user + system) and RSS in bytes of ``pid``; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK, int(fields[21]) * _PAGE


class Connection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client connection: one request at a time, answers with a
    Content-Length body (or none), one future per request and no stream buffers, so that
    simulating the devices takes little of the CPU the service also needs."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bytes]] | None = None
        self.closed = False
        self.head = b""
        self.length = -1  # the body's length once the head is in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.length < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = head = bytes(buffer[:end + 2])
            del buffer[:end + 4]
            at = head.lower().find(b"\r\ncontent-length:")
            self.length = int(head[at + 17:head.index(b"\r\n", at + 2)]) if at >= 0 else 0
        if len(buffer) < self.length:
            return
        body = bytes(buffer[:self.length])
        del buffer[:self.length]
        self.length = -1
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((int(self.head[9:12]), self.head, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the server closed the connection"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
