"""The processes of a deployment, for ``tests/test_scale_out.py``: a PostgreSQL cluster of its
own, gunicorn instances, ``pointpass worker`` processes and nginx, each started from the files
in ``deploy/`` (rendered with test ports and paths) rather than from a copy of them.

PostgreSQL refuses to run as root: when the tests run as root the cluster runs as the
``postgres`` user (``runuser``), in a temporary directory it owns.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.processes import BIN

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
WEB_UNIT = DEPLOY / "systemd" / "pointpass-web@.service"
WORKER_UNIT = DEPLOY / "systemd" / "pointpass-worker@.service"
ENV_FILE = DEPLOY / "pointpass.env"
PROCFILE = DEPLOY / "Procfile"
NGINX_SITE = DEPLOY / "nginx" / "pointpass.conf"
INSTALLED_BIN = "/opt/pointpass/venv/bin/"
PG_USER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None)


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``."""
    found = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
             if (path.parent / "pg_ctl").exists()]
    return max(found, key=lambda path: int(path.parent.name), default=None)


def env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """``KEY=value`` lines of a systemd EnvironmentFile (no quoting used in ours)."""
    settings = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip()
    return settings


def exec_start(unit: Path, instance: str, runtime: Path) -> list[str]:
    """A unit's ``ExecStart`` for ``instance`` (``%i``), with the installed virtualenv's
    programs taken from this one and ``/run`` moved to ``runtime``."""
    line = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    command = line.removeprefix("ExecStart=").replace("%i", instance)
    command = command.replace(INSTALLED_BIN, f"{BIN}/").replace("/run/", f"{runtime}/")
    return shlex.split(command)


def procfile(name: str) -> list[str]:
    """The command of process type ``name`` in ``deploy/Procfile`` (no shell variables)."""
    line = next(line for line in PROCFILE.read_text().splitlines()
                if line.startswith(f"{name}:"))
    argv = shlex.split(line.partition(":")[2])
    assert not any("$" in arg for arg in argv), argv
    return [str(BIN / argv[0]), *argv[1:]]


def _blocks(text: str) -> list[str]:
    """The top-level ``name { ... }`` blocks of an nginx file, comments removed."""
    text = re.sub(r"#[^\n]*", "", text)
    blocks, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                blocks.append(text[start:index + 1].strip())
                start = index + 1
    return blocks


def render_site(web_ports: list[int], listen_port: int) -> str:
    """deploy/nginx/pointpass.conf for the test: its upstream with ``web_ports``, and its
    HTTPS server block unchanged but for TLS (dropped: plain HTTP on ``listen_port``)."""
    blocks = _blocks(NGINX_SITE.read_text())
    upstream = next(block for block in blocks if block.startswith("upstream "))
    servers = re.findall(r"server 127\.0\.0\.1:\d+", upstream)
    assert len(servers) == len(web_ports), upstream
    for old, port in zip(servers, web_ports, strict=True):
        upstream = upstream.replace(old, f"server 127.0.0.1:{port}", 1)
    https = next(block for block in blocks if re.search(r"listen 443 ssl", block))
    kept = [line for line in https.splitlines()
            if not re.match(r"\s*(listen|ssl_\w+|add_header Strict-Transport-Security)\b", line)]
    kept.insert(1, f"    listen 127.0.0.1:{listen_port};")
    return upstream + "\n\n" + "\n".join(kept) + "\n"


def nginx_conf(site: str, workdir: Path) -> Path:
    """A main nginx.conf around ``site`` that keeps everything in ``workdir``."""
    temp = workdir / "nginx-temp"
    temp.mkdir(parents=True)
    user = ""
    if os.geteuid() == 0:  # workers drop to nobody: give them the temp directories
        nobody = pwd.getpwnam("nobody")
        user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
        os.chown(temp, nobody.pw_uid, nobody.pw_gid)
    conf = workdir / "nginx.conf"
    conf.write_text(f"""{user}
worker_processes 2;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {workdir}/nginx-access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{site}
}}
""")
    return conf


class PostgresCluster:
    """A cluster made with ``initdb`` in a temporary directory, on a spare port."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="pointpass-scale-pg-"))
        self.root.chmod(0o755)  # the postgres user must reach its data directory
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.as_root = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_root:
            command = ["runuser", "-u", PG_USER, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> PostgresCluster:
        if self.as_root:
            user = pwd.getpwnam(PG_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c fsync=off "
                   "-c synchronous_commit=off -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                  "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop ``process`` and everything in its session (started with start_new_session)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path.name}: missing)"
    return f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
