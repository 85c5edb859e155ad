"""The points store under concurrent requests: no overdraft, no double credit, on both databases."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import text

from app.extensions import db
from tests.factories import ledger_state

THREADS = 50
OPS_PER_THREAD = 8


def _run_parallel(n: int, fn: Any) -> list[Any]:
    barrier = threading.Barrier(n)

    def start(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(start, range(n)))


def test_parallel_earning_and_spending_keeps_ledger_and_balance_equal(
    app: Any, keys: dict[str, str], card: dict[str, Any]
) -> None:
    serial = card["serial_number"]
    admin, pos = keys["admin"], keys["pos"]
    client = app.test_client()
    assert client.post(f"/api/v1/cards/{serial}/earn", json={"points": 60},
                       headers={"Authorization": f"Bearer {pos}"}).status_code == 201

    def worker(i: int) -> list[int]:
        rng = random.Random(i)
        local = app.test_client()
        statuses = []
        for _ in range(OPS_PER_THREAD):
            if rng.random() < 0.4:
                r = local.post(f"/api/v1/cards/{serial}/earn", json={"points": 7},
                               headers={"Authorization": f"Bearer {pos}"})
            else:
                r = local.post(f"/api/v1/cards/{serial}/adjust",
                               json={"points": -13, "reason": "spend"},
                               headers={"Authorization": f"Bearer {admin}"})
            statuses.append(r.status_code)
        return statuses

    statuses = [s for result in _run_parallel(THREADS, worker) for s in result]
    assert set(statuses) <= {201, 409}, statuses
    assert statuses.count(409) > 0, "the test must actually run the card dry"

    balance, ledger_sum, entries = ledger_state(app, serial)
    assert balance == ledger_sum >= 0
    assert entries == 1 + statuses.count(201)
    with app.app_context():
        rows = db.session.execute(text(
            "SELECT l.points, l.balance_after FROM ledger_entries l JOIN cards c "
            "ON c.id = l.card_id WHERE c.serial_number = :s ORDER BY l.id"), {"s": serial}).all()
        db.session.rollback()
    running = 0
    for points, balance_after in rows:
        running += points
        assert balance_after == running >= 0  # every step was applied to the latest balance


def test_same_idempotency_key_in_parallel_credits_once(
    app: Any, keys: dict[str, str], card: dict[str, Any]
) -> None:
    serial = card["serial_number"]

    def earn(_: int) -> tuple[int, int]:
        r = app.test_client().post(
            f"/api/v1/cards/{serial}/earn", json={"points": 25, "reference": "order-9"},
            headers={"Authorization": f"Bearer {keys['pos']}", "Idempotency-Key": "order-9"},
        )
        return r.status_code, r.json["entry"]["id"]

    results = _run_parallel(20, earn)
    assert {status for status, _ in results} == {201}
    assert len({entry_id for _, entry_id in results}) == 1
    assert ledger_state(app, serial) == (25, 25, 1)


def test_same_key_spend_in_parallel_replays_instead_of_refusing(
    app: Any, keys: dict[str, str], card: dict[str, Any]
) -> None:
    serial = card["serial_number"]
    client = app.test_client()
    client.post(f"/api/v1/cards/{serial}/earn", json={"points": 30},
                headers={"Authorization": f"Bearer {keys['pos']}"})

    def spend(_: int) -> tuple[int, Any]:
        r = app.test_client().post(
            f"/api/v1/cards/{serial}/adjust", json={"points": -25, "reason": "redeem"},
            headers={"Authorization": f"Bearer {keys['admin']}", "Idempotency-Key": "spend-1"},
        )
        return r.status_code, r.json.get("entry", {}).get("id")

    results = _run_parallel(20, spend)
    assert {status for status, _ in results} == {201}, results
    assert len({entry_id for _, entry_id in results}) == 1
    assert ledger_state(app, serial) == (5, 5, 2)
