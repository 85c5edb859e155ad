"""Announcing changes: outbox rows (and a drain) only for wallets with someone to tell."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from app import background
from app.extensions import db
from app.outbox.models import OutboxEntry
from tests.factories import ApiClient, settle
from tests.phones import Phone


def _outbox_rows(app: Any) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(OutboxEntry))
        db.session.rollback()
    return int(count or 0)


@pytest.fixture
def drains(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The coalesced jobs the app hands to its dispatcher (which still runs them)."""
    submitted: list[str] = []
    with app.app_context():
        dispatcher = background.dispatcher()
    submit = dispatcher.submit

    def recording(func: Any, args: tuple[Any, ...], coalesce: str | None = None) -> None:
        submitted.append(coalesce or background.job_path(func))
        submit(func, args, coalesce)

    monkeypatch.setattr(dispatcher, "submit", recording)
    return submitted


def test_a_change_nobody_holds_writes_no_outbox_row_and_asks_for_no_drain(
        app: Any, api: ApiClient, card: dict[str, Any], drains: list[str]) -> None:
    serial = card["serial_number"]
    response = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5},
                        headers={"Idempotency-Key": "one"})
    assert response.status_code == 201, response.json
    assert _outbox_rows(app) == 0
    assert "outbox-drain" not in drains


def test_a_change_to_a_card_on_an_iphone_is_announced_once(
        app: Any, api: ApiClient, card: dict[str, Any], drains: list[str]) -> None:
    serial = card["serial_number"]
    Phone(app).add(serial)
    drains.clear()
    settle(app)
    response = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5},
                        headers={"Idempotency-Key": "one"})
    assert response.status_code == 201, response.json
    assert drains == ["outbox-drain"]
