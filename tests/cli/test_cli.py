"""The ``pointpass`` console script, run as a real process."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.staff.conftest import form_token

BIN = Path(sys.executable).parent


def pointpass(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([BIN / "pointpass", *args], env=env, capture_output=True, text=True,
                            timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "POINTPASS_ENV": "development",
            "POINTPASS_INSTANCE_PATH": str(tmp_path / "instance"),
            "POINTPASS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}


def test_upgrade_create_key_demo(cli_env: dict[str, str], tmp_path: Path) -> None:
    pointpass("db", "upgrade", env=cli_env)
    created = pointpass("create-key", "--role", "pos", "--name", "till 1", env=cli_env)
    key = created.stdout.strip()
    assert key.startswith("pp_") and len(key) > 40
    assert "will not be shown again" in created.stderr

    first = pointpass("demo", env=cli_env)
    second = pointpass("demo", env=cli_env)
    assert "Kopi Nusantara" in first.stdout
    serial = first.stdout.split("Sample card: ")[1].split()[0]
    assert serial in second.stdout, "demo reuses its program and sample card"

    # The printed keys work against the API.
    from app import create_app

    # TESTING: no periodic outbox sweep left running after the test (and its database).
    app = create_app({"DATABASE_URL": cli_env["POINTPASS_DATABASE_URL"], "ENV": "testing",
                      "TESTING": True, "INSTANCE_PATH": tmp_path / "instance"})
    client = app.test_client()
    r = client.get(f"/api/v1/cards/{serial}", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    assert r.json["balance"] == 140  # 120 earned and the demo's welcome gift of 20
    admin = next(line.split("key: ")[1] for line in first.stdout.splitlines() if "admin" in line)
    programs = client.get("/api/v1/programs", headers={"Authorization": f"Bearer {admin}"}).json
    assert [p["slug"] for p in programs["programs"]] == ["kopi-nusantara"]
    demo = programs["programs"][0]
    assert (demo["time_zone"], demo["points_expire_after_days"]) == ("Asia/Jakarta", 365)
    rules = client.get(f"/api/v1/programs/{demo['id']}/rules",
                       headers={"Authorization": f"Bearer {admin}"}).json
    assert sorted(r["kind"] for r in rules["rules"]) == ["multiplier", "welcome"]
    # The demo's terms and description read in each language, on the pages too.
    assert set(programs["programs"][0]["texts"]) == {"en", "id", "th", "ms"}
    thai = client.get("/join/kopi-nusantara?lang=th").get_data(as_text=True)
    assert "แต้มไม่มีมูลค่าเป็นเงินสด" in thai
    # A new visitor without a language gets the program's default language, Indonesian.
    indonesian = app.test_client().get("/join/kopi-nusantara").get_data(as_text=True)
    assert "Poin tidak memiliki nilai tunai" in indonesian

    # The demo's till: the link printed last enrols a phone, the PIN printed signs Dewi in;
    # the first run's PIN no longer works (a new one each run).
    def till_line(output: str) -> tuple[str, str]:
        line = next(x for x in output.splitlines() if x.startswith("Till at "))
        return urlsplit(line.split("open ")[1].split()[0]).path, line.rsplit("PIN ", 1)[1]

    old_pin = till_line(first.stdout)[1]
    enrol, pin = till_line(second.stdout)
    phone = app.test_client()
    page = phone.get(enrol).get_data(as_text=True)
    assert phone.post(enrol, data={"csrf_token": form_token(page)}).status_code == 303
    names = phone.get("/staff/login").get_data(as_text=True)
    member = re.search(r'href="/staff/pin/(\d+)', names)
    assert member, names
    pin_path = f"/staff/pin/{member.group(1)}"
    if old_pin != pin:
        wrong = phone.post(pin_path, data={"csrf_token": form_token(phone.get(pin_path).get_data(
            as_text=True)), "pin": old_pin})
        assert wrong.status_code == 422
    right = phone.post(pin_path, data={"csrf_token": form_token(phone.get(pin_path).get_data(
        as_text=True)), "pin": pin})
    assert right.status_code == 303 and right.headers["Location"].endswith("/staff")
    assert "Dewi" in phone.get("/staff").get_data(as_text=True)


def test_create_key_rejects_unknown_role(cli_env: dict[str, str]) -> None:
    result = pointpass("create-key", "--role", "root", "--name", "x", env=cli_env, check=False)
    assert result.returncode == 2
    assert "root" in result.stderr


def test_worker_without_redis_explains(cli_env: dict[str, str]) -> None:
    result = pointpass("worker", "--burst", env=cli_env, check=False)
    assert result.returncode != 0
    assert "POINTPASS_REDIS_URL" in result.stderr


def test_dev_certs_writes_files_once(cli_env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "certs"
    pointpass("dev-certs", str(target), env=cli_env)
    names = {p.name for p in target.iterdir()}
    assert {"wwdr.pem", "pass.pem", "pass.key", "google-service-account.json"} <= names
    assert (target / "pass.key").stat().st_mode & 0o077 == 0
    before = (target / "pass.pem").read_bytes()
    again = pointpass("dev-certs", str(target), env=cli_env, check=False)
    assert again.returncode == 1
    assert "--overwrite" in again.stderr
    assert (target / "pass.pem").read_bytes() == before, "existing files are kept"
    verify = subprocess.run(["openssl", "verify", "-CAfile", target / "wwdr.pem",
                             target / "pass.pem"], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_production_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POINTPASS_")}
    env["POINTPASS_INSTANCE_PATH"] = str(tmp_path)
    env["POINTPASS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'p.db'}"
    result = subprocess.run([sys.executable, "-c", "import wsgi"], env=env, capture_output=True,
                            text=True, cwd=Path(__file__).parents[2], timeout=60)
    assert result.returncode != 0
    assert "POINTPASS_SECRET_KEY is not set" in result.stderr


def test_gunicorn_serves_wsgi_app(tmp_path: Path, free_port: Any) -> None:
    import time
    import urllib.request

    port = free_port()
    env = {**os.environ, "POINTPASS_SECRET_KEY": secrets.token_urlsafe(48),
           "POINTPASS_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}",
           "POINTPASS_INSTANCE_PATH": str(tmp_path)}
    pointpass("db", "upgrade", env=env)
    proc = subprocess.Popen([BIN / "gunicorn", "-b", f"127.0.0.1:{port}", "wsgi:app"], env=env,
                            cwd=Path(__file__).parents[2], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200
                    assert b"Pointpass" in response.read()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
