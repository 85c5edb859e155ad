"""The loyalty engine under concurrency on PostgreSQL: 50 threads spend, refund and run
``tick`` on one card at once; the invariants hold and nothing is awarded, expired or released
twice (issue 16)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.loyalty import invariants, tick
from app.loyalty.models import EntryKind, LedgerEntry, Program
from tests.clock import FakeClock
from tests.factories import create_card, make_app

THREADS = 50
DAY = 86_400.0
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CLOCK_START = T0  # where this module's fake clock starts (tests/loyalty/conftest.py)


@pytest.fixture
def app(postgres_database: Any, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    """PostgreSQL only: SQLite runs one writer at a time, so the race is PostgreSQL's."""
    yield from make_app(postgres_database, tmp_path, CLOCK=clock)


def test_fifty_threads_spending_refunding_and_ticking_one_card(
        app: Any, api: Any, keys: dict[str, str], program: dict[str, Any],
        clock: FakeClock) -> None:
    with app.app_context():
        row = db.session.get(Program, program["id"])
        row.points_expire_after_days, row.pending_days = 30, 2
        db.session.commit()
    serial = create_card(api, program)["serial_number"]
    # Twelve purchases over 40 days: some lots will have expired, some be pending, when the
    # threads start.
    for i in range(12):
        earned = api.post(f"/api/v1/cards/{serial}/earn",
                          json={"amount": 5_000_000, "currency": "IDR", "reference": f"o-{i}"},
                          headers={"Idempotency-Key": f"earn-{i}"})
        assert earned.status_code == 201, earned.json
        clock.advance(3.5 * DAY)

    def worker(i: int) -> list[int]:
        rng = random.Random(i)
        client = app.test_client()
        statuses = []
        for n in range(4):
            choice = rng.random()
            if choice < 0.4:
                r = client.post(f"/api/v1/cards/{serial}/adjust",
                                json={"points": -rng.randint(1, 6), "reason": "spend"},
                                headers={"Authorization": f"Bearer {keys['admin']}"})
                statuses.append(r.status_code)
            elif choice < 0.8:
                r = client.post(f"/api/v1/cards/{serial}/refunds", json={
                    "reference": f"o-{rng.randrange(12)}", "amount": rng.choice(
                        [500_000, 1_000_000, 2_500_000]), "currency": "IDR"},
                    headers={"Authorization": f"Bearer {keys['pos']}",
                             "Idempotency-Key": f"refund-{i}-{n}"})
                statuses.append(r.status_code)
            else:
                with app.app_context():
                    tick.run(datetime.fromtimestamp(clock.now(), UTC))
                statuses.append(0)
        return statuses

    barrier = threading.Barrier(THREADS)

    def start(i: int) -> list[int]:
        barrier.wait()
        return worker(i)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        statuses = [s for result in pool.map(start, range(THREADS)) for s in result]
    assert set(statuses) <= {0, 201, 409}, statuses
    assert statuses.count(201) > 0 and statuses.count(409) > 0

    with app.app_context():
        tick.run(datetime.fromtimestamp(clock.now(), UTC))
        assert invariants.violations() == []
        # Each lot expired and released at most once (the keys say which lot).
        for kind in (EntryKind.EXPIRE, EntryKind.RELEASE):
            keys_written = db.session.scalars(select(LedgerEntry.idempotency_key).where(
                LedgerEntry.kind == kind)).all()
            assert keys_written, f"the test must {kind} lots"
            assert len(keys_written) == len(set(keys_written))
        # No purchase clawed back more than it earned, nor refunded more than it cost.
        rows = db.session.execute(select(
            LedgerEntry.purchase_id, func.sum(LedgerEntry.amount),
            func.sum(func.coalesce(LedgerEntry.shortfall, 0)
                     - LedgerEntry.points - LedgerEntry.pending_points),
        ).where(LedgerEntry.kind == EntryKind.REFUND).group_by(LedgerEntry.purchase_id)).all()
        assert rows, "the test must refund"
        for purchase_id, refunded, settled in rows:
            purchase = db.session.get(LedgerEntry, purchase_id)
            assert refunded <= purchase.amount
            assert settled <= purchase.points + purchase.pending_points
        db.session.rollback()
