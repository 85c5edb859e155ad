"""The least CPU a device's fetch can cost on this stack: the floor under bench_million's ratio.

After a push, Wallet makes two requests (the list of changed serials, then the pass). Here
gunicorn (gthread) and granian (WSGI), each with the workers and threads bench_million gives
the service, serve a WSGI app that does nothing but answer them: a small JSON and a 30 KB
body, no database, no Flask. A client pool like bench_million's (keep-alive HTTP/1.1
connections, one device's two requests after each other) drives ``--devices`` such fetches
as fast as it can, and the server's processes' CPU per device is the floor of the web tier's
share of a pass.

With one raw RSA-2048 signature for the pass itself (the least its signing costs), the best
``ratio`` (passes per service CPU-second / RSA signatures per CPU-second) any service on this
stack can reach is ``1 / (1 + web_floor x rsa_limit)``: issue 20 asks for 0.5, which leaves
the web tier one signature's CPU for both requests.

    .venv/bin/python benchmarks/wsgi_floor.py [--devices 20000] [--clients 32]

bench_million.py runs the same measurement before its change and prints it beside its ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Connection, _cpu_of, _descendants, granian, gunicorn, machine

PASS_BYTES = 30 * 1024  # a pass as bench_million's program signs it (about 30 KB)
_LIST = b'{"lastUpdated": "2", "serialNumbers": ["S0000000001"]}'


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The two answers, and nothing else."""
    if "/registrations/" in environ.get("PATH_INFO", ""):
        body, kind = _LIST, "application/json"
    else:
        body, kind = _BODY, "application/vnd.apple.pkpass"
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


_BODY = b"\0" * PASS_BYTES


async def _drive(port: int, devices: int, clients: int) -> float:
    remaining = iter(range(devices))
    list_request = (b"GET /passkit/v1/devices/d/registrations/pass.x?passesUpdatedSince=1"
                    b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
    pass_request = (b"GET /passkit/v1/passes/pass.x/S0000000001 HTTP/1.1\r\nHost: 127.0.0.1"
                    b"\r\nAuthorization: ApplePass t\r\nIf-Modified-Since: Sun, 29 Nov 2026 "
                    b"00:00:00 GMT\r\nAccept: */*\r\n\r\n")

    async def client() -> None:
        _transport, connection = await asyncio.get_running_loop().create_connection(
            Connection, "127.0.0.1", port)
        for _ in remaining:
            for request in (list_request, pass_request):
                status, _head, _body = await connection.request(request)
                assert status == 200, status
        connection.close()

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.monotonic() - began


def measure(server: str = "gunicorn", workers: int = 2, threads: int = 4,
            devices: int = 20_000, clients: int = 32) -> dict[str, Any]:
    """Serve ``devices`` fetches from the bare app; the web tier's CPU per device."""
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    serve = granian if server == "granian" else gunicorn
    with serve(env, workers=workers, threads=threads,
               app="benchmarks.wsgi_floor:app") as (port, master):
        asyncio.run(_drive(port, min(devices, 500), clients))  # warm: connections, imports
        pids = _descendants(master)
        before = sum(_cpu_of(pid) for pid in pids)
        seconds = asyncio.run(_drive(port, devices, clients))
        after = sum(_cpu_of(pid) for pid in pids)
    cpu = after - before
    return {"server": server, "devices": devices, "seconds": round(seconds, 2),
            "web_cpu_s": round(cpu, 2),
            "web_floor_ms_per_device": round(cpu / devices * 1000, 3),
            "devices_per_s": round(devices / seconds, 1)}


def best_ratio(web_floor_ms: float, rsa_limit_per_cpu_s: float) -> float:
    """The ratio of a service whose web tier costs the floor and whose pass costs one raw
    signature and nothing more."""
    return round(1 / (1 + web_floor_ms / 1000 * rsa_limit_per_cpu_s), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    from benchmarks.bench_million import rsa_limit  # the same count bench_million makes
    counting = rsa_limit()
    servers = [measure(server, args.web_workers, args.threads, args.devices, args.clients)
               for server in ("gunicorn", "granian")]
    rsa = float(counting.communicate()[0])
    for floor in servers:
        floor["best_ratio"] = best_ratio(floor["web_floor_ms_per_device"], rsa)
    out = {"servers": servers, "rsa_limit_per_cpu_s": round(rsa, 1),
           "benchmark": "wsgi_floor", "machine": machine(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
