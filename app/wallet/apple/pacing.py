"""Pacing pushes to what the web tier can sign.

Every device fetches its new pass within a second or two of its push, and each new pass costs
an RSA signature. Pushing a million devices as fast as APNs takes them (thousands a second)
would queue their fetches behind each other on the web tier; pushing at the rate the web tier
builds passes keeps every fetch as fast as a single one.

``POINTPASS_APNS_PUSH_RATE`` sets that rate, in pushes per second over all workers:

- ``auto`` (the default): measured. The first delivery of a process times the building and
  signing of a few passes of the cards it pushes for (CPU time of one thread), and the rate is
  ``POINTPASS_WEB_CPUS`` (default: this machine's CPUs) / (that time ×
  :data:`FETCH_COST_FACTOR`), the cost of a whole fetch relative to building its pass
  (measured by ``benchmarks/bench_million.py``, see ``benchmarks/RESULTS.md``).
- a number: that many pushes per second.
- ``0``: no pacing (as fast as APNs answers).

The rate is shared by every worker through Redis when there is one (a GCRA: each delivery
reserves its pushes' slots and waits for the first), else within this process. A delivery may
burst up to :data:`BURST_SECONDS`' worth at once (a second's made the fetches that followed
queue for a connection, benchmarks/RESULTS.md); one batch of the outbox is never more than
half of its lease's worth (:func:`max_batch`), so a paced batch never outlives its lease.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError

from app.redisclient import redis_for

log = logging.getLogger("pointpass.apple.pacing")

EXTENSION = "pointpass.apns_pacing"
AUTO = "auto"
# A device's whole fetch after a push (the list of changed serials, then the pass: two
# requests through the web tier, the database reads, the signature) costs this many times the
# CPU of building and signing the pass alone (measured: benchmarks/RESULTS.md, issue 20).
FETCH_COST_FACTOR = 2.0
SAMPLES = 5  # passes built to measure the cost of one
BURST_SECONDS = 0.2  # at most this much of the rate at once (after an idle spell)
REDIS_KEY = "pointpass:apns-pace"

# GCRA over Redis: the key holds the theoretical arrival time (TAT, in seconds, Redis clock)
# after the last reservation. A reservation of ``cost`` seconds starts at max(TAT, now -
# burst) and moves the TAT by ``cost``; the caller waits until its start.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now - burst then tat = now - burst end
local after = tat + cost
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX',
           math.ceil((after - now + burst) * 1000) + 1000)
return string.format('%.6f', tat - now)
"""


class Pacer:
    """Reserves slots at ``rate`` per second; shared through ``redis`` when given."""

    def __init__(self, rate: float, redis: Redis | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._redis = redis
        self._script = redis.register_script(_RESERVE) if redis is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._tat = 0.0

    def reserve(self, count: int) -> float:
        """Reserve ``count`` pushes; the seconds to wait before sending them (0: now)."""
        cost = count / self.rate
        if self._script is not None:
            try:
                return max(0.0, float(self._script(keys=[REDIS_KEY],
                                                   args=[f"{cost:.6f}", BURST_SECONDS])))
            except RedisError as exc:  # Redis down: pace this process alone
                log.warning("push pacing falls back to this process: %s", exc)
        with self._lock:
            now = self._clock()
            start = max(self._tat, now - BURST_SECONDS)
            self._tat = start + cost
            return max(0.0, start - now)

    def slices(self, tokens: Sequence[str]) -> Iterator[Sequence[str]]:
        """``tokens`` in slices of a tenth of a second's worth, each once its slots are
        reserved and its wait is over."""
        size = max(1, math.ceil(self.rate / 10))
        for start in range(0, len(tokens), size):
            part = tokens[start:start + size]
            wait = self.reserve(len(part))
            if wait > 0:
                time.sleep(wait)
            yield part


def configured_rate(app: Flask) -> float | None:
    """The configured rate: a number of pushes per second, ``None`` for ``auto``, 0 for none.
    Raises ``ValueError`` for anything else."""
    value = str(app.config.get("APNS_PUSH_RATE", AUTO)).strip().lower()
    if value == AUTO:
        return None
    rate = float(value)
    if rate < 0 or not math.isfinite(rate):
        raise ValueError(f"POINTPASS_APNS_PUSH_RATE must be 'auto' or a rate >= 0, not {value!r}")
    return rate


def prebuild_enabled(app: Flask) -> bool:
    """Whether deliveries build and store the passes before they push
    (``POINTPASS_PASS_PREBUILD``, on by default: the signatures are the same, made by the
    worker in bulk instead of by the first fetch, one by one)."""
    return bool(app.config.get("PASS_PREBUILD", True))  # the env's 1/0, true/false


def web_cpus(app: Flask) -> int:
    """The CPUs serving the web tier (``POINTPASS_WEB_CPUS``, default this machine's)."""
    return max(1, int(app.config.get("WEB_CPUS") or os.cpu_count() or 1))


def measured_rate(build_one: Callable[[], Any], cpus: int) -> float:
    """The pushes per second ``cpus`` web CPUs can absorb, from the CPU time of
    ``build_one()`` (one pass built and signed), the median of :data:`SAMPLES`."""
    build_one()  # warm: images rendered, caches filled
    costs = []
    for _ in range(SAMPLES):
        start = time.thread_time()
        build_one()
        costs.append(time.thread_time() - start)
    cost = max(sorted(costs)[len(costs) // 2], 1e-5)
    return cpus / (cost * FETCH_COST_FACTOR)


def pacer_for(app: Flask, build_one: Callable[[], Any]) -> Pacer | None:
    """The process's pacer (made on first use; ``build_one`` measures the rate when it is
    ``auto``), or ``None`` when pushes are not paced."""
    state = app.extensions.setdefault(EXTENSION, {})
    if "pacer" in state:
        return state["pacer"]  # type: ignore[no-any-return]
    with state.setdefault("lock", threading.Lock()):
        if "pacer" not in state:
            rate = configured_rate(app)
            how = "configured"
            if rate is None:
                rate = measured_rate(build_one, web_cpus(app))
                how = f"measured ({web_cpus(app)} web CPUs)"
            pacer = Pacer(rate, redis_for(app)) if rate > 0 else None
            if pacer is None:
                log.info("APNs pushes are not paced (POINTPASS_APNS_PUSH_RATE=0)")
            else:
                log.info("APNs pushes paced at %.0f per second, %s", rate, how)
            state["pacer"] = pacer
    return state["pacer"]  # type: ignore[no-any-return]


def max_batch(lease_seconds: int) -> int | None:
    """The most outbox rows one paced delivery may take: half its lease's worth of pushes,
    a quarter when it also pre-builds their passes (``None``: no limit, when not paced or
    not measured yet)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    pacer = app.extensions.get(EXTENSION, {}).get("pacer")
    rate = pacer.rate if pacer is not None else configured_rate(app)
    if not rate:
        return None
    share = 4 if prebuild_enabled(app) else 2
    return max(1, int(rate * lease_seconds / share))
