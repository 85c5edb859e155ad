"""Random sequences of postings through the API agree with a model of the points store.

hypothesis drives, against two cards and the app's clock (a FakeClock the test moves): earn
(points or a purchase amount; pending for ``pending_days`` when the run's program has them),
adjust, redeem (with the card's current code or a spent one), reverse a redemption, undo an
earn at the till (reverse it), refund part or all of a purchase (more than is left: 409),
void, the clock moving on (pending points are released and lots expire, settled by the next
spend), and retries with the same ``Idempotency-Key`` (same body, and a different one). Each
run picks the program's ``pending_days``, ``points_expire_after_days`` and
``refund_shortfall``. After every step it compares each card (balance, lifetime points,
tier, status, and its lots: points, remaining, pending) with a plain-Python model of lots
(docs/loyalty-engine.md), and checks the ledger's invariants in the database
(:func:`ledger_violations`). Balances never go negative and nothing is spent, credited or
clawed back twice.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)
from sqlalchemy import select

from app.auth.models import ApiKey
from app.errors import DomainError
from app.extensions import db
from app.loyalty import invariants
from app.loyalty.models import Card, PointLot, Program, Tier
from app.redemption import till
from app.staff.actor import TillActor
from passes.barcode import make_code
from tests.clock import FakeClock
from tests.factories import (
    ApiClient,
    create_api_key,
    create_program,
    make_app,
)

STEPS = int(os.environ.get("POINTPASS_MODEL_STEPS", "40"))
EXAMPLES = int(os.environ.get("POINTPASS_MODEL_EXAMPLES", "15"))
# PROGRAM: 1 point per Rp 10.000 (1,000,000 minor units); Silver from 500 lifetime points
# earns 150% on purchases.
TIERS = [(0, "Bronze", 100), (500, "Silver", 150)]
BIG_PURCHASE = 20_000_000  # Rp 200.000: the 1.5x rule's minimum amount
FIXED_BONUS = 10  # the fixed bonus rule's points
CARD = st.integers(0, 1)  # each run enrolls two members
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CLOCK_START = T0  # where this module's fake clock starts (tests/loyalty/conftest.py)
DAY = 86_400
# How far the clock moves in one step: within the till's 5-minute undo, past it, and days
# that reach the run's pending days (3) and expiries (20 or 60 days) exactly and beyond.
CLOCK_STEPS = [60, 400, 3_600, DAY, 3 * DAY, 7 * DAY, 20 * DAY, 25 * DAY, 61 * DAY]
_NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass
class ModelLot:
    """A lot as the model keeps it; ``purchase``: the earn whose points it holds (its own lot
    or a rule's award on it), else None."""

    number: int  # creation order: the database's lot ids follow it
    points: int
    remaining: int
    pending: bool
    available_at: datetime
    expires_at: datetime | None
    purchase: int | None = None

    def spend_key(self) -> tuple[bool, datetime, datetime, int]:
        return (self.expires_at is None, self.expires_at or _NEVER, self.available_at,
                self.number)


@dataclass
class ModelPurchase:
    """An earn (a purchase with an amount, or plain points), what it earned (its own points
    and the rules' awards on it), and what refunds and an undo did to it."""

    reference: str | None
    amount: int | None
    earned: int
    refunded: int = 0  # minor units
    settled: int = 0  # points refunds took or recorded as shortfall
    reversed: bool = False


@dataclass
class ModelCard:
    serial: str
    balance: int = 0
    pending: int = 0
    lifetime: int = 0
    version: int = 1  # the redemption code's version: moves on with every redemption
    voided: bool = False
    lots: list[ModelLot] = field(default_factory=list)
    # redemption id -> what it took from which lots ((points, expiry) in lot order), while
    # not reversed
    redemptions: dict[int, list[tuple[int, datetime | None]]] = field(default_factory=dict)
    purchases: dict[int, ModelPurchase] = field(default_factory=dict)  # earn entry id ->

    @property
    def tier(self) -> tuple[int, str, int]:
        return max(t for t in TIERS if t[0] <= self.lifetime)

    def count(self, delta: int) -> None:
        """Move the lifetime points (never below zero), as a posting that counts does."""
        self.lifetime = max(self.lifetime + delta, 0)


@dataclass
class Taken:
    """What a debit took: from available lots, from pending lots, and what it could not."""

    available: int
    pending: int
    shortfall: int
    lots: list[tuple[int, datetime | None]]  # (points, the lot's expiry) in lot order


def ledger_violations(app: Any, card_ids: list[int] | None = None) -> list[str]:
    """What breaks the ledger's invariants (docs/loyalty-engine.md), read from the database
    by :func:`app.loyalty.invariants.violations`. Empty when all hold."""
    with app.app_context():
        problems = invariants.violations(card_ids)
        db.session.rollback()
    return problems


def _machine(app: Any, keys: dict[str, str], clock: FakeClock) -> type[RuleBasedStateMachine]:
    admin = ApiClient(app.test_client(), keys["admin"])
    staff = admin.as_(keys["staff"])
    pos = admin.as_(keys["pos"])
    program = create_program(admin)
    # Two earning rules: 1.5x on big purchases (not stackable, runs first), a fixed bonus.
    for earning_rule in ({"kind": "multiplier", "name": "Big purchase 1.5x", "percent": 150,
                  "priority": 10, "stackable": False,
                  "conditions": {"min_amount": BIG_PURCHASE}},
                 {"kind": "bonus", "name": "Thanks", "points": FIXED_BONUS, "priority": 5}):
        created = admin.post(f"/api/v1/programs/{program['id']}/rules", json=earning_rule)
        assert created.status_code == 201, created.json
    code_key = app.config["REDEMPTION_CODE_KEY"]
    with app.app_context():
        pos_key = db.session.scalar(select(ApiKey).where(ApiKey.name == "model pos"))
        # The till's undo as the pos key (which makes every earn) calls it.
        at_the_till = TillActor(kind="api_key", id=pos_key.id, name=pos_key.name)
        db.session.rollback()

    class Ledger(RuleBasedStateMachine):
        redemptions = Bundle("redemptions")  # (card, redemption id)
        keyed = Bundle("keyed")  # (card, "earn" or "adjust", body, key, first answer)
        purchases = Bundle("purchases")  # (card, earn entry id) of purchases with an amount

        def __init__(self) -> None:
            super().__init__()
            self.run = uuid.uuid4().hex[:8]
            self.counter = 0
            self.lots = 0
            self.model: list[ModelCard] = []
            self.card_ids: list[int] = []
            # The pos key's last earn (card, entry id, when), which the till's undo takes back.
            self.last_earn: tuple[ModelCard, int, datetime] | None = None

        @initialize(opening=st.lists(st.integers(0, 800), min_size=2, max_size=2),
                    bought=st.lists(st.integers(1_000_000, 30_000_000), min_size=2,
                                    max_size=2),
                    pending_days=st.sampled_from([0, 3]),
                    expire_days=st.sampled_from([None, 20, 60]),
                    shortfall=st.sampled_from(["clamp", "forgive"]), target=purchases)
        def enroll(self, opening: list[int], bought: list[int], pending_days: int,
                   expire_days: int | None, shortfall: str) -> Any:
            """The run's program settings; two members, each card starting with some points,
            so spending happens early, and a purchase, so refunds do."""
            self.pending_days, self.expire_days = pending_days, expire_days
            self.shortfall = shortfall
            with app.app_context():
                row = db.session.get(Program, program["id"])
                row.pending_days, row.points_expire_after_days = pending_days, expire_days
                row.refund_shortfall = shortfall
                db.session.commit()
            for name, points in zip(("Siti Rahayu", "Somchai"), opening, strict=True):
                member = pos.post(f"/api/v1/programs/{program['id']}/members",
                                  json={"name": name}).json
                card = ModelCard(member["card"]["serial_number"])
                self.model.append(card)
                if points:
                    response = pos.post(f"/api/v1/cards/{card.serial}/earn",
                                        json={"points": points})
                    self._expect_earn(card, response, points)
                    # An available welcome too: with pending days the earn is not spendable.
                    response = admin.post(f"/api/v1/cards/{card.serial}/adjust",
                                          json={"points": points, "reason": "welcome"})
                    self._expect_adjust(card, response, points)
            with app.app_context():
                self.card_ids = list(db.session.scalars(select(Card.id).where(
                    Card.serial_number.in_([card.serial for card in self.model]))))
                db.session.rollback()
            return multiple(*(purchase for card, amount in zip(self.model, bought, strict=True)
                              for purchase in self._purchase(card, amount).values))

        # The model of lots (docs/loyalty-engine.md).

        def _now(self) -> datetime:
            return datetime.fromtimestamp(clock.now(), UTC)

        def _key(self) -> str:
            self.counter += 1
            return f"{self.run}-{self.counter}"

        def _lot(self, card: ModelCard, points: int, *, pending: bool = False,
                 expires_at: datetime | bool | None = True,
                 purchase: int | None = None) -> None:
            """A new lot; ``expires_at`` True: the program's expiry from when it is available."""
            now = self._now()
            available_at = now + timedelta(days=self.pending_days) if pending else now
            if expires_at is True:
                expires_at = None if self.expire_days is None else available_at + timedelta(
                    days=self.expire_days)
            self.lots += 1
            card.lots.append(ModelLot(self.lots, points, points, pending, available_at,
                                      expires_at or None, purchase))
            if pending:
                card.pending += points
            else:
                card.balance += points

        def _settle(self, card: ModelCard) -> None:
            """The releases, then the expiries, due now (what a debit writes first)."""
            now = self._now()
            for lot in card.lots:  # a pending lot refunded in full stays as it is
                if lot.pending and lot.remaining > 0 and lot.available_at <= now:
                    lot.pending = False
                    card.pending -= lot.remaining
                    card.balance += lot.remaining
                    card.count(lot.remaining)
                    event("a spend releases a pending lot first")
            for lot in card.lots:
                if (not lot.pending and lot.remaining > 0 and lot.expires_at is not None
                        and lot.expires_at <= now):
                    card.balance -= lot.remaining
                    lot.remaining = 0
                    event("a spend expires a lot first")

        def _debit(self, card: ModelCard, points: int, *, first: int | None = None,
                   shortfall: str | None = None, counts: bool = False) -> Taken | None:
            """Settle, then take ``points``: the lots of purchase ``first`` (pending or not)
            first, then (unless ``forgive``) available lots, soonest expiry first, then oldest.
            None, changing nothing, when they hold too little and no ``shortfall`` is given."""
            before = copy.deepcopy(card)
            self._settle(card)
            open_lots = [lot for lot in card.lots if lot.remaining > 0]
            preferred = [lot for lot in open_lots if first is not None and lot.purchase == first]
            rest = [] if shortfall == "forgive" else sorted(
                (lot for lot in open_lots if not lot.pending and lot not in preferred),
                key=ModelLot.spend_key)
            left, takes = points, []
            for lot in [*preferred, *rest]:
                taken = min(lot.remaining, left)
                if taken > 0:
                    takes.append((lot, taken))
                    left -= taken
            if left > 0 and shortfall is None:
                card.__dict__.update(before.__dict__)
                return None
            for lot, taken in takes:
                lot.remaining -= taken
            available = sum(taken for lot, taken in takes if not lot.pending)
            pending = sum(taken for lot, taken in takes if lot.pending)
            card.balance -= available
            card.pending -= pending
            if counts:
                card.count(-available)
            return Taken(available, pending, left, [
                (taken, lot.expires_at) for lot, taken in sorted(takes,
                                                                 key=lambda t: t[0].number)])

        def _bonuses(self, card: ModelCard, points: int, amount: int | None) -> list[int]:
            """The points of the rules' awards on an earn (each a ``bonus`` entry whose lot is
            the purchase's, pending with it), by the program's two rules (see ``_machine``):
            a purchase of at least Rp 200.000 earns half its points again (1.5x), and then no
            other rule; any other earn gets the fixed bonus. Refunds and undos take them back
            with the earn (``ModelPurchase.earned`` counts them)."""
            if amount is not None and amount >= BIG_PURCHASE:
                extra = points * 50 // 100
                event("a big purchase's 1.5x stops the fixed bonus")
                return [extra] if extra else []
            return [FIXED_BONUS]

        # Expectations of the API's answers.

        def _expect_earn(self, card: ModelCard, response: Any, points: int,
                         amount: int | None = None, reference: str | None = None) -> bool:
            if card.voided:
                assert response.status_code == 410, response.json
                return False
            assert response.status_code == 201, response.json
            entry_id = response.json["entry"]["id"]
            pending = self.pending_days > 0
            awards = self._bonuses(card, points, amount)
            for award in [points, *awards]:
                self._lot(card, award, pending=pending, purchase=entry_id)
                if not pending:
                    card.count(award)
            card.purchases[entry_id] = ModelPurchase(reference, amount, points + sum(awards))
            self.last_earn = (card, entry_id, self._now())
            assert response.json["balance"] == card.balance
            return True

        def _expect_adjust(self, card: ModelCard, response: Any, points: int) -> None:
            if card.voided:
                assert response.status_code == 410, response.json
            elif points > 0:
                assert response.status_code == 201, response.json
                self._lot(card, points)
            elif self._debit(card, -points) is None:
                assert response.status_code == 409, response.json
            else:
                assert response.status_code == 201, response.json
            if response.status_code == 201:
                assert response.json["balance"] == card.balance

        def _post(self, card: ModelCard, kind: str, body: dict[str, Any], keyed: bool) -> Any:
            """Earn or adjust ``body["points"]``; a keyed success is kept for retries."""
            key = self._key() if keyed else None
            client = pos if kind == "earn" else admin
            response = client.post(f"/api/v1/cards/{card.serial}/{kind}", json=body,
                                   headers={"Idempotency-Key": key} if key else {})
            if kind == "earn":
                self._expect_earn(card, response, body["points"])
            else:
                self._expect_adjust(card, response, body["points"])
            if key and response.status_code == 201:
                return (card, kind, body, key, response)
            return multiple()

        # The rules.

        @rule(pick=CARD, points=st.integers(1, 400), keyed=st.booleans(), target=keyed)
        def earn_points(self, pick: int, points: int, keyed: bool) -> Any:
            return self._post(self.model[pick], "earn", {"points": points}, keyed)

        @rule(pick=CARD, amount=st.integers(1, 30_000_000), target=purchases)
        def earn_from_a_purchase(self, pick: int, amount: int) -> Any:
            return self._purchase(self.model[pick], amount)

        def _purchase(self, card: ModelCard, amount: int) -> Any:
            """A purchase with a reference of its own; kept for refunds when it earned."""
            points = amount * card.tier[2] // (1_000_000 * 100)
            reference = self._key()
            response = pos.post(f"/api/v1/cards/{card.serial}/earn", json={
                "amount": amount, "currency": "IDR", "reference": reference})
            if points == 0:  # too small to earn a point (said before the card's state)
                assert response.status_code == 422, response.json
                return multiple()
            if self._expect_earn(card, response, points, amount, reference):
                return multiple((card, response.json["entry"]["id"]))
            return multiple()

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
            elif version != card.version or (taken := self._debit(card, points)) is None:
                assert response.status_code == 409, response.json
            else:
                assert response.status_code == 201, response.json
                card.version += 1
                card.redemptions[response.json["id"]] = taken.lots
                assert response.json["balance"] == card.balance
                return (card, response.json["id"])
            return multiple()

        @rule(redemption=consumes(redemptions))
        def reverse(self, redemption: Any) -> None:
            """Reverse a redemption: its points come back with the expiry of the lots it took
            (a lot past it expires at the next spend)."""
            card, redemption_id = redemption
            response = admin.post(f"/api/v1/redemptions/{redemption_id}/reverse", json={})
            if card.voided:
                assert response.status_code == 410, response.json
                return
            assert response.status_code == 201, response.json
            for points, expires_at in card.redemptions.pop(redemption_id):
                self._lot(card, points, expires_at=expires_at)
            assert response.json["balance"] == card.balance
            again = admin.post(f"/api/v1/redemptions/{redemption_id}/reverse", json={})
            assert again.status_code == 409

        @rule(purchase=purchases, part=st.sampled_from(["all", "half", "some", "too much"]),
              percent=st.integers(1, 100), retry=st.booleans())
        def refund(self, purchase: Any, part: str, percent: int, retry: bool) -> None:
            """Refund all, half or some of what is left of a purchase, or more than that
            (and, after all of it, anything: 409)."""
            card, entry_id = purchase
            bought = card.purchases[entry_id]
            assert bought.amount is not None
            left = bought.amount - bought.refunded
            amount = {"all": left, "half": left // 2, "some": left * percent // 100,
                      "too much": left + 1}[part] or 1
            body = {"reference": bought.reference, "amount": amount, "currency": "IDR"}
            key = self._key()
            # By the admin key: the pos key's last earn stays its last action, to undo.
            response = admin.post(f"/api/v1/cards/{card.serial}/refunds", json=body,
                                  headers={"Idempotency-Key": key})
            event(f"refund answered {response.json.get('type', response.status_code)}")
            if card.voided:
                assert response.status_code == 410, response.json
                return
            if bought.reversed:
                assert response.status_code == 409, response.json
                assert response.json["type"].endswith(":nothing-earned")
                return
            if amount > left:
                assert response.status_code == 409, response.json
                assert response.json["type"].endswith(":refund-exceeds-purchase")
                return
            assert response.status_code == 201, response.json
            event(f"refund: {part}")
            due = bought.earned * (bought.refunded + amount) // bought.amount - bought.settled
            taken = self._debit(card, due, first=entry_id, shortfall=self.shortfall,
                                counts=True)
            assert taken is not None
            bought.refunded += amount
            bought.settled += due
            got = response.json
            assert (got["clawed_back"], got["pending_clawed_back"], got["shortfall"],
                    got["balance"]) == (taken.available, taken.pending, taken.shortfall,
                                        card.balance)
            if taken.shortfall:
                event(f"refund with a shortfall ({self.shortfall})")
            if taken.pending:
                event("refund of pending points")
            assert (got["purchase"]["refunded"], got["purchase"]["left"]) == (
                bought.refunded, bought.amount - bought.refunded)
            if retry:  # the same answer, refunded once
                again = admin.post(f"/api/v1/cards/{card.serial}/refunds", json=body,
                                   headers={"Idempotency-Key": key})
                assert again.status_code == 201, again.json
                assert again.headers["Idempotent-Replayed"] == "true"
                assert again.json == got

        @precondition(lambda self: self.last_earn is not None)
        @rule(really=st.integers(0, 2))
        def undo_at_the_till(self, really: int) -> None:
            """The till's undo of the pos key's last earn, now and then (or the earn would
            rarely live to be refunded): a ``reverse`` taking back what the earn gave, less
            what refunds of it took, from its own lots first."""
            assert self.last_earn is not None
            if really:
                return
            card, entry_id, when = self.last_earn
            self.last_earn = None
            bought = card.purchases[entry_id]
            with app.app_context():
                try:
                    action = till.undo_last(at_the_till, entry_id=entry_id)
                    refused = None
                except DomainError as error:
                    refused = error.code
            left = bought.earned - bought.settled
            event(f"undo: {refused or 'done'}")
            if (self._now() - when).total_seconds() > till.UNDO_SECONDS:
                assert refused == "undo-too-late"
            elif left <= 0:
                assert refused == "nothing-to-undo"
            elif card.voided:
                assert refused == "card-voided"
            elif (taken := self._debit(card, left, first=entry_id, counts=True)) is None:
                assert refused == "insufficient-points"
            else:
                assert refused is None
                bought.reversed = True
                assert taken.available + taken.pending == left
                assert (action.points, action.balance) == (-taken.available, card.balance)

        @rule(seconds=st.sampled_from(CLOCK_STEPS))
        def time_passes(self, seconds: int) -> None:
            """Pending points become due and lots expire: the next spend settles them."""
            clock.advance(seconds)

        @rule(pick=CARD, really=st.integers(0, 9))
        def void(self, pick: int, really: int) -> None:
            """Void a card, now and then (a voided card refuses everything: 410)."""
            if really:
                return
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
            """Each card (read from the database: the answers of the steps were checked
            through the API) as the model has it, lots and all; the ledger's invariants."""
            if not self.card_ids:
                return
            cards = _cards(app, self.card_ids)
            for card in self.model:
                assert cards[card.serial] == (
                    card.balance, card.lifetime, card.tier[1],
                    "voided" if card.voided else "active",
                    [(lot.points, lot.remaining, lot.pending) for lot in card.lots])
            assert ledger_violations(app, self.card_ids) == []

    Ledger.TestCase.settings = settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        derandomize=True, suppress_health_check=list(HealthCheck))
    return Ledger


