"""Scanning and redeeming through the staff API: codes rotate, nothing is spent twice."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.loyalty.models import LedgerEntry
from app.redemption.models import Redemption
from passes.barcode import TOTP_PERIOD_SECONDS, derive_key, make_code, totp_key, totp_value
from tests.factories import (
    PROGRAM,
    ApiClient,
    card_code,
    create_api_key,
    create_card,
    create_program,
    ledger_state,
    make_app,
    row_counts,
)


@pytest.fixture
def staff(api: ApiClient, keys: dict[str, str]) -> ApiClient:
    return api.as_(keys["staff"])


def test_scan_shows_card_and_affordable_rewards(app: Any, api: ApiClient, staff: ApiClient,
                                                program: dict[str, Any],
                                                funded: dict[str, Any]) -> None:
    api.post(f"/api/v1/programs/{program['id']}/rewards", json={"name": "Cake", "points_cost": 400})
    response = staff.post("/api/v1/scans", json={"code": card_code(app, funded["serial_number"])})
    assert response.status_code == 200
    body = response.json
    assert body["card"] == {"serial_number": funded["serial_number"], "member_first_name": "Siti",
                            "balance": 250, "tier": "Bronze", "points_label": "Points",
                            "program": {"id": program["id"], "name": "Kopi Test",
                                        "currency": "IDR", "background_color": "#1F2937",
                                        "foreground_color": "#FFFFFF",
                                        "label_color": "#D1D5DB"}}
    assert [r["name"] for r in body["rewards"]] == ["Coffee"]  # Cake costs 400
    assert body["expires_in"] == 300 and body["scan_id"]


def test_redeem_rotates_the_code_and_records_who_where_when(
    app: Any, api: ApiClient, staff: ApiClient, program: dict[str, Any], funded: dict[str, Any],
) -> None:
    serial = funded["serial_number"]
    location = api.post(f"/api/v1/programs/{program['id']}/locations",
                        json={"name": "Kemang", "latitude": -6.26, "longitude": 106.81}).json
    old_code = card_code(app, serial)
    scan = staff.post("/api/v1/scans", json={"code": old_code}).json
    reward = scan["rewards"][0]
    response = staff.post("/api/v1/redemptions",
                          json={"scan_id": scan["scan_id"], "reward_id": reward["id"],
                                "location_id": location["id"]},
                          headers={"Idempotency-Key": "till1-0001"})
    assert response.status_code == 201, response.json
    assert response.json["balance"] == 150
    assert response.json["reward_name"] == "Coffee"
    assert response.json["location_id"] == location["id"]
    assert ledger_state(app, serial) == (150, 150, 2)

    new_code = card_code(app, serial)
    assert new_code != old_code
    used = staff.post("/api/v1/scans", json={"code": old_code})
    assert used.status_code == 409
    assert used.json["type"].endswith("code-already-used")
    assert staff.post("/api/v1/redemptions", json={"code": old_code, "points": 10}
                      ).status_code == 409
    assert staff.post("/api/v1/scans", json={"code": new_code}).status_code == 200

    with app.app_context():
        redemption = db.session.scalar(select(Redemption))
        assert redemption.location_id == location["id"]
        assert redemption.code_version == 1
        assert redemption.staff_key_id is not None and redemption.created_at is not None


def _redeem(staff: ApiClient, body: dict[str, Any], key: str) -> Any:
    return staff.post("/api/v1/redemptions", json=body, headers={"Idempotency-Key": key})


def test_a_scan_redeems_once_whatever_the_key(app: Any, staff: ApiClient,
                                              funded: dict[str, Any]) -> None:
    """Issue 12, defect 1: one scan, four redemptions with different keys -> one 201."""
    serial = funded["serial_number"]
    scan = staff.post("/api/v1/scans", json={"code": card_code(app, serial)}).json
    body = {"scan_id": scan["scan_id"], "points": 10}
    answers = [_redeem(staff, body, f"visit-{i}") for i in range(4)]
    assert [r.status_code for r in answers] == [201, 409, 409, 409]
    assert {r.json["type"] for r in answers[1:]} == {"urn:pointpass:problem:code-already-used"}
    assert all("scan the card again" in r.json["detail"] for r in answers[1:])
    assert ledger_state(app, serial) == (240, 240, 2)  # the earn and one redemption
    assert row_counts(app, LedgerEntry, Redemption)[1] == 1

    # A retry of the first (its answer was lost) still gets the first result.
    retry = _redeem(staff, body, "visit-0")
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json == answers[0].json
    assert ledger_state(app, serial) == (240, 240, 2)

    # Scanning the card's new code opens the next redemption.
    rescan = staff.post("/api/v1/scans", json={"code": card_code(app, serial)}).json
    assert _redeem(staff, {"scan_id": rescan["scan_id"], "points": 10}, "visit-5"
                   ).json["balance"] == 230


def test_a_scan_is_spent_by_a_redemption_with_the_code(app: Any, staff: ApiClient,
                                                       funded: dict[str, Any]) -> None:
    """A scan opened before the card's code was used (here, typed in) redeems nothing."""
    serial = funded["serial_number"]
    code = card_code(app, serial)
    scan = staff.post("/api/v1/scans", json={"code": code}).json
    assert _redeem(staff, {"code": code, "points": 10}, "typed").status_code == 201
    late = _redeem(staff, {"scan_id": scan["scan_id"], "points": 10}, "scanned")
    assert late.status_code == 409
    assert late.json["type"] == "urn:pointpass:problem:code-already-used"
    assert ledger_state(app, serial) == (240, 240, 2)


