"""Each event type is emitted by the domain service that causes it, in the transaction of the
change: the event rows are read back (the delivery itself is tested in test_delivery.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app import timeutil
from app.extensions import db
from app.loyalty import tick
from app.loyalty.models import Card
from app.webhooks import emit
from app.webhooks.models import WebhookDelivery, WebhookEvent
from tests.factories import (
    ApiClient,
    admin_api,
    card_code,
    create_api_key,
    create_card,
    create_program,
    make_app,
    register_device,
    settle,
)
from tests.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import hook_settings, register


@pytest.fixture
def both_app(database: Any, tmp_path: Path, receiver_certs: dict[str, Path]) -> Iterator[Flask]:
    """SQLite and PostgreSQL: a posting runs its statements on the driver on PostgreSQL."""
    yield from make_app(database, tmp_path, **hook_settings(receiver_certs))


def events(app: Flask, event_type: str | None = None) -> list[dict[str, Any]]:
    """The bodies of the events emitted so far, oldest first."""
    with app.app_context():
        query = select(WebhookEvent.body).order_by(WebhookEvent.id)
        if event_type is not None:
            query = query.where(WebhookEvent.type == event_type)
        bodies = [json.loads(body) for body in db.session.scalars(query)]
        db.session.rollback()
    return bodies


def _listening(api: ApiClient, receiver: WebhookReceiver, **program: Any) -> dict[str, Any]:
    made = create_program(api, **program)
    register(api, made, receiver.url(), events=list(emit.EVENT_TYPES))
    return made


def test_postings_emit_balance_changes_with_their_cause(
        both_app: Flask, receiver: WebhookReceiver) -> None:
    api = admin_api(both_app)
    program = _listening(api, receiver)
    serial = create_card(api, program)["serial_number"]
    earned = api.post(f"/api/v1/cards/{serial}/earn", json={
        "amount": 500_000_000, "currency": "IDR", "reference": "receipt-9"})
    assert earned.status_code == 201, earned.json
    adjusted = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -5,
                                                                "reason": "goodwill"})
    assert adjusted.status_code == 201, adjusted.json
    changed = events(both_app, emit.CARD_BALANCE_CHANGED)
    assert [e["data"]["cause"]["kind"] for e in changed] == ["earn", "adjust"]
    earn, adjust = (e["data"] for e in changed)
    assert earn["entry"]["id"] == earned.json["entry"]["id"]
    assert earn["entry"]["points"] == earned.json["entry"]["points"] > 0
    assert earn["cause"]["reference"] == "receipt-9" and earn["entry"]["currency"] == "IDR"
    assert earn["card"]["serial_number"] == serial
    assert adjust["entry"]["points"] == -5 and adjust["cause"]["reason"] == "goodwill"
    assert adjust["card"]["balance"] == adjusted.json["balance"]
    assert adjust["cause"]["actor"].startswith("api_key:")
    # A retry with the same Idempotency-Key emits nothing more.
    headers = {"Idempotency-Key": "same"}
    for _ in range(2):
        api.post(f"/api/v1/cards/{serial}/earn", json={"points": 3}, headers=headers)
    assert len(events(both_app, emit.CARD_BALANCE_CHANGED)) == 3
    settle(both_app)


def test_a_program_without_endpoints_gets_no_events(both_app: Flask) -> None:
    api = admin_api(both_app)
    program = create_program(api)
    serial = create_card(api, program)["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 3}).status_code == 201
    # An endpoint of another program, or one disabled, or not subscribed, hears nothing.
    other = create_program(api, name="Other", slug="other")
    register(api, other, "https://127.0.0.1:9/", events=["card.balance_changed"])
    register(api, program, "https://127.0.0.1:9/", events=["card.balance_changed"],
             enabled=False)
    register(api, program, "https://127.0.0.1:9/", events=["card.voided"])
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 3}).status_code == 201
    assert events(both_app) == []


def test_enrollment_emits_member_created(hook_app: Flask, receiver: WebhookReceiver) -> None:
    api = admin_api(hook_app)
    program = _listening(api, receiver)
    card = create_card(api, program, name="Budi", email="budi@example.com")
    (created,) = events(hook_app, emit.MEMBER_CREATED)
    assert created["data"]["member"]["name"] == "Budi"
    assert created["data"]["member"]["email"] == "budi@example.com"
    assert created["data"]["card"]["serial_number"] == card["serial_number"]


def test_redemptions_emit_created_and_reversed(hook_app: Flask,
                                               receiver: WebhookReceiver) -> None:
    api = admin_api(hook_app)
    program = _listening(api, receiver)
    serial = create_card(api, program)["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 500}).status_code == 201
    staff = api.as_(create_api_key(hook_app, "staff"))
    reward = program["rewards"][0]
    made = staff.post("/api/v1/redemptions", json={"code": card_code(hook_app, serial),
                                                   "reward_id": reward["id"]})
    assert made.status_code == 201, made.json
    (created,) = events(hook_app, emit.REDEMPTION_CREATED)
    assert created["data"]["redemption"]["id"] == made.json["id"]
    assert created["data"]["redemption"]["reward_id"] == reward["id"]
    assert created["data"]["card"]["balance"] == made.json["balance"]
    undone = api.post(f"/api/v1/redemptions/{made.json['id']}/reverse",
                      json={"reason": "wrong cake"})
    assert undone.status_code in (200, 201), undone.json
    (reversed_,) = events(hook_app, emit.REDEMPTION_REVERSED)
    assert reversed_["data"]["redemption"]["id"] == made.json["id"]
    assert reversed_["data"]["redemption"]["reason"] == "wrong cake"
    causes = [e["data"]["cause"]["kind"] for e in events(hook_app, emit.CARD_BALANCE_CHANGED)]
    assert causes == ["earn", "redeem", "reverse"]


def test_voiding_emits_card_voided(hook_app: Flask, receiver: WebhookReceiver) -> None:
    api = admin_api(hook_app)
    program = _listening(api, receiver)
    serial = create_card(api, program)["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/void", json={"reason": "lost"}).status_code == 200
    (voided,) = events(hook_app, emit.CARD_VOIDED)
    assert voided["data"]["card"]["serial_number"] == serial
    assert voided["data"]["reason"] == "lost"


def test_wallet_installs_and_removals_emit_with_their_platform(
        hook_app: Flask, receiver: WebhookReceiver) -> None:
    api = admin_api(hook_app)
    program = _listening(api, receiver)
    serial = create_card(api, program)["serial_number"]
    phone = register_device(hook_app, serial)
    phone.remove(serial)
    (installed,) = events(hook_app, emit.CARD_INSTALLED)
    (removed,) = events(hook_app, emit.CARD_REMOVED)
    for event in (installed, removed):
        assert event["data"]["platform"] == "apple"
        assert event["data"]["card"]["serial_number"] == serial
        assert event["data"]["device_id"] is not None


def test_the_tick_emits_expiring_points_and_expiries(hook_app: Flask,
                                                     receiver: WebhookReceiver) -> None:
    api = admin_api(hook_app)
    program = _listening(api, receiver, points_expire_after_days=30, expiry_reminder_days=14)
    serial = create_card(api, program)["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 40}).status_code == 201
    now = timeutil.now()
    with hook_app.app_context():
        tick.run(now + timedelta(days=20))
    (expiring,) = events(hook_app, emit.POINTS_EXPIRING)
    assert expiring["data"]["points"] == 40
    assert expiring["data"]["card"]["serial_number"] == serial
    with hook_app.app_context():
        tick.run(now + timedelta(days=31))
        tick.run(now + timedelta(days=32))  # nothing more to do: no event more
    changed = [e["data"] for e in events(hook_app, emit.CARD_BALANCE_CHANGED)]
    assert [(c["cause"]["kind"], c["entry"]["points"]) for c in changed] == [
        ("earn", 40), ("expire", -40)]
    assert changed[1]["cause"]["actor"] == "clock" and changed[1]["card"]["balance"] == 0
    assert len(events(hook_app, emit.POINTS_EXPIRING)) == 1


def test_a_finished_campaign_emits_campaign_finished(hook_app: Flask,
                                                     receiver: WebhookReceiver) -> None:
    api = admin_api(hook_app)
    program = _listening(api, receiver)
    create_card(api, program)
    made = api.post(f"/api/v1/programs/{program['id']}/campaigns", json={
        "name": "Rainy season", "messages": {"en": {"lock_screen": "Hot drinks 2x"}}})
    assert made.status_code == 201, made.json
    sent = api.post(f"/api/v1/programs/{program['id']}/campaigns/{made.json['id']}/send")
    assert sent.status_code in (200, 202), sent.json
    settle(hook_app)
    (finished,) = events(hook_app, emit.CAMPAIGN_FINISHED)
    assert finished["data"]["campaign"]["id"] == made.json["id"]
    assert finished["data"]["campaign"]["sent_total"] == 1


def test_erasing_a_member_deletes_their_events_and_says_so_with_ids_only(
        hook_app: Flask, receiver: WebhookReceiver) -> None:
    """``DELETE /api/v1/members/<id>`` emits ``member.erased`` in the erasure's transaction:
    the events about the card (whose bodies hold the member's name) go, with their
    deliveries, and ``member.erased`` carries ids only."""
    api = admin_api(hook_app)
    program = _listening(api, receiver)
    kept = create_card(api, program, name="Kept")["serial_number"]
    card = create_card(api, program, name="Rahasia Sekali", email="rahasia@example.com")
    serial = card["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5}).status_code == 201
    settle(hook_app)
    with hook_app.app_context():
        member_id = db.session.scalar(select(Card.member_id).where(Card.serial_number == serial))
        db.session.rollback()
    erased_now = api.request("DELETE", f"/api/v1/members/{member_id}")
    assert erased_now.status_code == 200, erased_now.json
    settle(hook_app)
    with hook_app.app_context():
        left = db.session.scalars(select(WebhookEvent.body)).all()
        assert not any("Rahasia" in body or "rahasia@" in body for body in left)
        assert db.session.scalar(select(func.count(WebhookDelivery.id))) == len(left) == 2
        db.session.rollback()
    (erased,) = events(hook_app, emit.MEMBER_ERASED)
    assert set(erased["data"]) == {"member_id", "program_id", "serial_number", "erased_at"}
    assert erased["data"]["member_id"] == member_id and erased["data"]["serial_number"] == serial
    (still,) = events(hook_app, emit.MEMBER_CREATED)
    assert still["data"]["card"]["serial_number"] == kept
