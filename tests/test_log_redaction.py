"""No log line the service writes holds a secret: card page and pass download tokens (in
request lines, ``Referer`` headers and the app's own error lines), credentials in headers.

The card page (``/card/<serial>/<token>``) shows the current redemption code and the pass
download (``/wallet/apple/<serial>/<token>.pkpass``) gives the pass with its Apple web service
``authenticationToken``: anyone reading a log holding them could use the card.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app import create_app, logs, requestid
from app.config import ConfigError
from app.enrollment.links import card_page_path
from app.extensions import db
from app.wallet.apple.pass_files import download_token
from tests.factories import apple_settings
from tests.served import service_env, start_gunicorn, stop

SECRET_KEY = "log-redaction-secret-" + "k" * 30


def _secret_urls(serial: str, **config: Any) -> tuple[str, str]:
    """(card page path, pass download path) of ``serial`` under ``SECRET_KEY``."""
    app = create_app({"SECRET_KEY": SECRET_KEY, "ENV": "testing", "TESTING": True, **config})
    with app.app_context():
        paths = (card_page_path(serial),
                 f"/wallet/apple/{serial}/{download_token(serial)}.pkpass")
        db.engine.dispose()
    return paths


def _demo_card(**config: Any) -> str:
    """Migrate the database and make the demo program; the sample card's serial."""
    from flask_migrate import upgrade

    from app.cli.demo import create_demo

    app = create_app({"SECRET_KEY": SECRET_KEY, "ENV": "testing", "TESTING": True, **config})
    with app.app_context():
        upgrade()
        serial = create_demo().card.serial_number
        db.session.remove()
        db.engine.dispose()
    return serial


def _tokens(card_path: str, pass_path: str) -> list[str]:
    return [card_path.rsplit("/", 1)[1], pass_path.rsplit("/", 1)[1].removesuffix(".pkpass")]


# The service in-process: its own log lines (caplog sees every record of the process).

@pytest.fixture
def unreachable_app(tmp_path: Path, free_port: Any) -> Iterator[Any]:
    """The service (Apple Wallet on) with a PostgreSQL server that is not running."""
    app = create_app({
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/pointpass",
        "SECRET_KEY": SECRET_KEY, "ENV": "testing", "TESTING": True,
        "INSTANCE_PATH": tmp_path / "instance", **apple_settings(),
    })
    yield app
    with app.app_context():
        db.engine.dispose()


