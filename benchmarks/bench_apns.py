"""APNs pushes per second: concurrent HTTP/2 streams against one push at a time.

Both cases use ``APNsClient`` over real TLS + HTTP/2 to the local APNs test server
(``tests/apns_server.py``), each on one reused connection, in the same run:

* concurrent -- ``max_concurrent_streams=500`` (the client's default);
* baseline   -- ``max_concurrent_streams=1``: one push in flight at a time, the next sent only
                when the previous answer arrived.

The server runs in its own process by default so that it does not share the client's GIL
(``--in-thread`` runs it in a thread of this process instead, as the tests do). ``--latency``
delays every answer, to imitate the round trip to Apple.

    python benchmarks/bench_apns.py [--tokens 20000] [--latency 0] [--in-thread]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.connection
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.wallet.apple.apns import APNsClient, Outcome
from passes.devcerts import DEFAULT_PASS_TYPE_ID, write_dev_certs
from tests.apns_server import APNsTestServer, write_server_certificate

WARM_UP = 200  # pushes before the clock starts, on the same connection


def _start_server(paths: dict[str, str], latency: float) -> APNsTestServer:
    # Not recording requests and skipping h2's per-header checks keeps the server's share of
    # the machine small; the tests run it with both on.
    return APNsTestServer(
        paths["server_cert"],
        paths["server_key"],
        paths["wwdr"],
        latency=latency,
        record=False,
        strict_headers=False,
    ).start()


def _serve(
    paths: dict[str, str], latency: float, pipe: multiprocessing.connection.Connection
) -> None:
    server = _start_server(paths, latency)
    pipe.send(server.url)
    cpu = time.process_time()
    pipe.recv()  # any message: stop
    stats = {
        "connections": server.connections,
        "max_streams": server.max_concurrent_streams_seen,
        "cpu": time.process_time() - cpu,
    }
    server.stop()
    pipe.send(stats)


@contextmanager
def test_server(
    paths: dict[str, str], latency: float, in_thread: bool
) -> Iterator[tuple[str, dict[str, float]]]:
    """Yield the server's URL and a dict filled with its statistics when it stops."""
    stats: dict[str, float] = {}
    if in_thread:
        server = _start_server(paths, latency)
        try:
            yield server.url, stats
        finally:
            stats.update(
                connections=server.connections, max_streams=server.max_concurrent_streams_seen
            )
            server.stop()
        return
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(paths, latency, theirs), daemon=True)
    process.start()
    try:
        yield ours.recv(), stats
    finally:
        ours.send("stop")
        stats.update(ours.recv())
        process.join(timeout=10)


def run_case(
    paths: dict[str, str], url: str, tokens: list[str], streams: int
) -> tuple[float, float]:
    """Push to every token once on a warm connection; return (wall seconds, CPU seconds)."""
    with APNsClient(
        url=url,
        cert_path=paths["pass_cert"],
        key_path=paths["pass_key"],
        ca_file=paths["server_ca"],
        topic=DEFAULT_PASS_TYPE_ID,
        max_concurrent_streams=streams,
    ) as apns_client:
        apns_client.push_many([f"{0xFFFF:08x}{i:056x}" for i in range(WARM_UP)])  # connect, warm up
        began, cpu = time.perf_counter(), time.process_time()
        results = apns_client.push_many(tokens)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        delivered = sum(1 for r in results if r.outcome is Outcome.DELIVERED)
        if delivered != len(tokens):
            raise SystemExit(f"only {delivered} of {len(tokens)} delivered: {apns_client.counters}")
        return elapsed, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=500, help="concurrent case's streams")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--in-thread", action="store_true", help="server in this process")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        client_files = write_dev_certs(Path(tmp) / "client")
        server_files = write_server_certificate(Path(tmp) / "server")
        paths = {
            "wwdr": str(client_files["wwdr"]),
            "pass_cert": str(client_files["pass_cert"]),
            "pass_key": str(client_files["pass_key"]),
            "server_ca": str(server_files["ca"]),
            "server_cert": str(server_files["cert"]),
            "server_key": str(server_files["key"]),
        }
        rates: dict[str, float] = {}
        seen: dict[str, dict[str, float]] = {}
        cpu_us: dict[str, float] = {}
        cases = [("concurrent", args.streams, 0), ("baseline", 1, 1)]
        for name, streams, prefix in cases:
            tokens = [f"{prefix:08x}{i:056x}" for i in range(args.tokens)]
            with test_server(paths, args.latency, args.in_thread) as (url, stats):
                seconds, cpu = run_case(paths, url, tokens, streams)
            rates[name] = args.tokens / seconds
            seen[name] = stats
            cpu_us[name] = cpu / args.tokens * 1e6

    where = "in this process" if args.in_thread else "in its own process"
    print(
        f"{args.tokens} distinct tokens, server {where}, answer latency {args.latency * 1000:g} ms"
    )
    print(
        f"{'case':<26}{'pushes/s':>10}{'client CPU/push':>17}{'server CPU/push':>17}"
        f"{'connections':>13}{'max streams':>13}"
    )
    for name, streams, _prefix in cases:
        label = f"{name} ({streams} stream{'s' if streams > 1 else ''})"
        # In-thread, the server's CPU time is part of this process's, so the client column
        # holds both and the server's own is not available.
        server_cpu = (
            f"{seen[name]['cpu'] / (args.tokens + WARM_UP) * 1e6:.0f} us"
            if "cpu" in seen[name]
            else "n/a"
        )
        print(
            f"{label:<26}{rates[name]:>10,.0f}{cpu_us[name]:>14.0f} us{server_cpu:>17}"
            f"{seen[name].get('connections', 0):>13.0f}{seen[name].get('max_streams', 0):>13.0f}"
        )
    ratio = rates["concurrent"] / rates["baseline"]
    print(f"\nconcurrent / baseline = {ratio:.1f}x  (target >= 5x, and >= 1,000 pushes/s)")
    print(json.dumps({k: round(v, 1) for k, v in rates.items()} | {"ratio": round(ratio, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
