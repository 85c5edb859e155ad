"""Typed short codes at the till: they scan, rotate with the QR, and guessing them locks out."""

from __future__ import annotations

import random
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from app.errors import InvalidCode
from app.lockout import LockedOut
from app.redemption import shortcodes
from app.staff.actor import TillActor
from passes.shortcode import ALPHABET
from tests.factories import (
    REDIS_URL,
    ApiClient,
    card_code,
    card_short_code,
    create_api_key,
    create_card,
    create_program,
    make_app,
)

LOCKED = "urn:pointpass:problem:short-code-locked"


@pytest.fixture
def staff(api: ApiClient, keys: dict[str, str]) -> ApiClient:
    return api.as_(keys["staff"])


def _random_codes(count: int, seed: int = 15) -> list[str]:
    rng = random.Random(seed)
    return ["-".join("".join(rng.choice(ALPHABET) for _ in range(4)) for _ in range(3))
            for _ in range(count)]


def _wrong_check(code: str) -> str:
    """The same card's handle and version, another MAC: a near miss."""
    last = code[-1]
    return code[:-1] + (ALPHABET[(ALPHABET.index(last) + 1) % len(ALPHABET)])


def test_a_typed_short_code_scans_in_any_case_and_grouping(app: Any, staff: ApiClient,
                                                          funded: dict[str, Any]) -> None:
    serial = funded["serial_number"]
    code = card_short_code(app, serial)
    for typed in (code, code.lower(), code.replace("-", " "), f" {code.replace('-', '.')} ",
                  code.replace("-", "")):
        response = staff.post("/api/v1/scans", json={"code": typed})
        assert response.status_code == 200, (typed, response.json)
        assert response.json["card"]["serial_number"] == serial
        assert response.json["card"]["balance"] == 250


def test_a_rotated_cards_old_short_code_is_already_used(app: Any, staff: ApiClient,
                                                        funded: dict[str, Any]) -> None:
    serial = funded["serial_number"]
    old_short, old_qr = card_short_code(app, serial), card_code(app, serial)
    scan = staff.post("/api/v1/scans", json={"code": old_short}).json
    redeemed = staff.post("/api/v1/redemptions",
                          json={"scan_id": scan["scan_id"], "reward_id": scan["rewards"][0]["id"]},
                          headers={"Idempotency-Key": "short-0001"})
    assert redeemed.status_code == 201, redeemed.json
    new_short = card_short_code(app, serial)
    assert new_short != old_short
    for old in (old_short, old_qr):  # answered exactly as the old QR code is
        used = staff.post("/api/v1/scans", json={"code": old})
        assert used.status_code == 409
        assert used.json["type"] == "urn:pointpass:problem:code-already-used"
    assert staff.post("/api/v1/scans", json={"code": old_short}).json["detail"] == \
        staff.post("/api/v1/scans", json={"code": old_qr}).json["detail"]
    assert staff.post("/api/v1/redemptions", json={"code": old_short, "points": 10}
                      ).status_code == 409
    assert staff.post("/api/v1/redemptions", json={"code": new_short, "points": 10},
                      headers={"Idempotency-Key": "short-0002"}).status_code == 201
    # A genuine (if old) code is not a guess: none of this counted toward a lock-out.
    assert staff.post("/api/v1/scans", json={"code": card_short_code(app, serial)}
                      ).status_code == 200


def test_an_unknown_card_and_a_wrong_check_answer_alike(app: Any, staff: ApiClient,
                                                        funded: dict[str, Any]) -> None:
    right = card_short_code(app, funded["serial_number"])
    near_miss = staff.post("/api/v1/scans", json={"code": _wrong_check(right)})
    unknown = staff.post("/api/v1/scans", json={"code": _random_codes(1)[0]})
    assert near_miss.status_code == unknown.status_code == 422

    def shape(response: Any) -> tuple[Any, ...]:
        body = {k: v for k, v in response.json.items() if k not in ("request_id", "instance")}
        headers = sorted((k, v) for k, v in response.headers if k != "X-Request-Id")
        return body, headers
    assert shape(near_miss) == shape(unknown)
    assert near_miss.json["type"] == "urn:pointpass:problem:invalid-code"


def test_twenty_random_short_codes_lock_the_key_out_and_reveal_no_card(
        app: Any, api: ApiClient, staff: ApiClient, program: dict[str, Any],
        funded: dict[str, Any]) -> None:
    serial = funded["serial_number"]
    right = card_short_code(app, serial)
    other = create_card(api, program, name="Budi Santoso")
    secrets = {serial, serial[:9], other["serial_number"], other["serial_number"][:9], "Siti",
               "Budi", right, right.replace("-", ""), "balance", "serial", "member"}
    codes = [*_random_codes(19), _wrong_check(right)]
    responses = [staff.post("/api/v1/scans", json={"code": code}) for code in codes]
    statuses = [r.status_code for r in responses]
    assert statuses[:shortcodes.MAX_FAILURES - 1] == [422] * (shortcodes.MAX_FAILURES - 1)
    assert statuses[shortcodes.MAX_FAILURES - 1:] == [429] * (21 - shortcodes.MAX_FAILURES)
    locked = responses[-1]
    assert locked.json["type"] == LOCKED
    retry_after = int(locked.headers["Retry-After"])
    assert 0 < retry_after <= shortcodes.LOCK_SECONDS
    assert f"{-(-retry_after // 60)} min" in locked.json["detail"]
    for response in responses:
        seen = response.get_data(as_text=True) + repr(sorted(response.headers.items()))
        assert not any(secret in seen for secret in secrets), seen
        assert set(response.json) <= {"type", "title", "status", "detail", "instance",
                                      "request_id"}
        assert 250 not in response.json.values()  # the balance

    # Locked: even the right short code is refused, for scans and redemptions alike...
    refused = staff.post("/api/v1/scans", json={"code": right})
    assert refused.status_code == 429 and refused.json["type"] == LOCKED
    assert staff.post("/api/v1/redemptions", json={"code": right, "points": 1}
                      ).status_code == 429
    # ...while the QR code still scans, and another key still types codes.
    assert staff.post("/api/v1/scans", json={"code": card_code(app, serial)}).status_code == 200
    other_key = api.as_(create_api_key(app, "staff", "till 2"))
    assert other_key.post("/api/v1/scans", json={"code": right}).status_code == 200


