"""Waiting on observable state, and real ``pointpass worker`` processes, for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``pointpass worker`` in a session of its own: it and the rq scheduler it forks share a
    process group (its id is the worker's pid)."""
    return subprocess.Popen([BIN / "pointpass", "worker"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
