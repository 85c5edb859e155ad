"""The staff scanner's sign-in and JSON endpoints through Flask's test client.

Runs on SQLite and PostgreSQL (the ``app`` fixture). The page's endpoints must answer as the
staff API does, authenticate by the session (a revoked key stops at once), demand the CSRF
header and write nothing when they refuse.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.auth import keys as api_keys
from app.extensions import db
from app.loyalty.models import LedgerEntry
from app.redemption.models import Redemption
from passes.barcode import derive_key, make_code
from tests.factories import (
    ApiClient,
    card_code,
    card_short_code,
    create_api_key,
    ledger_state,
    make_app,
    row_counts,
)


def form_token(page: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "the form has no CSRF token"
    return match.group(1)


def page_token(client: FlaskClient) -> str:
    """The CSRF token the scanner page hands its script."""
    page = client.get("/staff")
    assert page.status_code == 200, page.headers.get("Location")
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.get_data(as_text=True))
    assert match, "the scanner page has no CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, key: str, **kwargs: Any) -> Any:
    page = client.get("/staff/login", **kwargs)
    assert page.status_code == 200
    return client.post("/staff/login", data={"csrf_token": form_token(page.get_data(as_text=True)),
                                             "key": key}, **kwargs)


class Staff:
    """A signed-in browser session calling the page's JSON endpoints."""

    def __init__(self, client: FlaskClient, key: str) -> None:
        self.client = client
        assert sign_in(client, key).status_code == 303
        self.token = page_token(client)

    def post(self, path: str, json: Any, token: str | None = "page",
             headers: dict[str, str] | None = None) -> Any:
        all_headers = dict(headers or {})
        if token:
            all_headers["X-CSRFToken"] = self.token if token == "page" else token
        return self.client.post(path, json=json, headers=all_headers)

    def scan(self, code: str, **kwargs: Any) -> Any:
        return self.post("/staff/scan", {"code": code}, **kwargs)

    def redeem(self, scan_id: str, reward_id: int, key: str | None = None, **kwargs: Any) -> Any:
        headers = {"Idempotency-Key": key} if key else {}
        return self.post("/staff/redeem", {"scan_id": scan_id, "reward_id": reward_id},
                         headers=headers, **kwargs)


def key_id(app: Any, key: str) -> int:
    with app.app_context():
        principal = api_keys.authenticate(key)
        assert principal is not None
        return principal.id


@pytest.fixture
def staff(app: Any, keys: dict[str, str]) -> Staff:
    return Staff(app.test_client(), keys["staff"])


# --- Signing in ----------------------------------------------------------------------------


def test_login_page_is_translated_private_and_self_contained(app: Any) -> None:
    client = app.test_client()
    response = client.get("/staff/login?lang=th")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<html lang="th">' in page
    assert "เข้าสู่ระบบ" in page  # "Sign in"
    assert 'name="key"' in page and 'type="password"' in page
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert response.headers.getlist("Set-Cookie")  # the language choice is remembered


@pytest.mark.parametrize(("key", "status", "message"), [
    ("", 422, "Please enter your staff key."),
    ("pp_not-a-real-key", 422, "This key was not accepted. Check it and try again."),
    ("not even the prefix", 422, "This key was not accepted. Check it and try again."),
])
def test_login_refuses_a_bad_key(app: Any, keys: dict[str, str], key: str, status: int,
                                 message: str) -> None:
    client = app.test_client()
    response = sign_in(client, key)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert client.get("/staff").status_code == 303  # still signed out


@pytest.mark.parametrize("role", ["pos", "marketer"])
def test_login_refuses_keys_that_are_not_staff(app: Any, keys: dict[str, str], role: str) -> None:
    client = app.test_client()
    response = sign_in(client, keys[role])
    assert response.status_code == 403
    assert "it needs a staff key" in response.get_data(as_text=True)
    assert client.get("/staff").status_code == 303
    with client.session_transaction() as session:
        assert "staff_key_id" not in session


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_login_with_a_staff_key_keeps_its_id_not_the_key(app: Any, keys: dict[str, str],
                                                         role: str) -> None:
    client = app.test_client()
    response = sign_in(client, keys[role])
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/staff")
    with client.session_transaction() as session:
        assert session["staff_key_id"] == key_id(app, keys[role])
        assert keys[role] not in repr(dict(session))
    cookie = client.get_cookie("session")
    assert cookie is not None and keys[role] not in cookie.value
    page = client.get("/staff")
    assert page.status_code == 200
    assert f"Signed in as test {role}" in page.get_data(as_text=True)


