"""Helpers of the feedback tests: an app whose clock the test moves, a program that asks for
feedback, a location, the card's invitations as stored, and the page's form token."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.feedback.models import FeedbackInvitation
from app.loyalty.models import Card
from tests.clock import FakeClock
from tests.factories import ApiClient, make_app

DAY = 24 * 3600


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=time.time())


@pytest.fixture
def app(database: Any, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    """The app (SQLite and PostgreSQL) on ``clock`` (visits, invitation expiry)."""
    yield from make_app(database, tmp_path, CLOCK=clock)


def ask_for_feedback(api: ApiClient, program: dict[str, Any], every_days: int | None = 30,
                     lock_screen: bool = False) -> dict[str, Any]:
    """Set the program's feedback settings through the API; the program's JSON."""
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}", json={
        "feedback_every_days": every_days, "feedback_lock_screen": lock_screen})
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def add_location(api: ApiClient, program: dict[str, Any], name: str = "Kemang") -> int:
    response = api.post(f"/api/v1/programs/{program['id']}/locations",
                        json={"name": name, "latitude": -6.26, "longitude": 106.81})
    assert response.status_code == 201, response.json
    return int(response.json["id"])


def earn(api: ApiClient, serial: str, location_id: int | None = None, points: int = 10,
         key: str | None = None) -> Any:
    body: dict[str, Any] = {"points": points}
    if location_id is not None:
        body["location_id"] = location_id
    headers = {"Idempotency-Key": key} if key else {}
    response = api.post(f"/api/v1/cards/{serial}/earn", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def invitations(app: Flask, serial: str) -> list[FeedbackInvitation]:
    """The card's invitations as stored, oldest first (detached copies)."""
    with app.app_context():
        found = list(db.session.scalars(
            select(FeedbackInvitation).join(Card, Card.id == FeedbackInvitation.card_id)
            .where(Card.serial_number == serial).order_by(FeedbackInvitation.id)))
        db.session.expunge_all()
        db.session.rollback()
        return found


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)
