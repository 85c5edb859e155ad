"""gunicorn settings for Pointpass: ``gunicorn -c python:app.gunicorn_conf wsgi:app``.

The access log goes to standard output through :class:`app.logs.GunicornLogger`, which keeps
the card page and pass download tokens (in request lines and ``Referer`` headers) and
credential headers out of it; the error log goes to standard error, redacted likewise.
Each access line is the "combined" format followed by the request id (the ``X-Request-Id``
the service answered) and the response time in seconds; with ``POINTPASS_LOG_FORMAT=json``
both logs write one JSON object per line instead.
Options given on the command line (workers, threads, bind) override these.

``GET /metrics`` adds up the counts of every worker: see the hooks at the end.
"""

import glob
import os
import shutil
import tempfile
from typing import Any

from prometheus_client import multiprocess, values

logger_class = "app.logs.GunicornLogger"
accesslog = "-"
errorlog = "-"
access_log_format = ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
                     '%({x-request-id}o)s %(L)s')


# Metrics from every worker (prometheus_client's multiprocess mode, read by GET /metrics).
# Each worker writes its counts to files in PROMETHEUS_MULTIPROC_DIR: the operator's
# directory when set (emptied at start: counts restart with the service, as counters may),
# else a temporary one this master makes and removes.

def on_starting(server: Any) -> None:
    _multiprocess_dir_set_up()


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    for made in _made_here:
        shutil.rmtree(made, ignore_errors=True)


_made_here: list[str] = []


def _multiprocess_dir_set_up() -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="pointpass-metrics-")
        _made_here.append(path)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # the workers inherit it
    # ``-c python:app.gunicorn_conf`` imported the app package, and prometheus_client with
    # it, before this variable was set: choose the multiprocess values now, before any
    # worker is forked (app.telemetry makes every value on first use, in the worker).
    values.ValueClass = values.get_value_class()
