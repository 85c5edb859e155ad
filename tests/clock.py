"""A fake clock for rate limits, backoff and timeouts: tests move time instead of sleeping."""

from __future__ import annotations

import threading


class FakeClock:
    """Time that moves only when told to.

    Pass ``clock`` (or the bound method ``clock.now``) where the code takes a clock, and
    ``clock.sleep`` where it takes a sleep: sleeping advances the clock at once and is
    recorded in ``slept``. ``reads`` counts how often the time was read, so a test can wait
    until a watchdog thread has looked at the clock after it moved. Thread-safe.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []
        self.reads = 0

    def now(self) -> float:
        with self._lock:
            self.reads += 1
            return self._now

    __call__ = now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self._now += seconds