def test_the_lock_is_per_actor_and_per_device(app: Any, funded: dict[str, Any]) -> None:
    serial = funded["serial_number"]
    right = card_short_code(app, serial)
    alice = TillActor(kind="staff", id=1, name="Alice", device_id=7)
    with app.test_request_context():
        for code in _random_codes(shortcodes.MAX_FAILURES - 1):
            with pytest.raises(InvalidCode):
                shortcodes.read(code, alice)
        with pytest.raises(LockedOut):
            shortcodes.read(_random_codes(1, seed=2)[0], alice)
        with pytest.raises(LockedOut):  # a right code, while locked
            shortcodes.read(right, alice)
        # Bob on the same device: the device is locked. Bob elsewhere, Alice's key on no
        # device: only the actor's own count matters.
        with pytest.raises(LockedOut):
            shortcodes.read(right, TillActor(kind="staff", id=2, name="Bob", device_id=7))
        assert shortcodes.read(right, TillActor(kind="staff", id=2, name="Bob", device_id=8)
                               )[0] == serial
        with pytest.raises(LockedOut):
            shortcodes.read(right, TillActor(kind="staff", id=1, name="Alice", device_id=8))
        assert shortcodes.read(right, TillActor(kind="api_key", id=1, name="till"))[0] == serial


@pytest.mark.redis
def test_the_lock_is_shared_through_redis_by_every_instance(database: Any,
                                                            tmp_path: Path) -> None:
    prefix = f"pointpass-test-{uuid.uuid4().hex[:8]}"
    makers = [make_app(database, tmp_path, INSTANCE_PATH=tmp_path / f"instance-{i}",
                       REDIS_URL=REDIS_URL, RATELIMIT_KEY_PREFIX=prefix) for i in range(2)]
    apps = [next(maker) for maker in makers]
    try:
        admin = ApiClient(apps[0].test_client(), create_api_key(apps[0], "admin"))
        card = create_card(admin, create_program(admin))
        right = card_short_code(apps[0], card["serial_number"])
        key = create_api_key(apps[0], "staff", "till")
        clients = [ApiClient(app.test_client(), key) for app in apps]
        statuses = [clients[i % 2].post("/api/v1/scans", json={"code": code}).status_code
                    for i, code in enumerate(_random_codes(shortcodes.MAX_FAILURES))]
        assert statuses == [422] * (shortcodes.MAX_FAILURES - 1) + [429]
        assert clients[1].post("/api/v1/scans", json={"code": right}).status_code == 429
        with Redis.from_url(REDIS_URL) as redis:
            keys = list(redis.scan_iter(f"*{prefix}:lockout:short-code:*"))
            assert keys and all(0 < redis.ttl(k) <= shortcodes.LOCK_SECONDS for k in keys)
            redis.delete(*keys)  # as when the lock has run out
        assert clients[0].post("/api/v1/scans", json={"code": right}).status_code == 200
    finally:
        for maker in reversed(makers):
            for _ in maker:
                pass


def test_an_unreachable_lock_store_refuses_short_codes_only(database: Any, tmp_path: Path,
                                                            free_port: Any) -> None:
    for app in make_app(database, tmp_path,
                        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0"):
        admin = ApiClient(app.test_client(), create_api_key(app, "admin"))
        card = create_card(admin, create_program(admin))
        staff = admin.as_(create_api_key(app, "staff", "till"))
        refused = staff.post("/api/v1/scans",
                             json={"code": card_short_code(app, card["serial_number"])})
        assert refused.status_code == 503, refused.json
        assert refused.json["type"] == "urn:pointpass:problem:lockout-unavailable"
        assert "Retry-After" in refused.headers
        assert staff.post("/api/v1/scans", json={"code": card_code(app, card["serial_number"])}
                          ).status_code == 200


def test_the_api_document_states_both_code_forms_and_the_lock_out(app: Any) -> None:
    document = app.test_client().get("/api/openapi.json").json
    schemas = document["components"]["schemas"]
    for name in ("ScanIn", "RedeemIn"):
        code = schemas[name]["properties"]["code"]
        pattern = re.compile(code["pattern"])
        assert pattern.match("k7qm 4xz9.h3pa") and pattern.match("K7QM-4XZ9-H3PA")
        assert pattern.match("PP1:9BD0DB859CECAA0E0D7C:0:" + "A" * 24)
        assert not pattern.match("K7QM-4XZ9-H3P0") and not pattern.match("98DF90D0")
        assert "short-code-locked" in code["description"]
    responses = document["paths"]["/api/v1/scans"]["post"]["responses"]
    assert {"409", "422", "429", "503"} <= set(responses)