def test_a_scan_of_a_rotating_code_redeems_once(app: Any, api: ApiClient, staff: ApiClient
                                                ) -> None:
    """A rotating (Google Wallet) code's scan carries its value, which the redemption uses."""
    program = api.post("/api/v1/programs", json={**PROGRAM, "slug": "rotating",
                                                 "google_rotating_barcode": True}).json
    serial = create_card(api, program, name="Ari")["serial_number"]
    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 100})
    secret = totp_key(app.config["REDEMPTION_CODE_KEY"], serial)
    code = f"PPT:{serial}:{totp_value(secret, int(time.time() // TOTP_PERIOD_SECONDS))}"
    scan = staff.post("/api/v1/scans", json={"code": code})
    assert scan.status_code == 200, scan.json
    body = {"scan_id": scan.json["scan_id"], "points": 10}
    first = _redeem(staff, body, "r-1")
    assert first.status_code == 201
    again = _redeem(staff, body, "r-2")
    assert again.status_code == 409
    assert again.json["type"] == "urn:pointpass:problem:code-already-used"
    assert staff.post("/api/v1/redemptions", json={"code": code, "points": 10}
                      ).status_code == 409  # the value itself was used too
    replay = _redeem(staff, body, "r-1")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert ledger_state(app, serial) == (90, 90, 2)