def test_database_unavailable_lines_hold_no_token(unreachable_app: Any,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with unreachable_app.app_context():
        card_path = card_page_path("PPLOG1")
        pass_path = f"/wallet/apple/PPLOG1/{download_token('PPLOG1')}.pkpass"
    client = unreachable_app.test_client()
    caplog.set_level(logging.INFO)
    for path in (card_path, pass_path, card_path + "?lang=th"):
        response = client.get(path, headers={"Referer": "https://pointpass.test" + card_path})
        assert response.status_code == 503, path

    lines = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(lines) == 3
    assert lines[0].startswith("database unavailable on GET /card/PPLOG1/[redacted]: ")
    assert lines[1].startswith("database unavailable on GET /wallet/apple/PPLOG1/"
                               "[redacted].pkpass: ")
    for token in _tokens(card_path, pass_path):
        assert token not in caplog.text
        assert not any(token in r.getMessage() for r in caplog.records)


def test_any_logger_and_traceback_is_redacted(app: Any,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Lines from other loggers (a library, gunicorn's) and exception tracebacks too."""
    with app.app_context():
        card_path = card_page_path("PPLOG2")
        pass_url = f"https://pointpass.test/wallet/apple/PPLOG2/{download_token('PPLOG2')}.pkpass"
    key = "pp_" + "Q" * 43
    code = "PP1:PPLOG2:1A:ABCDEFGHIJKLMNOPQRSTUVWX"
    caplog.set_level(logging.INFO)
    library = logging.getLogger("some.library")
    library.warning("fetched %s (referer %s)", pass_url, card_path)
    library.info("headers: %r", {"Authorization": f"Bearer {key}", "X-Code": code})
    try:
        raise ValueError(f"cannot open {pass_url}")
    except ValueError:
        logging.getLogger("gunicorn.error").exception("Error handling request %s", card_path)

    text = caplog.text
    for secret in [*_tokens(card_path, pass_url), key[3:], code.rsplit(":", 1)[1]]:
        assert secret not in text
    assert "referer /card/PPLOG2/[redacted])" in text
    assert "/wallet/apple/PPLOG2/[redacted].pkpass" in text
    assert "'Bearer [redacted]'" in text and "PP1:PPLOG2:1A:[redacted]" in text
    assert "ValueError: cannot open https://pointpass.test/wallet/apple/PPLOG2/[redacted]" in text
    # Lines with nothing to hide are left as they were logged.
    library.info("earned %d points on %s", 5, "/api/v1/cards/PPLOG2/earn")
    assert caplog.records[-1].getMessage() == "earned 5 points on /api/v1/cards/PPLOG2/earn"


def test_outside_text_cannot_forge_a_line_from_any_logger(
        app: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Control, separator and bidi characters in a logged value are escaped, whoever logs."""
    caplog.set_level(logging.INFO)
    forged = "Ayu\n2026-11-28 ERROR pointpass.auth: FORGED\x1b[31m \u202eevil \\"
    logging.getLogger("some.library").warning("member %s joined (%d)", forged, 7)
    message = caplog.records[-1].getMessage()
    assert message == ("member Ayu\\n2026-11-28 ERROR pointpass.auth: FORGED\\x1b[31m "
                       "\\u202eevil \\\\ joined (7)")


def test_json_lines_parse_and_stay_redacted_and_escaped(
        app: Any, caplog: pytest.LogCaptureFixture) -> None:
    """POINTPASS_LOG_FORMAT=json: one object per line, as redacted and escaped as text."""
    with app.app_context():
        card_path = card_page_path("PPLOG4")
    caplog.set_level(logging.INFO)
    library = logging.getLogger("some.library")
    forged = 'Ayu\n{"level": "ERROR"}\u2028\x1b[31m'
    with requestid.bound("req-json-1"):
        library.warning("member %s opened %s", forged, card_path)
        try:
            raise ValueError(f"cannot open {card_path}")
        except ValueError:
            library.exception("failed")
    library.info("outside a request \u00e9")
    formatter = logs.formatter(logs.log_format("json"))
    lines = [formatter.format(record) for record in caplog.records[-3:]]
    for line in lines:
        assert line.isascii() and len(line.splitlines()) == 1
    opened, failed, outside = map(json.loads, lines)
    assert opened["message"] == ('member Ayu\\n{"level": "ERROR"}\\u2028\\x1b[31m opened '
                                 "/card/PPLOG4/[redacted]")
    assert (opened["level"], opened["logger"], opened["request_id"]) == (
        "WARNING", "some.library", "req-json-1")
    assert datetime.fromisoformat(opened["time"]).utcoffset() == timedelta(0)
    assert "exception" not in opened
    assert failed["request_id"] == "req-json-1"
    assert "ValueError: cannot open /card/PPLOG4/[redacted]" in failed["exception"]
    assert card_path.rsplit("/", 1)[1] not in "".join(lines)
    assert (outside["message"], outside["request_id"]) == ("outside a request \u00e9", "-")


def test_text_lines_carry_the_request_id(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with requestid.bound("req-text-1"):
        logging.getLogger("some.library").info("inside")
    logging.getLogger("some.library").info("outside")
    formatter = logs.formatter(logs.log_format(None))
    inside, outside = (formatter.format(record) for record in caplog.records[-2:])
    assert inside.endswith(" INFO some.library [req-text-1]: inside")
    assert outside.endswith(" INFO some.library [-]: outside")


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="POINTPASS_LOG_FORMAT must be 'text' or 'json'"):
        create_app({"SECRET_KEY": SECRET_KEY, "ENV": "testing", "TESTING": True,
                    "INSTANCE_PATH": tmp_path / "instance", "LOG_FORMAT": "xml"})


def test_database_errors_hold_no_parameters(app: Any) -> None:
    """An unexpected error's traceback is logged with the database's error message, which
    would otherwise list the statement's parameters (tokens, key hashes)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with app.app_context(), pytest.raises(DBAPIError) as failure:
        db.session.execute(text("INSERT INTO no_such_table (token) VALUES (:token)"),
                           {"token": "secret-token-in-a-parameter"})
    assert "no_such_table" in str(failure.value)
    assert "secret-token-in-a-parameter" not in str(failure.value)


# The documented gunicorn command: its access log and error log.

def _get(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_gunicorn_logs_hold_no_token(tmp_path: Path, free_port: Any) -> None:
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'service.db'}", SECRET_KEY)
    config = {"DATABASE_URL": env["POINTPASS_DATABASE_URL"], "INSTANCE_PATH": tmp_path / "instance"}
    serial = _demo_card(**config)
    card_path, pass_path = _secret_urls(serial, **config)
    port = free_port()
    proc, access, errors = start_gunicorn(tmp_path, port, env, name="sqlite")
    try:
        base = f"http://127.0.0.1:{port}"
        card_url = base + card_path
        assert _get(card_url + "?lang=th", {}) == 200
        # The card page's own links send it as the Referer (same-origin policy).
        assert _get(base + pass_path, {"Referer": card_url}) == 200
        assert _get(base + "/static/staff/scanner.js", {"Referer": card_url}) == 200
    finally:
        stop(proc)
    access_log, error_log = access.read_text(), errors.read_text()
    for token in _tokens(card_path, pass_path):
        assert token not in access_log
        assert token not in error_log
    assert f'"GET /card/{serial}/[redacted]?lang=th HTTP/1.1" 200' in access_log
    assert (f'"GET /wallet/apple/{serial}/[redacted].pkpass HTTP/1.1" 200 '
            in access_log)
    assert f'"http://127.0.0.1:{port}/card/{serial}/[redacted]"' in access_log


def test_gunicorn_error_log_and_custom_access_format_hold_no_secret(tmp_path: Path,
                                                                    free_port: Any) -> None:
    """The database is down: the app's 503 lines name the URL. And a deployer's access log
    format printing the path, query, Authorization and Cookie headers stays clean."""
    env = service_env(tmp_path, f"postgresql://postgres@127.0.0.1:{free_port()}/pointpass",
                      SECRET_KEY)
    card_path, pass_path = _secret_urls("PPLOG3", DATABASE_URL=env["POINTPASS_DATABASE_URL"],
                                        INSTANCE_PATH=tmp_path / "instance")
    port = free_port()
    log_format = ('%(h)s "%(r)s" %(s)s %(U)s?%(q)s "%(f)s" "%({Authorization}i)s" '
                  '"%({cookie}i)s" "%({set-cookie}o)s"')
    proc, access, errors = start_gunicorn(tmp_path, port, env, "--access-logformat", log_format,
                                     name="down")
    apple_token, session = "a" * 40, "session-cookie-value-that-signs-in-staff"
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Referer": base + card_path, "Authorization": f"ApplePass {apple_token}",
                   "Cookie": f"session={session}"}
        assert _get(base + card_path, headers) == 503
        assert _get(base + pass_path + "?next=" + card_path.replace("/", "%2F"), headers) == 503
    finally:
        stop(proc)
    access_log, error_log = access.read_text(), errors.read_text()
    for secret in [*_tokens(card_path, pass_path), apple_token, session]:
        assert secret not in access_log
        assert secret not in error_log
    assert "database unavailable on GET /card/PPLOG3/[redacted]:" in error_log
    assert "database unavailable on GET /wallet/apple/PPLOG3/[redacted].pkpass:" in error_log
    assert '"[redacted]" "[redacted]"' in access_log  # Authorization and Cookie
    assert "/wallet/apple/PPLOG3/[redacted].pkpass?next=%2Fcard%2FPPLOG3%2F[redacted] " \
        in access_log
