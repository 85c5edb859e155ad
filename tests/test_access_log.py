"""The documented gunicorn command (``-c python:app.gunicorn_conf``, no other logging flag)
writes an access log to standard output with each request's id and response time, and the
app's lines on standard error carry the id; ``POINTPASS_LOG_FORMAT=json`` makes every line of
both a JSON object."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.served import service_env, start_gunicorn, stop

SECRET_KEY = "access-log-secret-" + "k" * 30
GENERATED = re.compile(r"[0-9a-f]{32}")


def _call(url: str, headers: dict[str, str], body: dict[str, Any] | None = None
          ) -> tuple[int, str, bytes]:
    """(status, X-Request-Id, body) of a GET, or a JSON POST when ``body`` is given."""
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers = {**headers, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.headers["X-Request-Id"], response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.headers["X-Request-Id"], error.read()


def _serve(tmp_path: Path, free_port: Any, name: str, **settings: str) -> tuple[Any, str, Path,
                                                                                 Path]:
    env = {**service_env(tmp_path, f"sqlite:///{tmp_path / 'service.db'}", SECRET_KEY),
           **settings}
    port = free_port()
    proc, access, errors = start_gunicorn(tmp_path, port, env, name=name)
    return proc, f"http://127.0.0.1:{port}", access, errors


def test_text_access_log_has_the_request_id_and_response_time(tmp_path: Path,
                                                              free_port: Any) -> None:
    proc, base, access, errors = _serve(tmp_path, free_port, "text")
    try:
        status, sent_id, body = _call(base + "/api/v1/no-such-thing", {"X-Request-Id": "ops-1"})
        assert (status, sent_id, json.loads(body)["request_id"]) == (404, "ops-1", "ops-1")
        status, made_id, _ = _call(base + "/passkit/v1/log", {}, {"logs": ["from a phone"]})
        assert status == 200 and GENERATED.fullmatch(made_id)
        status, replaced, body = _call(base + "/api/v1/no-such-thing",
                                       {"X-Request-Id": "x" * 500})
        assert GENERATED.fullmatch(replaced) and json.loads(body)["request_id"] == replaced
    finally:
        stop(proc)
    access_log, error_log = access.read_text(), errors.read_text()
    # The combined format, then the request id and the response time in seconds.
    assert re.search(r'"GET /api/v1/no-such-thing HTTP/1\.1" 404 \d+ "-" "Python-urllib/[\d.]+" '
                     r"ops-1 \d+\.\d{6}$", access_log, re.MULTILINE), access_log
    assert re.search(rf'"POST /passkit/v1/log HTTP/1\.1" 200 0 .* {made_id} \d+\.\d{{6}}$',
                     access_log, re.MULTILINE), access_log
    assert f" {replaced} " in access_log and "x" * 129 not in access_log
    assert f"WARNING pointpass.apple.device_log [{made_id}]: Wallet: from a phone" in error_log


def test_json_logs_of_the_documented_command(tmp_path: Path, free_port: Any) -> None:
    # An unprefixed setting: its start-up warning is a JSON line too.
    proc, base, access, errors = _serve(tmp_path, free_port, "json", POINTPASS_LOG_FORMAT="json",
                                        REDIS_URL="redis://127.0.0.1:1/0")
    try:
        status, _, _ = _call(base + "/api/v1/no-such-thing?page=2", {"X-Request-Id": "ops-2",
                                                                     "Referer": "https://x.test/"})
        assert status == 404
        status, made_id, _ = _call(base + "/passkit/v1/log", {}, {"logs": ["json phone"]})
        assert status == 200
    finally:
        stop(proc)
    # Without the start-up probe's /healthz requests: on a loaded machine a probe that timed out
    # on the client side can be logged after the test's own requests (a run failed on that).
    access_lines = [line for line in map(json.loads, access.read_text().splitlines())
                    if line.get("path") != "/healthz"]
    error_lines = [json.loads(line) for line in errors.read_text().splitlines()]
    first, second = access_lines[-2:]
    assert first["logger"] == "gunicorn.access" and first["level"] == "INFO"
    assert (first["request_id"], first["method"], first["path"], first["query"],
            first["status"], first["referer"]) == (
        "ops-2", "GET", "/api/v1/no-such-thing", "page=2", 404, "https://x.test/")
    assert isinstance(first["duration_ms"], float) and first["bytes"] > 0
    assert '"GET /api/v1/no-such-thing?page=2 HTTP/1.1" 404' in first["message"]
    assert (second["request_id"], second["status"]) == (made_id, 200)
    phone = next(line for line in error_lines if line["message"] == "Wallet: json phone")
    assert (phone["request_id"], phone["logger"], phone["level"]) == (
        made_id, "pointpass.apple.device_log", "WARNING")
    assert any(line["logger"] == "pointpass.config" and line["level"] == "WARNING"
               and line["message"].startswith("REDIS_URL is set in the environment but")
               for line in error_lines)
    # gunicorn's own error log lines too (start-up, shutdown), outside any request.
    assert any(line["logger"] == "gunicorn.error" and line["request_id"] == "-"
               for line in error_lines)
