"""Listing and revoking API keys: ``GET /api/v1/keys``, ``DELETE /api/v1/keys/<id>`` (admins),
``pointpass list-keys`` and ``pointpass revoke-key``. A revoked key is refused from its next
request in the process that revoked it; listings never show a key or its hash; the last use
of a key is recorded at most once a minute, outside the request's own transaction."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.auth import keys as api_keys
from app.cli.cli import cli
from app.extensions import db
from tests.factories import ApiClient, make_app

BIN = Path(sys.executable).parent
PROBLEM = "application/problem+json"


def key_id(app: Any, plaintext: str) -> int:
    with app.app_context():
        digest = hashlib.sha256(plaintext.encode()).hexdigest()
        found = db.session.execute(text("SELECT id FROM api_keys WHERE key_hash = :h"),
                                   {"h": digest}).scalar_one()
        db.session.rollback()
        return int(found)


def listing(api: ApiClient) -> dict[int, dict[str, Any]]:
    response = api.get("/api/v1/keys")
    assert response.status_code == 200, response.json
    return {key["id"]: key for key in response.json["keys"]}


def test_admin_lists_keys_without_the_keys(app: Any, api: ApiClient,
                                           keys: dict[str, str]) -> None:
    pos = api.as_(keys["pos"])
    assert pos.get("/api/v1/programs").status_code == 200
    response = api.get("/api/v1/keys")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    for plaintext in keys.values():
        assert plaintext not in body
        assert hashlib.sha256(plaintext.encode()).hexdigest() not in body
    listed = {key["name"]: key for key in response.json["keys"]}
    assert set(listed) == {"test admin", "test marketer", "test staff", "test pos"}
    for role, plaintext in keys.items():
        key = listed[f"test {role}"]
        assert set(key) == {"id", "name", "role", "prefix", "revoked", "created_at",
                            "last_used_at", "program_ids"}
        assert key["id"] == key_id(app, plaintext)
        assert key["role"] == role and key["revoked"] is False and key["program_ids"] is None
        assert key["prefix"] == plaintext[:10]
        assert datetime.fromisoformat(key["created_at"]) <= datetime.now(UTC)
    # Used: the admin (this request) and pos; never used: marketer and staff.
    for role in ("admin", "pos"):
        used = datetime.fromisoformat(listed[f"test {role}"]["last_used_at"])
        assert datetime.now(UTC) - used < timedelta(minutes=1)
    assert listed["test marketer"]["last_used_at"] is None
    assert listed["test staff"]["last_used_at"] is None


def test_revoked_key_is_refused_on_its_next_request(app: Any, api: ApiClient,
                                                    keys: dict[str, str]) -> None:
    pos = api.as_(keys["pos"])
    assert pos.get("/api/v1/programs").status_code == 200  # now in this process's cache
    pos_id = key_id(app, keys["pos"])

    response = api.request("DELETE", f"/api/v1/keys/{pos_id}")
    assert response.status_code == 204
    assert response.get_data() == b""
    refused = pos.get("/api/v1/programs")
    assert refused.status_code == 401
    assert refused.mimetype == PROBLEM
    assert listing(api)[pos_id]["revoked"] is True

    # Revoking again changes nothing and says so the same way.
    assert api.request("DELETE", f"/api/v1/keys/{pos_id}").status_code == 204
    assert pos.get("/api/v1/programs").status_code == 401
    others = {role: api.as_(keys[role]) for role in ("admin", "marketer", "staff")}
    for role, client in others.items():
        assert client.get("/api/v1/programs").status_code == 200, role


def test_unknown_key_is_404(api: ApiClient) -> None:
    response = api.request("DELETE", "/api/v1/keys/999999")
    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert response.json["type"] == "urn:pointpass:problem:not-found"
    assert api.request("DELETE", "/api/v1/keys/0").status_code == 404  # not an id


def test_only_admins_list_and_revoke(app: Any, api: ApiClient, keys: dict[str, str]) -> None:
    admin_id = key_id(app, keys["admin"])
    for role in ("marketer", "staff", "pos"):
        client = api.as_(keys[role])
        assert client.get("/api/v1/keys").status_code == 403, role
        response = client.request("DELETE", f"/api/v1/keys/{admin_id}")
        assert response.status_code == 403, role
        assert response.mimetype == PROBLEM
    assert api.as_(None).get("/api/v1/keys").status_code == 401
    assert api.as_(None).request("DELETE", f"/api/v1/keys/{admin_id}").status_code == 401
    assert listing(api)[admin_id]["revoked"] is False


def test_last_use_is_recorded_even_when_the_posting_rolls_back(
        app: Any, api: ApiClient, card: dict[str, Any]) -> None:
    """The last use is written in a transaction of its own, never in the request's."""
    with app.app_context():
        key, plaintext = api_keys.create("refused adjust", "admin")
        new_id = key.id
    response = api.as_(plaintext).post(f"/api/v1/cards/{card['serial_number']}/adjust",
                                       json={"points": -1_000_000, "reason": "too much"})
    assert response.status_code == 409, response.json  # insufficient points: rolled back
    used = listing(api)[new_id]["last_used_at"]
    assert used is not None
    assert datetime.now(UTC) - datetime.fromisoformat(used) < timedelta(minutes=1)