def test_idempotency_key_redeems_once(app: Any, staff: ApiClient,
                                      funded: dict[str, Any]) -> None:
    code = card_code(app, funded["serial_number"])
    body = {"code": code, "points": 100}
    first = staff.post("/api/v1/redemptions", json=body, headers={"Idempotency-Key": "k-1"})
    again = staff.post("/api/v1/redemptions", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"]
    assert ledger_state(app, funded["serial_number"]) == (150, 150, 2)


def test_reverse_gives_points_back_once(app: Any, api: ApiClient, staff: ApiClient,
                                        funded: dict[str, Any]) -> None:
    r = staff.post("/api/v1/redemptions", json={"code": card_code(app, funded["serial_number"]),
                                               "points": 100})
    path = f"/api/v1/redemptions/{r.json['id']}/reverse"
    assert staff.post(path, json={}).status_code == 403
    reversed_ = api.post(path, json={"reason": "wrong item"})
    assert reversed_.status_code == 201
    assert reversed_.json == {"serial_number": funded["serial_number"], "balance": 250,
                              "points": 100}
    assert api.post(path, json={}).status_code == 409
    assert api.post("/api/v1/redemptions/9999/reverse", json={}).status_code == 404
    assert ledger_state(app, funded["serial_number"]) == (250, 250, 3)


def test_voided_card_is_410(app: Any, api: ApiClient, staff: ApiClient,
                            funded: dict[str, Any]) -> None:
    code = card_code(app, funded["serial_number"])
    api.post(f"/api/v1/cards/{funded['serial_number']}/void", json={"reason": "stolen"})
    assert staff.post("/api/v1/scans", json={"code": code}).status_code == 410
    assert staff.post("/api/v1/redemptions", json={"code": code, "points": 5}).status_code == 410


BAD = [
    ("forged code", "staff", "/api/v1/scans", {"code": "PP1:ABCDEF:1:" + "A" * 24}, 422),
    ("garbage code", "staff", "/api/v1/scans", {"code": "hello"}, 422),
    ("code too long", "staff", "/api/v1/scans", {"code": "x" * 201}, 422),
    ("no code", "staff", "/api/v1/scans", {}, 422),
    ("pos may not scan", "pos", "/api/v1/scans", {"code": "x"}, 403),
    ("no auth", None, "/api/v1/scans", {"code": "x"}, 401),
    ("forged scan id", "staff", "/api/v1/redemptions", {"scan_id": "abc", "points": 5}, 422),
    ("both scan and code", "staff", "/api/v1/redemptions",
     {"scan_id": "abc", "code": "x", "points": 5}, 422),
    ("neither reward nor points", "staff", "/api/v1/redemptions", {"code": "{code}"}, 422),
    ("points as string", "staff", "/api/v1/redemptions", {"code": "{code}", "points": "5"}, 422),
    ("negative points", "staff", "/api/v1/redemptions", {"code": "{code}", "points": -5}, 422),
    ("huge points", "staff", "/api/v1/redemptions", {"code": "{code}", "points": 10**20}, 422),
    ("unknown reward", "staff", "/api/v1/redemptions", {"code": "{code}", "reward_id": 999}, 422),
    ("unknown location", "staff", "/api/v1/redemptions",
     {"code": "{code}", "points": 5, "location_id": 999}, 422),
    ("insufficient", "staff", "/api/v1/redemptions", {"code": "{code}", "points": 251}, 409),
    ("unknown card, genuine signature", "staff", "/api/v1/scans", {"code": "{unknown}"}, 404),
]


@pytest.mark.parametrize(("role", "path", "body", "status"), [c[1:] for c in BAD],
                         ids=[c[0] for c in BAD])
def test_bad_input_changes_nothing(app: Any, api: ApiClient, keys: dict[str, str],
                                   funded: dict[str, Any], role: str | None, path: str,
                                   body: dict[str, Any], status: int) -> None:
    code = card_code(app, funded["serial_number"])
    unknown = make_code(app.config["REDEMPTION_CODE_KEY"], "0000000000000000DEAD", 1)
    filled = {k: (v.format(code=code, unknown=unknown) if isinstance(v, str) else v)
              for k, v in body.items()}
    before = row_counts(app, LedgerEntry, Redemption)
    response = api.as_(keys[role] if role else None).post(path, json=filled)
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    assert row_counts(app, LedgerEntry, Redemption) == before
    assert card_code(app, funded["serial_number"]) == code  # the code did not rotate


def test_forged_code_with_another_key_is_refused(app: Any, staff: ApiClient,
                                                 funded: dict[str, Any]) -> None:
    forged = make_code(derive_key("not our secret"), funded["serial_number"], 1)
    assert staff.post("/api/v1/scans", json={"code": forged}).status_code == 422


def test_scans_are_rate_limited_per_staff_key(database: Any, tmp_path: Any) -> None:
    for app in make_app(database, tmp_path, STAFF_RATE_LIMIT="3/minute"):
        staff_a = create_api_key(app, "staff", "a")
        staff_b = create_api_key(app, "staff", "b")
        client = ApiClient(app.test_client(), staff_a)
        statuses = [client.post("/api/v1/scans", json={"code": "x"}).status_code
                    for _ in range(4)]
        assert statuses == [422, 422, 422, 429]
        limited = client.post("/api/v1/scans", json={"code": "x"})
        assert limited.content_type == "application/problem+json"
        assert "Retry-After" in limited.headers
        assert client.as_(staff_b).post("/api/v1/scans", json={"code": "x"}).status_code == 422


def _pg_setup(app: Any) -> tuple[ApiClient, str, dict[str, Any]]:
    """An admin client, a staff key and a program (its reward costs 100), on ``pg_app``."""

    app.config["STAFF_RATE_LIMIT"] = "10000/minute"  # one staff key makes every request
    admin = create_api_key(app, "admin")
    staff_key = create_api_key(app, "staff")
    api = ApiClient(app.test_client(), admin)
    return api, staff_key, create_program(api)


def _member(api: ApiClient, program: dict[str, Any], points: int, name: str = "M") -> str:
    serial = api.post(f"/api/v1/programs/{program['id']}/members",
                      json={"name": name}).json["card"]["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": points}).status_code == 201
    return str(serial)


