"""gunicorn settings for the benchmarks: the documented ones (``app/gunicorn_conf.py``: logs,
metrics from every worker), so a benchmark measures what is deployed; and each worker, once
it has loaded the application, leaves a file named after its pid in ``$BENCH_READY_DIR``, so
that a benchmark measures only when every worker serves (the port opens before the workers
have imported the app, which on a busy machine takes seconds: requests pinned to a worker
still booting then wait that long)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from app import gunicorn_conf
from app.gunicorn_conf import *  # noqa: F403 - every documented setting and hook


def post_worker_init(worker: Any) -> None:
    documented = getattr(gunicorn_conf, "post_worker_init", None)
    if documented is not None:
        documented(worker)
    ready = os.environ.get("BENCH_READY_DIR")
    if ready:
        Path(ready, str(worker.pid)).touch()