def test_last_use_is_written_at_most_once_a_minute(app: Any, api: ApiClient,
                                                   keys: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # No cache: every request reads the key, and could write its last use.
    monkeypatch.setattr(api_keys, "CACHE_SECONDS", 0.0)
    pos, pos_id = api.as_(keys["pos"]), key_id(app, keys["pos"])
    assert pos.get("/api/v1/programs").status_code == 200
    first = listing(api)[pos_id]["last_used_at"]
    assert first is not None
    for _ in range(3):
        assert pos.get("/api/v1/programs").status_code == 200
    assert listing(api)[pos_id]["last_used_at"] == first, "rewritten within the minute"

    # A minute later, the next use is recorded.
    with app.app_context():
        db.session.execute(text("UPDATE api_keys SET last_used_at = :t WHERE id = :id"),
                           {"t": datetime.now(UTC) - timedelta(minutes=2), "id": pos_id})
        db.session.commit()
    assert pos.get("/api/v1/programs").status_code == 200
    later = datetime.fromisoformat(listing(api)[pos_id]["last_used_at"])
    assert later > datetime.fromisoformat(first)


def test_cli_lists_and_revokes_keys(app: Any, api: ApiClient, keys: dict[str, str]) -> None:
    runner = app.test_cli_runner()
    pos = api.as_(keys["pos"])
    assert pos.get("/api/v1/programs").status_code == 200
    pos_id = key_id(app, keys["pos"])

    listed = runner.invoke(cli, ["list-keys"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["ID", "ROLE", "STATUS", "CREATED", "LAST", "USED", "PREFIX",
                                "PROGRAMS", "NAME"]
    rows = {int(line.split()[0]): line for line in lines[1:]}
    assert len(rows) == 4
    assert rows[pos_id].split()[1:3] == ["pos", "active"]
    assert rows[pos_id].endswith("test pos") and keys["pos"][:10] in rows[pos_id]
    assert "never" in rows[key_id(app, keys["staff"])]
    for plaintext in keys.values():
        assert plaintext not in listed.output
        assert hashlib.sha256(plaintext.encode()).hexdigest() not in listed.output

    revoked = runner.invoke(cli, ["revoke-key", str(pos_id)])
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked pos key #{pos_id} 'test pos'" in revoked.output
    assert pos.get("/api/v1/programs").status_code == 401
    again = runner.invoke(cli, ["revoke-key", str(pos_id)])
    assert again.exit_code == 0 and "already revoked" in again.output
    unknown = runner.invoke(cli, ["revoke-key", "999999"])
    assert unknown.exit_code == 1 and "no API key #999999" in unknown.output
    assert runner.invoke(cli, ["revoke-key", "0"]).exit_code == 2
    after = runner.invoke(cli, ["list-keys"]).output
    assert next(line for line in after.splitlines()
                if line.startswith(f"{pos_id} ")).split()[1:3] == ["pos", "revoked"]


def test_pointpass_commands_revoke_a_key(tmp_path: Path, sqlite_database: Any) -> None:
    """The installed ``pointpass`` entry point, as an operator runs it (on a copy of the
    session's migrated database: ``pointpass db upgrade`` has tests of its own)."""
    shutil.copyfile(sqlite_database.template, tmp_path / "cli.db")
    env = {**os.environ, "POINTPASS_ENV": "development",
           "POINTPASS_INSTANCE_PATH": str(tmp_path / "instance"),
           "POINTPASS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}

    def pointpass(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BIN / "pointpass", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    plaintext = pointpass("create-key", "--role", "staff", "--name", "till 3").stdout.strip()
    listed = pointpass("list-keys")
    assert listed.returncode == 0, listed.stderr
    assert plaintext not in listed.stdout
    (row,) = listed.stdout.splitlines()[1:]
    assert row.split()[:3] == ["1", "staff", "active"] and row.endswith("till 3")
    revoked = pointpass("revoke-key", "1")
    assert revoked.returncode == 0, revoked.stderr
    assert "Revoked staff key #1 'till 3'" in revoked.stdout
    assert pointpass("list-keys").stdout.splitlines()[1].split()[2] == "revoked"
    missing = pointpass("revoke-key", "2")
    assert missing.returncode == 1 and "no API key #2" in missing.stderr


def test_last_used_migration_goes_down_and_up(database: Any, tmp_path: Path) -> None:
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    for app in make_app(database, tmp_path):
        with app.app_context():
            api_keys.create("kept", "admin")
            downgrade(revision="0af0be3555d2")  # the revision before 4d1c7e9a2b60
            db.session.remove()
            columns = {c["name"] for c in inspect(db.engine).get_columns("api_keys")}
            assert "last_used_at" not in columns
            upgrade()
            db.session.remove()
            columns = {c["name"] for c in inspect(db.engine).get_columns("api_keys")}
            assert "last_used_at" in columns
            kept = db.session.execute(text("SELECT name, last_used_at FROM api_keys")).one()
            db.session.rollback()
            assert tuple(kept) == ("kept", None)
