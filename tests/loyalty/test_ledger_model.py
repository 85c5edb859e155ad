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
from sqlalchemy import func, select

from app.extensions import db
from app.loyalty.models import Card, LedgerEntry, LotConsumption, PointLot
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


def ledger_violations(app: Any, card_ids: list[int] | None = None) -> list[str]:
    """What breaks the ledger's invariants (docs/loyalty-engine.md), read from the database:
    for each card, balance == Σ entries.points == Σ remaining of its available lots and
    Σ entries.pending_points == Σ remaining of its pending lots, no negative balance; each
    lot's remaining == points − Σ its consumptions, within [0, points]; every consumption
    belongs to a debit. Empty when all hold.

    (A stand-in for ``app.loyalty.invariants.violations``, written on another branch.)
    """
    def sums(column: Any, *where: Any) -> dict[int, int]:
        """card id -> the sum of ``column`` over the rows ``where`` selects."""
        table = column.class_
        query = select(table.card_id, func.coalesce(func.sum(column), 0)).where(
            *where).group_by(table.card_id)
        return {card_id: int(total) for card_id, total in db.session.execute(query)}

    problems: list[str] = []
    with app.app_context():
        cards = select(Card.id, Card.balance)
        if card_ids is not None:
            cards = cards.where(Card.id.in_(card_ids))
        points = sums(LedgerEntry.points)
        pending = sums(LedgerEntry.pending_points)
        available_lots = sums(PointLot.remaining, PointLot.pending.is_(False))
        pending_lots = sums(PointLot.remaining, PointLot.pending.is_(True))
        for card_id, balance in db.session.execute(cards):
            got = (balance, points.get(card_id, 0), available_lots.get(card_id, 0))
            if len(set(got)) != 1 or balance < 0:
                problems.append(f"card {card_id}: balance, Σ points, Σ available lots = {got}")
            got_pending = (pending.get(card_id, 0), pending_lots.get(card_id, 0))
            if got_pending[0] != got_pending[1]:
                problems.append(f"card {card_id}: Σ pending_points, Σ pending lots = "
                                f"{got_pending}")
        consumed = dict(db.session.execute(select(
            LotConsumption.lot_id, func.sum(LotConsumption.points)).group_by(
            LotConsumption.lot_id)).all())
        lots = select(PointLot.id, PointLot.card_id, PointLot.points, PointLot.remaining)
        if card_ids is not None:
            lots = lots.where(PointLot.card_id.in_(card_ids))
        for lot_id, card_id, lot_points, remaining in db.session.execute(lots):
            if not 0 <= remaining <= lot_points or remaining != lot_points - int(
                    consumed.get(lot_id) or 0):
                problems.append(f"card {card_id} lot {lot_id}: points {lot_points}, remaining "
                                f"{remaining}, consumed {consumed.get(lot_id)}")
        credits = db.session.execute(select(LotConsumption.entry_id, LedgerEntry.kind).join(
            LedgerEntry, LedgerEntry.id == LotConsumption.entry_id).where(
            LedgerEntry.points + LedgerEntry.pending_points >= 0)).all()
        problems.extend(f"entry {entry_id} ({kind}) consumed a lot but is no debit"
                        for entry_id, kind in credits)
        db.session.rollback()
    return problems


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
