"""Pacing pushes to what the web tier can sign.

Every device fetches its new pass within a second or two of its push, and each new pass costs
an RSA signature. Pushing a million devices as fast as APNs takes them (thousands a second)
would queue their fetches behind each other on the web tier; pushing at the rate the web tier
builds passes keeps every fetch as fast as a single one.

``POINTPASS_APNS_PUSH_RATE`` sets that rate, in pushes per second over all workers:

- ``auto`` (the default): measured. The first delivery of a process times, in CPU time of
  one thread, what one device's fetch after its push costs the web tier, and the rate is
  ``POINTPASS_WEB_CPUS`` (default: this machine's CPUs) / that cost. With pre-building (the
  default, ``POINTPASS_PASS_PREBUILD``) the web tier signs nothing: the cost is the device's
  two requests answered from the pass store in process (:class:`Sample` ``serve``), plus
  :data:`SERVER_COST` for the HTTP server's own share. Without it, each fetch signs its pass:
  the cost is a pass built through the views times :data:`FETCH_COST_FACTOR` (``build``).
  Both were measured by ``benchmarks/bench_million.py`` and ``benchmarks/wsgi_floor.py``
  (``benchmarks/RESULTS.md``); a pre-building delivery can push no faster than it builds,
  so the rate only has to keep the web tier from queueing.
- a number: that many pushes per second.
- ``0``: no pacing (as fast as APNs answers).

The rate is shared by every worker through Redis when there is one (a GCRA: each delivery
reserves its pushes' slots and waits for the first), else within this process. A delivery may
burst up to :data:`BURST_SECONDS`' worth at once (a second's made the fetches that followed
queue for a connection, benchmarks/RESULTS.md); one batch of the outbox is never more than
half of its lease's worth (a quarter with pre-building) at the pace this process's deliveries
have kept (:func:`max_batch`), so a paced batch never outlives its lease.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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
# What the HTTP server itself costs per device (two requests) besides the app, in CPU
# seconds: 0.48 ms under gunicorn's gthread workers, 0.06 ms under granian
# (benchmarks/wsgi_floor.py). The larger, so auto never overruns a gunicorn tier.
SERVER_COST = 0.0005
SAMPLES = 5  # passes built to measure the cost of one
BURST_SECONDS = 0.2  # at most this much of the rate at once (after an idle spell)
REDIS_KEY = "pointpass:apns-pace"
# The pushes per second :func:`max_batch` assumes a delivery keeps before one has shown it
# (a slow machine's: a pass built through the views in 10 ms).
UNOBSERVED_RATE = 100.0

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
        # The pushes per second this process's deliveries kept (building, pushing and
        # booking included), once one ran long enough to tell: see :func:`max_batch`.
        self.kept: float | None = None
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

    def observe(self, pushes: int, seconds: float) -> None:
        """A delivery pushed ``pushes`` devices in ``seconds`` (wall time, from its first part
        to its last push); deliveries shorter than a second say too little."""
        if seconds < 1.0 or pushes <= 0:
            return
        kept = pushes / seconds
        self.kept = kept if self.kept is None else (self.kept + kept) / 2

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


@dataclass(frozen=True)
class Sample:
    """What ``auto`` times: ``fetch_one()`` does in process what one device's fetch after its
    push costs the web tier, which costs ``factor`` times that plus ``overhead`` seconds."""

    fetch_one: Callable[[], Any]
    factor: float
    overhead: float
    what: str  # for the log line

    @classmethod
    def serve(cls, fetch_one: Callable[[], Any]) -> Sample:
        """Passes pre-built: ``fetch_one`` answers a device's two requests from the store."""
        return cls(fetch_one, 1.0, SERVER_COST, "a pre-built pass served")

    @classmethod
    def build(cls, build_one: Callable[[], Any]) -> Sample:
        """Passes signed by their first fetch: ``build_one`` builds and signs one."""
        return cls(build_one, FETCH_COST_FACTOR, 0.0, "a pass built")


def measured_rate(sample: Sample, cpus: int) -> float:
    """The pushes per second ``cpus`` web CPUs can absorb, from the CPU time of
    ``sample.fetch_one()``, the median of :data:`SAMPLES`."""
    sample.fetch_one()  # warm: images rendered, caches filled, statements prepared
    costs = []
    for _ in range(SAMPLES):
        start = time.thread_time()
        sample.fetch_one()
        costs.append(time.thread_time() - start)
    cost = max(sorted(costs)[len(costs) // 2], 1e-6)
    return cpus / (cost * sample.factor + sample.overhead)


def pacer_for(app: Flask, sample: Callable[[], Sample]) -> Pacer | None:
    """The process's pacer (made on first use; ``sample()`` gives what to measure when the
    rate is ``auto``), or ``None`` when pushes are not paced."""
    state = app.extensions.setdefault(EXTENSION, {})
    if "pacer" in state:
        return state["pacer"]  # type: ignore[no-any-return]
    with state.setdefault("lock", threading.Lock()):
        if "pacer" not in state:
            rate = configured_rate(app)
            how = "configured"
            if rate is None:
                measured = sample()
                rate = measured_rate(measured, web_cpus(app))
                how = f"measured from {measured.what} ({web_cpus(app)} web CPUs)"
            pacer = Pacer(rate, redis_for(app)) if rate > 0 else None
            if pacer is None:
                log.info("APNs pushes are not paced (POINTPASS_APNS_PUSH_RATE=0)")
            else:
                log.info("APNs pushes paced at %.0f per second, %s", rate, how)
            state["pacer"] = pacer
    return state["pacer"]  # type: ignore[no-any-return]


def max_batch(lease_seconds: int) -> int | None:
    """The most outbox rows one paced delivery may take: half its lease's worth of pushes,
    a quarter when it also pre-builds their passes (``None``: no limit, when not paced).

    Its worth at the pace the process's deliveries have kept when that is below the rate
    (a worker that pre-builds may push slower than the web tier could take), and at no more
    than :data:`UNOBSERVED_RATE` until one has run: a batch still held when its lease runs
    out would be taken again by another worker's drain, and its devices pushed twice."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    pacer = app.extensions.get(EXTENSION, {}).get("pacer")
    rate = pacer.rate if pacer is not None else configured_rate(app)
    if not rate:
        return None
    kept = pacer.kept if pacer is not None else None
    rate = min(rate, kept if kept is not None else UNOBSERVED_RATE)
    share = 4 if prebuild_enabled(app) else 2
    return max(1, int(rate * lease_seconds / share))
