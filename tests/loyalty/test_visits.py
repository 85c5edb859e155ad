"""The visit listeners (app.loyalty.visits): told once per earn and redemption, in the
visit's transaction, never for a retry, with where and by whom."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import bindparam, select

from app import dbutil
from app.loyalty import visits
from app.loyalty.ledger import PostingTransaction
from app.loyalty.models import EntryKind, LedgerEntry
from tests.factories import ApiClient, card_code

_ENTRY_POINTS = dbutil.DriverStatement(
    lambda _dialect: select(LedgerEntry.points).where(LedgerEntry.id == bindparam("id")))


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[visits.Visit, int]] = []
        self.fail = False

    def __call__(self, p: PostingTransaction, visit: visits.Visit) -> None:
        # Inside the visit's transaction: the entry is there to read.
        (points,) = p.tx.first(_ENTRY_POINTS, {"id": visit.entry_id})
        self.seen.append((visit, points))
        if self.fail:
            raise RuntimeError("listener failed")



@pytest.fixture
def recorder() -> Iterator[Recorder]:
    listener = Recorder()
    visits.on_visit(listener)
    yield listener
    visits.forget(listener)


def test_earns_and_redemptions_are_visits_once(app: Any, api: ApiClient, keys: dict[str, str],
                                               program: dict[str, Any], card: dict[str, Any],
                                               recorder: Recorder) -> None:
    serial = card["serial_number"]
    location = api.post(f"/api/v1/programs/{program['id']}/locations",
                        json={"name": "Kemang", "latitude": -6.26, "longitude": 106.81}).json
    body = {"amount": 50_000_000, "currency": "IDR", "location_id": location["id"]}
    first = api.post(f"/api/v1/cards/{serial}/earn", json=body, headers={"Idempotency-Key": "e1"})
    assert first.status_code in (200, 201), first.json
    again = api.post(f"/api/v1/cards/{serial}/earn", json=body, headers={"Idempotency-Key": "e1"})
    assert again.json == first.json  # a retry: no second visit
    assert len(recorder.seen) == 1
    visit, points = recorder.seen[0]
    assert visit.kind is EntryKind.EARN and visit.location_id == location["id"]
    assert points == first.json["entry"]["points"]

    reward = api.post(f"/api/v1/programs/{program['id']}/rewards",
                      json={"name": "Coffee", "points_cost": 10}).json
    staff = api.as_(keys["staff"])
    scan = staff.post("/api/v1/scans", json={"code": card_code(app, serial)}).json
    redeemed = staff.post("/api/v1/redemptions",
                          json={"scan_id": scan["scan_id"], "reward_id": reward["id"]},
                          headers={"Idempotency-Key": "r1"})
    assert redeemed.status_code == 201, redeemed.json
    assert len(recorder.seen) == 2
    visit, points = recorder.seen[1]
    assert (visit.kind, visit.reward_id, visit.redemption_id, points) == (
        EntryKind.REDEEM, reward["id"], redeemed.json["id"], -10)


def test_a_failing_listener_rolls_the_visit_back(app: Any, api: ApiClient, card: dict[str, Any],
                                                 recorder: Recorder) -> None:
    serial = card["serial_number"]
    recorder.fail = True
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5}).status_code == 500
    assert len(recorder.seen) == 1  # the listener ran, then failed
    recorder.fail = False
    assert api.get(f"/api/v1/cards/{serial}").json["balance"] == card["balance"]
