"""gunicorn settings for the benchmarks: each worker, once it has loaded the application,
leaves a file named after its pid in ``$BENCH_READY_DIR``, so that a benchmark measures only
when every worker serves (the port opens before the workers have imported the app, which on a
busy machine takes seconds: requests pinned to a worker still booting then wait that long)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def post_worker_init(worker: Any) -> None:
    ready = os.environ.get("BENCH_READY_DIR")
    if ready:
        Path(ready, str(worker.pid)).touch()
