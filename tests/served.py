"""The documented gunicorn command (README, Deployment) as a subprocess, for the log tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The documented command, with one worker to spare the test machine.
GUNICORN = ["-c", "python:app.gunicorn_conf", "--workers", "1", "--threads", "4",
            "--worker-class", "gthread", "wsgi:app"]


def start_gunicorn(tmp_path: Path, port: int, env: dict[str, str], *extra: str,
                   name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Serve on ``port`` once it answers ``/healthz``; (process, stdout file, stderr file)."""
    access, errors = tmp_path / f"{name}-stdout.log", tmp_path / f"{name}-stderr.log"
    with access.open("wb") as out, errors.open("wb") as err:
        proc = subprocess.Popen([BIN / "gunicorn", "-b", f"127.0.0.1:{port}", *extra, *GUNICORN],
                                env=env, cwd=ROOT, stdout=out, stderr=err)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                break
        except urllib.error.HTTPError:
            break  # it answers
        except OSError:
            assert proc.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "gunicorn did not answer"
            time.sleep(0.2)
    return proc, access, errors


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def service_env(tmp_path: Path, database_url: str, secret_key: str) -> dict[str, str]:
    """This environment without its ``POINTPASS_*`` settings, then the service's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POINTPASS_")}
    return {**env, "POINTPASS_SECRET_KEY": secret_key, "POINTPASS_DATABASE_URL": database_url,
            "POINTPASS_INSTANCE_PATH": str(tmp_path / "instance"),
            # Development: Apple Wallet on with stand-in certificates, so passes download.
            "POINTPASS_ENV": "development", "POINTPASS_BASE_URL": "http://pointpass.test"}
