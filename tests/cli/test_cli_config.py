"""The ``pointpass`` console script without settings, or with bad ones: help, the commands
that need no app, one line for a configuration error, and a downgrade that asks first."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import BIN
from tests.processes import wait_until

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = ["check-ledger", "create-key", "create-user", "db", "demo", "dev-certs", "enrol-device",
            "erase-member", "export", "import", "list-devices", "list-keys", "outbox",
            "rebuild-stats", "revoke-device", "revoke-key", "routes", "run", "shell", "spec",
            "staff", "tick", "worker"]


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """No POINTPASS_* setting at all, as on a freshly installed machine."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}


def run(*args: str, env: dict[str, str], cwd: Path, stdin: str = "",
        ) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "pointpass", *args], env=env, cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_without_settings(bare_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    result = run("--help", env=bare_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines()
              if line.strip()]
    assert listed == COMMANDS


def test_dev_certs_needs_no_settings(bare_env: dict[str, str], tmp_path: Path) -> None:
    result = run("dev-certs", str(tmp_path / "certs"), env=bare_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "certs" / "pass.pem").is_file()


CONFIGURATION_ERRORS = [
    ({}, "POINTPASS_DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://db.internal/pointpass"}, "POINTPASS_DATABASE_URL"),
    ({"POINTPASS_DATABASE_URL": "sqlite:///x.db", "POINTPASS_SECRET_KEY": "abc"},
     "POINTPASS_SECRET_KEY"),
]


def in_process(*args: str, env: dict[str, str], cwd: Path, monkeypatch: pytest.MonkeyPatch,
               capfd: pytest.CaptureFixture[str]) -> tuple[Any, str]:
    """``pointpass *args`` run by the console script's own ``main`` in this process, with
    only ``env`` as the environment and ``cwd`` as the working directory: its exit code and
    what it wrote to stderr. A process of its own costs ~2 s of imports for what the
    script's main (``sys.exit(cli.main())``) does anyway."""
    from app.cli.cli import main

    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr("sys.argv", ["pointpass", *args])
    capfd.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capfd.readouterr().err


def one_line_error(code: Any, stderr: str, named: str, tmp_path: Path) -> None:
    assert code == 1
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and named in lines[0], lines
    assert not (tmp_path / "x.db").exists()


def test_a_configuration_error_is_one_line_from_the_script(bare_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    """The installed script, as on a freshly installed machine (the other commands and
    settings: below, in this process)."""
    settings, named = CONFIGURATION_ERRORS[0]
    result = run("db", "upgrade", env={**bare_env, **settings}, cwd=tmp_path)
    one_line_error(result.returncode, result.stderr, named, tmp_path)


@pytest.mark.parametrize(("settings", "named"), CONFIGURATION_ERRORS)
@pytest.mark.parametrize("command", [["db", "upgrade"], ["list-keys"], ["spec"]])
def test_a_configuration_error_is_one_line(bare_env: dict[str, str], tmp_path: Path,
                                           settings: dict[str, str], named: str,
                                           command: list[str],
                                           monkeypatch: pytest.MonkeyPatch,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    code, stderr = in_process(*command, env={**bare_env, **settings}, cwd=tmp_path,
                              monkeypatch=monkeypatch, capfd=capfd)
    one_line_error(code, stderr, named, tmp_path)


def _current_revision(database: Path) -> str:
    with sqlite3.connect(database) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_downgrade_asks_first(bare_env: dict[str, str], tmp_path: Path,
                              sqlite_database: Any) -> None:
    database = tmp_path / "d.db"
    shutil.copyfile(sqlite_database.template, database)  # migrated to the head already
    env = {**bare_env, "POINTPASS_ENV": "development",
           "POINTPASS_INSTANCE_PATH": str(tmp_path / "instance"),
           "POINTPASS_DATABASE_URL": f"sqlite:///{database}"}
    head = _current_revision(database)
    current = run("db", "current", env=env, cwd=tmp_path)
    assert current.stdout.strip() == f"{head} (head)", current.stderr

    declined = run("db", "downgrade", env=env, cwd=tmp_path, stdin="n\n")
    assert declined.returncode == 1
    assert "dropped with their data" in declined.stderr and "Aborted" in declined.stderr
    no_answer = run("db", "downgrade", env=env, cwd=tmp_path)  # a script: stdin is empty
    assert no_answer.returncode == 1
    assert _current_revision(database) == head

    accepted = run("db", "downgrade", env=env, cwd=tmp_path, stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    one_behind = _current_revision(database)
    assert one_behind != head

    assert run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    assert _current_revision(database) == head
    scripted = run("db", "downgrade", "--yes", env=env, cwd=tmp_path)
    assert scripted.returncode == 0, scripted.stderr
    assert "dropped with their data" not in scripted.stderr
    assert _current_revision(database) == one_behind


def test_gunicorn_starts_without_database_and_redis(bare_env: dict[str, str], tmp_path: Path,
                                                    free_port: Any) -> None:
    """Production settings with PostgreSQL and Redis on ports nothing listens on: the
    service serves, alive but not ready."""
    port = free_port()
    env = {**bare_env, "POINTPASS_SECRET_KEY": secrets.token_urlsafe(48),
           "POINTPASS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/pointpass",
           "POINTPASS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "POINTPASS_INSTANCE_PATH": str(tmp_path / "instance")}
    server = subprocess.Popen([BIN / "gunicorn", "-b", f"127.0.0.1:{port}", "wsgi:app"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)

    def get(path: str) -> tuple[int, Any] | None:
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)
        except OSError:
            return None  # not listening yet

    try:
        wait_until(lambda: get("/healthz") is not None, "gunicorn to answer")
        assert get("/healthz") == (200, {"status": "ok"})
        status, body = get("/readyz") or (0, None)
        assert status == 503
        assert body["checks"]["database"] == "unreachable (OperationalError)"
        assert body["checks"]["redis"] == "unreachable (ConnectionError)"
    finally:
        server.terminate()
        server.wait(timeout=30)
