"""Random sequences of postings through the API agree with a model of the points store.

hypothesis drives earn (points or a purchase amount), adjust, redeem (with the card's current
code or a spent one), reverse, void and retries with the same ``Idempotency-Key`` (same body,
and a different one) against two cards, and after every step compares each card (balance,
lifetime points, tier, status) with a plain-Python model, and its balance with the sum of
its ledger. Balances never go negative and nothing is spent or credited twice.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from passes.barcode import make_code
from tests.factories import (
    ApiClient,
    create_api_key,
    create_program,
    ledger_state,
    make_app,
)

STEPS = int(os.environ.get("POINTPASS_MODEL_STEPS", "40"))
EXAMPLES = int(os.environ.get("POINTPASS_MODEL_EXAMPLES", "25"))
# PROGRAM: 1 point per Rp 10.000 (1,000,000 minor units); Silver from 500 lifetime points
# earns 150% on purchases.
TIERS = [(0, "Bronze", 100), (500, "Silver", 150)]
CARD = st.integers(0, 1)  # each run enrolls two members


@dataclass
class ModelCard:
    serial: str
    balance: int = 0
    lifetime: int = 0
    version: int = 1  # the redemption code's version: moves on with every redemption
    voided: bool = False
    redemptions: dict[int, int] = field(default_factory=dict)  # id -> points, not reversed

    @property
    def tier(self) -> tuple[int, str, int]:
        return max(t for t in TIERS if t[0] <= self.lifetime)


def _machine(app: Any, keys: dict[str, str]) -> type[RuleBasedStateMachine]:
    admin = ApiClient(app.test_client(), keys["admin"])
    staff = admin.as_(keys["staff"])
    pos = admin.as_(keys["pos"])
    program = create_program(admin)
    code_key = app.config["REDEMPTION_CODE_KEY"]

    class Ledger(RuleBasedStateMachine):
        redemptions = Bundle("redemptions")  # (card, redemption id)
        keyed = Bundle("keyed")  # (card, "earn" or "adjust", body, key, first answer)

        def __init__(self) -> None:
            super().__init__()
            self.run = uuid.uuid4().hex[:8]
            self.counter = 0
            self.model: list[ModelCard] = []

        @initialize(opening=st.lists(st.integers(0, 800), min_size=2, max_size=2))
        def enroll(self, opening: list[int]) -> None:
            """Two members; each card starts with some points, so spending happens early."""
            for name, points in zip(("Siti Rahayu", "Somchai"), opening, strict=True):
                member = pos.post(f"/api/v1/programs/{program['id']}/members",
                                  json={"name": name}).json
                card = ModelCard(member["card"]["serial_number"])
                self.model.append(card)
                if points:
                    response = pos.post(f"/api/v1/cards/{card.serial}/earn",
                                        json={"points": points})
                    self._expect_posting(card, response, points, earned=True)

        def _key(self) -> str:
            self.counter += 1
            return f"{self.run}-{self.counter}"

        def _expect_posting(self, card: ModelCard, response: Any, points: int,
                            earned: bool) -> None:
            if card.voided:
                assert response.status_code == 410, response.json
                return
            if card.balance + points < 0:
                assert response.status_code == 409, response.json
                return
            assert response.status_code == 201, response.json
            card.balance += points
            if earned:
                card.lifetime += points
            assert response.json["balance"] == card.balance

        def _post(self, card: ModelCard, kind: str, body: dict[str, Any], keyed: bool) -> Any:
            """Earn or adjust ``body["points"]``; a keyed success is kept for retries."""
            key = self._key() if keyed else None
            client = pos if kind == "earn" else admin
            response = client.post(f"/api/v1/cards/{card.serial}/{kind}", json=body,
                                   headers={"Idempotency-Key": key} if key else {})
            self._expect_posting(card, response, body["points"], earned=kind == "earn")
            if key and response.status_code == 201:
                return (card, kind, body, key, response)
            return multiple()

        @rule(pick=CARD, points=st.integers(1, 400), keyed=st.booleans(), target=keyed)
        def earn_points(self, pick: int, points: int, keyed: bool) -> Any:
            return self._post(self.model[pick], "earn", {"points": points}, keyed)

        @rule(pick=CARD, amount=st.integers(1, 30_000_000))
        def earn_from_a_purchase(self, pick: int, amount: int) -> None:
            card = self.model[pick]
            points = amount * card.tier[2] // (1_000_000 * 100)
            response = pos.post(f"/api/v1/cards/{card.serial}/earn",
                                json={"amount": amount, "currency": "IDR"})
            if points == 0:  # too small to earn a point (said before the card's state)
                assert response.status_code == 422, response.json
                return
            self._expect_posting(card, response, points, earned=True)

        @rule(pick=CARD, points=st.integers(-600, 600).filter(bool), keyed=st.booleans(),
              target=keyed)
        def adjust(self, pick: int, points: int, keyed: bool) -> Any:
            return self._post(self.model[pick], "adjust", {"points": points, "reason": "model"},
                              keyed)

        @rule(pick=CARD, points=st.integers(1, 300), stale=st.booleans(), target=redemptions)
        def redeem(self, pick: int, points: int, stale: bool) -> Any:
            card = self.model[pick]
            version = card.version - 1 if stale else card.version
            response = staff.post("/api/v1/redemptions", json={
                "code": make_code(code_key, card.serial, version), "points": points},
                headers={"Idempotency-Key": self._key()})
            if card.voided:
                assert response.status_code == 410, response.json
            elif version != card.version or card.balance < points:
                assert response.status_code == 409, response.json
            else:
                assert response.status_code == 201, response.json
                card.balance -= points
                card.version += 1
                card.redemptions[response.json["id"]] = points
                assert response.json["balance"] == card.balance
                return (card, response.json["id"])
            return multiple()

        @rule(redemption=consumes(redemptions))
        def reverse(self, redemption: Any) -> None:
            card, redemption_id = redemption
            response = admin.post(f"/api/v1/redemptions/{redemption_id}/reverse", json={})
            if card.voided:
                assert response.status_code == 410, response.json
                return
            assert response.status_code == 201, response.json
            card.balance += card.redemptions.pop(redemption_id)
            assert response.json["balance"] == card.balance
            again = admin.post(f"/api/v1/redemptions/{redemption_id}/reverse", json={})
            assert again.status_code == 409

        @rule(pick=CARD)
        def void(self, pick: int) -> None:
            card = self.model[pick]
            response = admin.post(f"/api/v1/cards/{card.serial}/void", json={"reason": "lost"})
            if card.voided:
                assert response.status_code == 410, response.json
            else:
                assert response.status_code in (200, 201), response.json
                card.voided = True

        @rule(earlier=keyed, same_body=st.booleans())
        def retry(self, earlier: Any, same_body: bool) -> None:
            card, kind, body, key, first = earlier
            client = pos if kind == "earn" else admin
            sent = body if same_body else {**body, "points": body["points"] + 1}
            response = client.post(f"/api/v1/cards/{card.serial}/{kind}", json=sent,
                                   headers={"Idempotency-Key": key})
            if same_body:  # answered with the first result, applied once
                assert response.status_code == 201, response.json
                assert response.headers.get("Idempotent-Replayed") == "true"
                assert response.json["entry"] == first.json["entry"]
            else:
                assert response.status_code == 422, response.json

        @invariant()
        def cards_match_the_model(self) -> None:
            for card in self.model:
                got = admin.get(f"/api/v1/cards/{card.serial}").json
                assert (got["balance"], got["lifetime_points"], got["tier"], got["status"]) == (
                    card.balance, card.lifetime, card.tier[1],
                    "voided" if card.voided else "active")
                balance, ledger_sum, _entries = ledger_state(app, card.serial)
                assert balance == ledger_sum == card.balance >= 0

    Ledger.TestCase.settings = settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        derandomize=True, suppress_health_check=list(HealthCheck))
    return Ledger


@pytest.fixture
def model_app(database: Any, tmp_path: Path) -> Iterator[Any]:
    # One staff key makes every redemption of the run: no rate limit in the way.
    yield from make_app(database, tmp_path, STAFF_RATE_LIMIT="1000000/minute")


def test_random_postings_agree_with_the_model(model_app: Any) -> None:
    keys = {role: create_api_key(model_app, role, f"model {role}")
            for role in ("admin", "staff", "pos")}
    _machine(model_app, keys).TestCase().runTest()
