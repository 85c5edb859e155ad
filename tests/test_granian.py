"""The documented granian command (README, Deployment: the PassKit tier) serves ``wsgi:app``:
Wallet's requests through the fast path and the Flask views alike, the same bytes as the app
answers in process."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.factories import admin_api, apple_settings, make_app, settle
from tests.served import BIN, ROOT, service_env
from tests.wallet.apple.test_update_resume import _cards_with_phones

# The documented command, with one worker to spare the test machine.
GRANIAN = ["--interface", "wsgi", "--http", "1", "--no-ws", "--workers", "1",
           "--blocking-threads", "4", "wsgi:app"]


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


@pytest.mark.postgres
def test_granian_serves_wallet_through_the_fast_path_and_the_views(
        postgres_database: Any, tmp_path: Path, free_port: Any) -> None:
    for app in make_app(postgres_database, tmp_path):
        api = admin_api(app)
        program, [phone] = _cards_with_phones(app, api, 1)
        settle(app)
        api.request("PATCH", f"/api/v1/programs/{program['id']}",
                    json={"background_color": "#123524"})
        settle(app)
        [serial] = phone.changed()
        env = {**service_env(tmp_path, app.config["SQLALCHEMY_DATABASE_URI"],
                             app.config["SECRET_KEY"]),
               "POINTPASS_INSTANCE_PATH": str(app.instance_path),
               **{f"POINTPASS_{name}": value for name, value in apple_settings().items()}}
        port = free_port()
        errors = tmp_path / "granian.log"
        with errors.open("wb") as err:
            proc = subprocess.Popen([BIN / "granian", "--host", "127.0.0.1", "--port",
                                     str(port), *GRANIAN], env=env, cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=err)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if _get(base + "/healthz", {})[0] == 200:
                        break
                except OSError:
                    pass
                assert proc.poll() is None, errors.read_text()
                assert time.monotonic() < deadline, "granian did not answer"
                time.sleep(0.2)
            listing = f"/passkit/v1/devices/{phone.device}/registrations/{phone.pass_type}"
            status, body = _get(base + listing, {})
            assert status == 200 and serial.encode() in body
            pass_url = f"/passkit/v1/passes/{phone.pass_type}/{serial}"
            built = _get(base + pass_url, phone.auth(serial))  # the view builds it
            assert built[0] == 200 and built[1][:2] == b"PK"
            assert _get(base + pass_url, phone.auth(serial)) == built  # the stored one
            assert app.test_client().get(pass_url, headers=phone.auth(serial)).data == built[1]
            assert _get(base + pass_url, {"Authorization": "ApplePass wrong"})[0] == 401
            assert _get(base + "/api/v1/no-such-thing", {})[0] == 404  # a Flask view
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
