"""Short codes typed at an enrolled till: guessing from one device locks that device (whoever
signs in on it), and no answer names a card."""

from __future__ import annotations

import json
import random
from typing import Any

from flask.testing import FlaskClient

from passes.shortcode import ALPHABET
from tests.factories import ApiClient, card_short_code, create_card
from tests.redemption.test_staff_pages import page_token
from tests.staff.conftest import Till

LOCKED = "urn:pointpass:problem:short-code-locked"


def _signed_in(till: Till, client: FlaskClient, member: dict[str, Any]) -> str:
    assert till.type_pin(client, member["id"], "2468").status_code == 303
    return page_token(client)


def _scan(client: FlaskClient, token: str, code: str) -> Any:
    return client.post("/staff/scan", json={"code": code}, headers={"X-CSRFToken": token})


def _random_code(rng: random.Random) -> str:
    text = "".join(rng.choice(ALPHABET) for _ in range(12))
    return f"{text[:4]}-{text[4:8]}-{text[8:]}"


def test_twenty_random_short_codes_from_one_device_lock_it_and_reveal_no_card(
        app: Any, api: ApiClient, till: Till, program: dict[str, Any]) -> None:
    location = till.location(program)
    siti = till.add_staff("Siti", "2468", location)
    ana = till.add_staff("Ana", "2468", location)
    card = create_card(api, program, name="Budi Santoso", email="budi@example.com")
    serial = card["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 250}).status_code == 201
    real = card_short_code(app, serial)

    phone = app.test_client()
    till.enrol(phone, location)
    token = _signed_in(till, phone, siti)
    rng = random.Random(15)
    answers = [_scan(phone, token, _random_code(rng)) for _ in range(20)]
    statuses = [a.status_code for a in answers]
    # The tenth failure locks: it and every guess after it answer 429.
    assert statuses == [422] * 9 + [429] * 11, statuses
    for answer in answers:
        # Everything but the request's own random id, whose hex digits may well contain "250"
        # (a CI run failed on exactly that).
        body = {k: v for k, v in answer.json.items() if k != "request_id"}
        text = json.dumps(body)
        assert serial not in text and "Budi" not in text and "250" not in text, text
        assert answer.content_type == "application/problem+json"
    assert answers[-1].json["type"] == LOCKED
    assert int(answers[-1].headers["Retry-After"]) > 0
    # Locked, the card's real code is refused too: guessing right does not pay.
    assert _scan(phone, token, real).status_code == 429

    # Another member on the same device is locked out as well: the device is.
    phone.post("/staff/logout", headers={"X-CSRFToken": token})
    token = _signed_in(till, phone, ana)
    assert _scan(phone, token, real).json["type"] == LOCKED

    # The same member on another device is not: the lock is the device's and Siti's only.
    other = app.test_client()
    till.enrol(other, location)
    token = _signed_in(till, other, ana)
    scanned = _scan(other, token, real.lower().replace("-", " "))
    assert scanned.status_code == 200, scanned.json
    assert scanned.json["card"]["serial_number"] == serial
