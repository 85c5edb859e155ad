"""The periodic sweep: whatever a dead worker or a lost job left behind is picked up again.

Every ``POINTPASS_OUTBOX_SWEEP_SECONDS`` a coalesced sweep job resumes the marketer updates
whose run died (:func:`app.wallet.updates.resume_interrupted`) and asks for an outbox drain,
which delivers rows a dead drain had leased once their lease runs out. It runs in
``pointpass worker``, or in the web process when jobs run in-process.
"""

from __future__ import annotations

from flask import Flask

from app import background
from app.campaigns import service as campaigns
from app.outbox import drain as outbox
from app.wallet import updates

SWEEP_KEY = "sweep"


def sweep() -> None:
    """Resume interrupted updates and drain the outbox (a job)."""
    updates.resume_interrupted()
    campaigns.start_due()
    outbox.request_drain()


def start_sweeper(app: Flask) -> background.Sweeper:
    """Start the thread that asks for a sweep periodically; returns it, started."""
    sweeper = background.Sweeper(app, sweep, SWEEP_KEY,
                           float(app.config.get("OUTBOX_SWEEP_SECONDS", 30)))
    sweeper.start()
    return sweeper