def test_login_without_csrf_token_is_refused(app: Any, keys: dict[str, str]) -> None:
    client = app.test_client()
    response = client.post("/staff/login", data={"key": keys["staff"]})
    assert response.status_code == 400
    assert "Your session expired" in response.get_data(as_text=True)
    assert client.get("/staff").status_code == 303


@pytest.mark.parametrize("body", [[1, 2], 374, None, {"key": ["a", "b"]}],
                         ids=["list", "number", "null", "object"])
def test_login_with_a_json_body_is_refused_not_a_crash(app: Any, keys: dict[str, str],
                                                       body: Any) -> None:
    """Flask-WTF read a JSON body as the form and crashed on one that is not an object."""
    client = app.test_client()
    token = form_token(client.get("/staff/login").get_data(as_text=True))
    response = client.post("/staff/login", json=body, headers={"X-CSRFToken": token})
    assert response.status_code == 422
    assert "Please enter your staff key." in response.get_data(as_text=True)
    assert client.get("/staff").status_code == 303  # not signed in


def test_login_is_rate_limited_per_address(app: Any, keys: dict[str, str]) -> None:
    client = app.test_client()
    statuses = [sign_in(client, "pp_wrong").status_code for _ in range(10)]
    assert statuses == [422] * 10
    limited = sign_in(client, keys["staff"])
    assert limited.status_code == 429
    assert "Too many sign-in attempts" in limited.get_data(as_text=True)
    assert "Retry-After" in limited.headers
    # Another address is not held back by this one's attempts.
    other = sign_in(app.test_client(), keys["staff"],
                    environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 303


def test_scanner_page_needs_a_session_and_speaks_the_staff_language(
        app: Any, keys: dict[str, str]) -> None:
    client = app.test_client()
    response = client.get("/staff")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/staff/login")
    sign_in(client, keys["staff"])
    page = client.get("/staff", headers={"Accept-Language": "id-ID,id;q=0.9"})
    text = page.get_data(as_text=True)
    assert '<html lang="id">' in text
    assert "Pindai kartu pelanggan" in text  # "Scan the customer's card"
    assert 'src="/static/vendor/jsQR.js"' in text and 'src="/static/staff/scanner.js"' in text
    assert page.headers["Cache-Control"] == "no-store"
    # Scripts are files from this server only; the messages block is data, not code.
    assert "<script>" not in text
    assert client.get("/static/vendor/jsQR.js").status_code == 200


def test_logout_ends_the_session(app: Any, staff: Staff, funded: dict[str, Any]) -> None:
    response = staff.client.post("/staff/logout", data={"csrf_token": staff.token})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/staff/login")
    assert staff.scan(card_code(app, funded["serial_number"])).status_code == 401
    assert staff.client.get("/staff").status_code == 303


# --- The JSON endpoints --------------------------------------------------------------------


def test_json_endpoints_refuse_without_a_session(app: Any, funded: dict[str, Any]) -> None:
    client = app.test_client()
    code = card_code(app, funded["serial_number"])
    for path, body in (("/staff/scan", {"code": code}),
                       ("/staff/redeem", {"scan_id": "x", "reward_id": 1})):
        response = client.post(path, json=body, headers={"X-CSRFToken": "anything"})
        assert response.status_code == 401
        assert response.content_type == "application/problem+json"
        assert response.json["type"] == "urn:pointpass:problem:session-expired"


@pytest.mark.parametrize("token", [None, "forged-token"], ids=["missing", "forged"])
def test_json_endpoints_refuse_without_csrf(app: Any, staff: Staff, funded: dict[str, Any],
                                            token: str | None) -> None:
    code = card_code(app, funded["serial_number"])
    scan = staff.scan(code)  # with the token: works
    assert scan.status_code == 200
    before = row_counts(app, LedgerEntry, Redemption)
    for response in (staff.scan(code, token=token),
                     staff.redeem(scan.json["scan_id"], scan.json["rewards"][0]["id"],
                                  token=token)):
        assert response.status_code == 400
        assert response.content_type == "application/problem+json"
        assert response.json["type"] == "urn:pointpass:problem:csrf"
    assert row_counts(app, LedgerEntry, Redemption) == before
    assert card_code(app, funded["serial_number"]) == code


def test_revoked_key_stops_working_at_once(app: Any, staff: Staff, keys: dict[str, str],
                                           funded: dict[str, Any]) -> None:
    code = card_code(app, funded["serial_number"])
    scan = staff.scan(code)
    assert scan.status_code == 200
    with app.app_context():
        api_keys.revoke(key_id(app, keys["staff"]))
    assert staff.scan(code).status_code == 401
    refused = staff.redeem(scan.json["scan_id"], scan.json["rewards"][0]["id"], key="r-1")
    assert refused.status_code == 401
    assert staff.client.get("/staff").status_code == 303
    assert ledger_state(app, funded["serial_number"]) == (250, 250, 1)


def test_session_expires_after_the_configured_time(app: Any, staff: Staff,
                                                   funded: dict[str, Any]) -> None:
    app.config["STAFF_SESSION_SECONDS"] = -1
    assert staff.scan(card_code(app, funded["serial_number"])).status_code == 401


def test_scan_and_redeem_answer_as_the_api_does(app: Any, api: ApiClient, keys: dict[str, str],
                                                staff: Staff, funded: dict[str, Any]) -> None:
    serial = funded["serial_number"]
    code = card_code(app, serial)
    scan = staff.scan(code)
    assert scan.status_code == 200
    assert scan.headers["Cache-Control"] == "no-store"
    from_api = api.as_(keys["staff"]).post("/api/v1/scans", json={"code": code}).json
    assert {**scan.json, "scan_id": None} == {**from_api, "scan_id": None}
    assert {**scan.json["card"], "program": None} == {
        "serial_number": serial, "member_first_name": "Siti", "balance": 250, "tier": "Bronze",
        "points_label": "Points", "program": None}
    assert scan.json["card"]["program"]["currency"] == "IDR"
    reward = scan.json["rewards"][0]
    assert reward["name"] == "Coffee" and reward["points_cost"] == 100

    first = staff.redeem(scan.json["scan_id"], reward["id"], key="tap-1")
    assert first.status_code == 201, first.json
    assert set(first.json) == {"id", "serial_number", "reward_id", "reward_name", "points",
                               "balance", "tier", "location_id", "created_at",
                               "ledger_entry_id"}
    assert first.json["balance"] == 150 and first.json["reward_name"] == "Coffee"
    assert "Idempotent-Replayed" not in first.headers

    again = staff.redeem(scan.json["scan_id"], reward["id"], key="tap-1")  # a double tap
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert ledger_state(app, serial) == (150, 150, 2)
    assert row_counts(app, LedgerEntry, Redemption)[1] == 1

    with app.app_context():
        redemption = db.session.scalar(select(Redemption))
        assert redemption.staff_key_id == key_id(app, keys["staff"])
    assert card_code(app, serial) != code  # rotated once
    used = staff.scan(code)
    assert used.status_code == 409
    assert used.json["type"] == "urn:pointpass:problem:code-already-used"


def test_a_scan_redeems_once(app: Any, staff: Staff, funded: dict[str, Any]) -> None:
    """The page's redemptions use up their scan, as the API's do (issue 12, defect 1)."""
    serial = funded["serial_number"]
    scan = staff.scan(card_code(app, serial)).json
    reward_id = scan["rewards"][0]["id"]
    first = staff.redeem(scan["scan_id"], reward_id, key="a")
    assert first.status_code == 201 and first.json["balance"] == 150
    before = row_counts(app, LedgerEntry, Redemption)
    second = staff.redeem(scan["scan_id"], reward_id, key="b")
    assert second.status_code == 409
    assert second.json["type"] == "urn:pointpass:problem:code-already-used"
    assert row_counts(app, LedgerEntry, Redemption) == before
    assert ledger_state(app, serial) == (150, 150, 2)
    retried = staff.redeem(scan["scan_id"], reward_id, key="a")  # the first tap's answer lost
    assert retried.status_code == 201 and retried.json == first.json
    assert retried.headers["Idempotent-Replayed"] == "true"

    # Scanning the card's new code pays for the next reward.
    rescan = staff.scan(card_code(app, serial)).json
    assert staff.redeem(rescan["scan_id"], reward_id, key="c").json["balance"] == 50


@pytest.mark.parametrize(("language", "scan_again", "scan_used"), [
    ("en", "One scan, one reward: to redeem another, scan the card again.",
     "This scan was already used. Scan the card again."),
    ("id", "Satu pindaian, satu hadiah: untuk menukar hadiah lain, pindai kartu lagi.",
     "Pemindaian ini sudah dipakai. Pindai kartu lagi."),
    ("th", "สแกนหนึ่งครั้ง แลกได้หนึ่งรางวัล หากจะแลกรางวัลอื่น ให้สแกนบัตรอีกครั้ง",
     "การสแกนนี้ถูกใช้ไปแล้ว สแกนบัตรอีกครั้ง"),
    ("ms", "Satu imbasan, satu ganjaran: untuk menebus ganjaran lain, imbas kad sekali lagi.",
     "Imbasan ini telah digunakan. Imbas kad sekali lagi."),
], ids=["en", "id", "th", "ms"])
def test_the_page_says_to_scan_again_in_each_language(app: Any, staff: Staff, language: str,
                                                      scan_again: str, scan_used: str) -> None:
    page = staff.client.get(f"/staff?lang={language}").get_data(as_text=True)
    assert f'<p id="scan-again" class="scan-again">{scan_again}</p>' in page
    messages = re.search(r'<script type="application/json" id="staff-messages">(.*?)</script>',
                         page, re.S)
    assert messages is not None
    assert json.loads(messages.group(1))["scan_used"] == scan_used


def test_voided_card_is_410(app: Any, api: ApiClient, staff: Staff,
                            funded: dict[str, Any]) -> None:
    serial = funded["serial_number"]
    code = card_code(app, serial)
    scan = staff.scan(code).json
    api.post(f"/api/v1/cards/{serial}/void", json={"reason": "stolen"})
    before = row_counts(app, LedgerEntry, Redemption)
    for response in (staff.scan(code), staff.redeem(scan["scan_id"], scan["rewards"][0]["id"])):
        assert response.status_code == 410
        assert response.json["type"] == "urn:pointpass:problem:card-voided"
    assert row_counts(app, LedgerEntry, Redemption) == before


def _forged(app: Any, serial: str) -> str:
    return make_code(derive_key("not our secret"), serial, 0)


BAD_SCANS = [
    ("forged code", lambda app, serial: _forged(app, serial), 422, "invalid-code"),
    ("garbage", lambda app, serial: "hello", 422, "invalid-code"),
    ("too long", lambda app, serial: "x" * 201, 422, "validation"),
    ("unknown card", lambda app, serial: make_code(app.config["REDEMPTION_CODE_KEY"],
                                                   "0000000000000000DEAD", 0), 404, "not-found"),
]


@pytest.mark.parametrize(("make", "status", "problem_type"), [b[1:] for b in BAD_SCANS],
                         ids=[b[0] for b in BAD_SCANS])
def test_bad_scans_change_nothing(app: Any, staff: Staff, funded: dict[str, Any], make: Any,
                                  status: int, problem_type: str) -> None:
    serial = funded["serial_number"]
    code = card_code(app, serial)
    before = row_counts(app, LedgerEntry, Redemption)
    response = staff.scan(make(app, serial))
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == f"urn:pointpass:problem:{problem_type}"
    assert row_counts(app, LedgerEntry, Redemption) == before
    assert card_code(app, serial) == code


BAD_REDEEMS = [
    ("forged scan id", {"scan_id": "abc", "reward_id": "{reward}"}, 422, "invalid-code"),
    ("unknown reward", {"scan_id": "{scan}", "reward_id": 999}, 422, "unprocessable"),
    ("reward id as text", {"scan_id": "{scan}", "reward_id": "1"}, 422, "validation"),
    ("no reward", {"scan_id": "{scan}"}, 422, "validation"),
    ("points instead", {"scan_id": "{scan}", "points": 5}, 422, "validation"),
    ("not an object", ["{scan}"], 422, "validation"),
]


@pytest.mark.parametrize(("body", "status", "problem_type"), [b[1:] for b in BAD_REDEEMS],
                         ids=[b[0] for b in BAD_REDEEMS])
def test_bad_redemptions_change_nothing(app: Any, staff: Staff, funded: dict[str, Any],
                                        body: Any, status: int, problem_type: str) -> None:
    serial = funded["serial_number"]
    code = card_code(app, serial)
    scan = staff.scan(code).json
    values = {"scan": scan["scan_id"], "reward": scan["rewards"][0]["id"]}

    def fill(value: Any) -> Any:
        if value == "{reward}":
            return values["reward"]
        return value.format(**values) if isinstance(value, str) else value

    filled = ({k: fill(v) for k, v in body.items()} if isinstance(body, dict)
              else [fill(v) for v in body])
    before = row_counts(app, LedgerEntry, Redemption)
    response = staff.post("/staff/redeem", filled, headers={"Idempotency-Key": "bad-1"})
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == f"urn:pointpass:problem:{problem_type}"
    assert row_counts(app, LedgerEntry, Redemption) == before
    assert card_code(app, serial) == code


def test_used_code_is_409_and_changes_nothing(app: Any, staff: Staff,
                                              funded: dict[str, Any]) -> None:
    serial = funded["serial_number"]
    old = card_code(app, serial)
    scan = staff.scan(old).json
    assert staff.redeem(scan["scan_id"], scan["rewards"][0]["id"], key="k").status_code == 201
    state = ledger_state(app, serial)
    new = card_code(app, serial)
    response = staff.scan(old)
    assert response.status_code == 409
    assert response.json["type"] == "urn:pointpass:problem:code-already-used"
    assert ledger_state(app, serial) == state
    assert card_code(app, serial) == new


def test_json_endpoints_are_rate_limited_per_staff_key(database: Any, tmp_path: Any) -> None:
    for app in make_app(database, tmp_path, STAFF_RATE_LIMIT="3/minute"):
        key_a, key_b = create_api_key(app, "staff", "a"), create_api_key(app, "staff", "b")
        first, second = Staff(app.test_client(), key_a), Staff(app.test_client(), key_b)
        statuses = [first.scan("x").status_code for _ in range(4)]
        assert statuses == [422, 422, 422, 429]
        redeems = [first.post("/staff/redeem", {"scan_id": "x", "reward_id": 1})
                   for _ in range(4)]
        assert [r.status_code for r in redeems] == [422, 422, 422, 429]
        limited = redeems[-1]
        assert limited.content_type == "application/problem+json"
        assert "Retry-After" in limited.headers
        assert second.scan("x").status_code == 422  # another key has its own budget


def test_a_typed_short_code_scans_and_locks_out_as_in_the_api(app: Any, api: ApiClient,
                                                              staff: Staff, keys: dict[str, str],
                                                              funded: dict[str, Any]) -> None:
    code = card_short_code(app, funded["serial_number"])
    scanned = staff.scan(f" {code.lower()} ")
    assert scanned.status_code == 200, scanned.json
    assert scanned.json["card"]["serial_number"] == funded["serial_number"]
    wrong = code[:-1] + ("A" if code[-1] != "A" else "B")
    # The page and the API count together for one staff key.
    for _ in range(5):
        assert staff.scan(wrong).status_code == 422
        assert api.as_(keys["staff"]).post("/api/v1/scans", json={"code": wrong}
                                           ).status_code in (422, 429)
    locked = staff.scan(code)
    assert locked.status_code == 429
    assert locked.json["type"] == "urn:pointpass:problem:short-code-locked"
    assert int(locked.headers["Retry-After"]) > 0
