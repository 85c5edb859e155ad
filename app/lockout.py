"""Lock-outs after repeated failures: "N failures within a window lock the subject out".

Kept where the rate limits are (:mod:`app.ratelimit`): in Redis when configured, so every
instance sees the same counts and locks, else in the process. A :class:`Lockout` counts the
failures of each subject (such as ``actor:api_key:3`` or ``device:7``); the failure that
reaches ``max_failures`` within ``window_seconds`` of the first one locks the subject for
``lock_seconds`` from then. A success does not wipe the count: someone guessing could
otherwise mix in one code they know.

Unlike a rate limit, a lock-out that cannot reach its store refuses (503): a guard against
guessing that lapses whenever Redis does is no guard.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from flask import current_app
from limits.storage import Storage

from app.errors import DomainError
from app.ratelimit import counters

log = logging.getLogger("pointpass.lockout")


class LockedOut(DomainError, code="locked-out", status=429, title="Locked out"):
    """Too many failures: refused until ``Retry-After`` seconds have passed."""


class LockoutUnavailable(DomainError, code="lockout-unavailable", status=503,
                         title="Service unavailable"):
    """The lock-out counters cannot be reached, so the guarded action is refused."""


@dataclass(frozen=True)
class Lockout:
    """``max_failures`` failures of a subject within ``window_seconds`` lock it out for
    ``lock_seconds``; ``scope`` keeps one lock-out's counters apart from another's."""

    scope: str
    max_failures: int
    window_seconds: int
    lock_seconds: int

    def _key(self, kind: str, subject: str) -> str:
        return f"{current_app.config['RATELIMIT_KEY_PREFIX']}:lockout:{self.scope}:{kind}:{subject}"

    def retry_after(self, subjects: Iterable[str]) -> int | None:
        """Seconds until the longest lock of ``subjects`` ends; ``None`` when none is locked.

        Raises :class:`LockoutUnavailable` when the counters cannot be read.
        """
        store = counters()
        longest = None
        try:
            for subject in subjects:
                key = self._key("lock", subject)
                if store.get(key) > 0:
                    ends = store.get_expiry(key)
                    longest = max(longest or 0, max(1, math.ceil(ends - time.time())))
        except Exception as error:
            raise self._unavailable(error) from None
        return longest

    def fail(self, subjects: Iterable[str]) -> int | None:
        """Count a failure of each subject; lock those that reached ``max_failures``.
        Returns the seconds until the new lock ends, if one started, else ``None``."""
        store = counters()
        locked = None
        try:
            for subject in subjects:
                failures = store.incr(self._key("failures", subject), self.window_seconds)
                if failures >= self.max_failures and store.get(self._key("lock", subject)) == 0:
                    _start(store, self._key("lock", subject), self.lock_seconds)
                    log.warning("%s locked out of %s after %d failures", subject, self.scope,
                                failures)
                    locked = self.lock_seconds
        except Exception as error:
            raise self._unavailable(error) from None
        return locked

    def _unavailable(self, error: Exception) -> LockoutUnavailable:
        log.error("Lock-out %s not checked (%s: %s)", self.scope, type(error).__name__, error)
        return LockoutUnavailable("This check is unavailable for a moment. Try again shortly.",
                                  headers={"Retry-After": "30"})


def _start(store: Storage, key: str, seconds: int) -> None:
    store.incr(key, seconds)  # a new key: it expires ``seconds`` from now