def test_contention_on_postgres_redeems_each_scan_once_within_the_balance(pg_app: Any) -> None:
    """200 concurrent redemptions of 10 scans (five cards can afford one, five cannot):
    exactly five succeed, one per affordable card."""
    app = pg_app
    api, staff_key, program = _pg_setup(app)
    reward_id = program["rewards"][0]["id"]
    serials = [_member(api, program, 300 if i < 5 else 50, f"M{i}") for i in range(10)]
    scans = {s: ApiClient(app.test_client(), staff_key).post(
        "/api/v1/scans", json={"code": card_code(app, s)}).json["scan_id"] for s in serials}

    barrier = threading.Barrier(40)

    def attempt(i: int) -> tuple[int, str]:
        serial = serials[i % 10]
        if i < 40:
            barrier.wait()
        r = app.test_client().post(
            "/api/v1/redemptions", json={"scan_id": scans[serial], "reward_id": reward_id},
            headers={"Authorization": f"Bearer {staff_key}", "Idempotency-Key": f"a-{i}"})
        return r.status_code, r.json.get("type", "")

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(attempt, range(200)))
    redeemed = sorted(i % 10 for i, (status, _) in enumerate(answers) if status == 201)
    assert redeemed == [0, 1, 2, 3, 4]  # each affordable card's scan once
    refusals = {problem.removeprefix("urn:pointpass:problem:")
                for status, problem in answers if status != 201}
    assert refusals <= {"code-already-used", "insufficient-points"}
    assert {status for status, _ in answers} == {201, 409}
    for i, serial in enumerate(serials):
        balance, total, entries = ledger_state(app, serial)
        assert (balance, total, entries) == ((200, 200, 2) if i < 5 else (50, 50, 1))


def test_parallel_retries_of_a_redemption_all_get_its_result(pg_app: Any) -> None:
    """Issue 12, defect 2: 20 threads send one redemption with the same Idempotency-Key and
    body at once (a client retrying after time-outs). Each gets the first result, replayed,
    never 409 "code already used"; the card is debited once. With a code and with a scan."""
    app = pg_app
    api, staff_key, program = _pg_setup(app)
    serial = _member(api, program, 1000)
    headers = {"Authorization": f"Bearer {staff_key}"}
    balance = 1000
    for trial in range(6):
        code = card_code(app, serial)
        if trial % 2:
            scan = app.test_client().post("/api/v1/scans", json={"code": code}, headers=headers)
            body = {"scan_id": scan.json["scan_id"], "points": 10}
        else:
            body = {"code": code, "points": 10}
        start = threading.Barrier(20)

        def send(_: int, body: dict[str, Any] = body, key: str = f"retry-{trial}",
                 start: threading.Barrier = start) -> tuple[int, Any, bool]:
            client = app.test_client()  # each thread its own client, as separate tills would
            start.wait()
            r = client.post("/api/v1/redemptions", json=body,
                            headers={**headers, "Idempotency-Key": key})
            return r.status_code, r.json, r.headers.get("Idempotent-Replayed") == "true"

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(send, range(20)))
        balance -= 10
        assert [status for status, _, _ in answers] == [201] * 20, \
            [(status, body.get("type")) for status, body, _ in answers if status != 201]
        assert len({json_body["id"] for _, json_body, _ in answers}) == 1
        assert {json_body["balance"] for _, json_body, _ in answers} == {balance}
        assert sum(not replayed for _, _, replayed in answers) == 1  # the rest are replays
        assert ledger_state(app, serial) == (balance, balance, trial + 2)