def _cards(app: Any, card_ids: list[int]) -> dict[str, tuple[Any, ...]]:
    """serial -> (balance, lifetime points, tier, status, the lots' (points, remaining,
    pending) oldest first)."""
    with app.app_context():
        cards = {row[0]: (*row[1:], []) for row in db.session.execute(
            select(Card.id, Card.serial_number, Card.balance, Card.lifetime_points, Tier.name,
                   Card.status).outerjoin(Tier, Tier.id == Card.tier_id)
            .where(Card.id.in_(card_ids)))}
        for card_id, *lot in db.session.execute(
                select(PointLot.card_id, PointLot.points, PointLot.remaining, PointLot.pending)
                .where(PointLot.card_id.in_(card_ids)).order_by(PointLot.id)):
            cards[card_id][-1].append(tuple(lot))
        db.session.rollback()
    return {serial: (balance, lifetime, tier, str(status), lots)
            for serial, balance, lifetime, tier, status, lots in cards.values()}


@pytest.fixture
def model_app(database: Any, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    # One staff key makes every redemption of the run: no rate limit in the way.
    yield from make_app(database, tmp_path, STAFF_RATE_LIMIT="1000000/minute", CLOCK=clock)


def test_random_postings_agree_with_the_model(model_app: Any, clock: FakeClock) -> None:
    keys = {role: create_api_key(model_app, role, f"model {role}")
            for role in ("admin", "staff", "pos")}
    _machine(model_app, keys, clock).TestCase().runTest()
