"""The periodic sweep: whatever a dead worker or a lost job left behind is picked up again.

Every ``POINTPASS_OUTBOX_SWEEP_SECONDS`` a coalesced sweep job resumes the marketer updates
whose run died (:func:`app.loyalty.fanout.resume_interrupted`) and asks for an outbox drain,
which delivers rows a dead drain had leased once their lease runs out; in between it runs the
periodic tasks other parts added with :func:`add_task` (campaigns start the scheduled ones
that are due). It runs in ``pointpass worker``, or in the web process when jobs run
in-process.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app

from app import background
from app.loyalty import fanout
from app.outbox import drain as outbox

SWEEP_KEY = "sweep"
TASKS = "pointpass.sweep_tasks"


def add_task(app: Flask, task: Callable[[], None]) -> None:
    """Run ``task`` at every sweep of ``app`` (in the sweep's job, after the updates resume)."""
    tasks = app.extensions.setdefault(TASKS, [])
    if task not in tasks:
        tasks.append(task)


def sweep() -> None:
    """Resume interrupted updates, run the added tasks and drain the outbox (a job)."""
    fanout.resume_interrupted()
    for task in current_app.extensions.get(TASKS, ()):
        task()
    outbox.request_drain()


def start_sweeper(app: Flask) -> background.Sweeper:
    """Start the thread that asks for a sweep periodically; returns it, started."""
    sweeper = background.Sweeper(app, sweep, SWEEP_KEY,
                           float(app.config.get("OUTBOX_SWEEP_SECONDS", 30)))
    sweeper.start()
    return sweeper
