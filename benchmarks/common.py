"""Helpers shared by the benchmarks: a scratch PostgreSQL database, gunicorn, a load loop."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
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


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, dropped afterwards. Yields its URL."""
    name = f"pointpass_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        env = {
            **os.environ,
            "POINTPASS_DATABASE_URL": url,
            "POINTPASS_ENV": "development",
            "POINTPASS_INSTANCE_PATH": "/tmp/pointpass-bench-instance",
        }
        subprocess.run(
            [BIN / "pointpass", "db", "upgrade"], env=env, check=True, capture_output=True
        )
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(env: dict[str, str], workers: int, threads: int) -> Iterator[tuple[int, int]]:
    """Start gunicorn on a free port; yields ``(port, master pid)``."""
    port = free_port()
    proc = subprocess.Popen(
        [
            BIN / "gunicorn",
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
            "wsgi:app",
        ],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "") from None
                time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in task.read_text().split():
                found.extend(_descendants(int(child)))
        except OSError:
            pass
    return found


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


def http_post_loop(port: int, key: str,
                   request_for: Callable[[int, int], tuple[str, dict[str, object]]]
                   ) -> Callable[[int], Callable[[], bool]]:
    """A ``make_worker`` for :func:`run_load`: each client keeps one HTTP connection and POSTs
    ``request_for(client, n)`` = (path, JSON body) with a fresh ``Idempotency-Key``."""
    import http.client
    import itertools
    import json

    def make(i: int) -> Callable[[], bool]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        counter = itertools.count()

        def op() -> bool:
            n = next(counter)
            path, body = request_for(i, n)
            conn.request("POST", path, body=json.dumps(body), headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json",
                "Idempotency-Key": f"c{i}-{n}"})
            response = conn.getresponse()
            response.read()
            return response.status == 201

        return op

    return make


# The floors issue the service's own statements, as SQL, with psycopg.

def floor_lock(conn: Any, serial: str, key: str) -> tuple[int, int]:
    """Lock the card and look up the idempotency key; read the tiers. ``(card id, program)``."""
    card_id, program_id, _replay = conn.execute(
        "SELECT c.id, c.program_id, (SELECT l.id FROM ledger_entries l WHERE "
        "l.card_id = c.id AND l.idempotency_key = %s) FROM cards c JOIN programs p "
        "ON p.id = c.program_id WHERE c.serial_number = %s FOR UPDATE OF c",
        (key, serial)).fetchone()
    conn.execute("SELECT id, name, threshold, multiplier_percent FROM tiers "
                 "WHERE program_id = %s", (program_id,)).fetchall()
    return card_id, program_id


def floor_announce(conn: Any, card_id: int) -> None:
    """The outbox insert (only for wallets with someone to tell)."""
    conn.execute(
        "INSERT INTO pass_outbox (card_id, channel, update_id, attempts, available_at, "
        "created_at) SELECT c.id, 'apple', NULL, 0, now(), now() FROM cards c WHERE c.id IN "
        "(%s) AND EXISTS (SELECT 1 FROM apple_registrations r WHERE r.card_id = c.id)",
        (card_id,))
