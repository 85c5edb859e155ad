"""Campaigns through the API on both databases: create, validate, dry-run, send with a
holdout (bonus once, message on the card, nothing for the held-out), schedule, cancel,
results, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from app.audit import AuditEvent
from app.campaigns import service
from app.campaigns.models import Recipient
from app.extensions import db
from app.loyalty.models import Card, EntryKind, LedgerEntry
from tests.factories import ApiClient, create_card, settle

MESSAGES = {"en": {"lock_screen": "Double points today", "back": "Show your card."},
            "th": {"lock_screen": "แต้มสองเท่าวันนี้"}}


@pytest.fixture
def members(api: ApiClient, program: dict[str, Any]) -> list[dict[str, Any]]:
    return [create_card(api, program, email=f"m{i}@example.com",
                        language="th" if i % 4 == 0 else "en") for i in range(40)]


def _path(program: dict[str, Any], *rest: Any) -> str:
    return "/".join([f"/api/v1/programs/{program['id']}/campaigns", *map(str, rest)])


def _create(api: ApiClient, program: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = api.post(_path(program), json={"name": "Rainy day", "messages": MESSAGES,
                                               **body})
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def test_send_with_a_holdout(app: Flask, api: ApiClient, keys: dict[str, str],
                             program: dict[str, Any], members: list[dict[str, Any]]) -> None:
    marketer = api.as_(keys["marketer"])
    campaign = _create(marketer, program, bonus_points=25, holdout_percent=10)
    assert campaign["status"] == "draft"
    dry = marketer.post(_path(program, campaign["id"], "dry-run")).json
    assert dry["recipients"] == 40
    assert dry["held_out"] + dry["would_receive"] == 40
    assert dry["bonus_points_total"] == 25 * dry["would_receive"]
    assert sum(dry["by_language"].values()) == dry["would_receive"]
    assert len(dry["sample"]) == 10
    sent = marketer.post(_path(program, campaign["id"], "send"))
    assert sent.status_code == 202 and sent.json["status"] in ("sending", "sent")
    settle(app)
    done = marketer.get(_path(program, campaign["id"])).json
    assert done["status"] == "sent"
    assert done["recipients_total"] == 40
    assert done["held_out_total"] == dry["held_out"] >= 1
    assert done["sent_total"] == 40 - dry["held_out"]
    with app.app_context():
        held = {r.card_id: r.held_out for r in db.session.scalars(select(Recipient))}
        assert {cid for cid, h in held.items() if h} == {
            cid for cid in held if service.holdout_bucket(campaign["id"], cid) < 10}
        bonus = dict(db.session.execute(
            select(LedgerEntry.card_id, func.sum(LedgerEntry.points))
            .where(LedgerEntry.kind == EntryKind.BONUS).group_by(LedgerEntry.card_id)).all())
        assert bonus == {cid: 25 for cid, h in held.items() if not h}
        for card in db.session.scalars(select(Card)):
            if held[card.id]:
                assert card.message is None and card.balance == 0
            else:
                expected = "แต้มสองเท่าวันนี้" if card.member.language == "th" \
                    else "Double points today\nShow your card."
                assert card.message == expected
        # Sending again gives nobody anything twice.
        service.run(campaign["id"])
        again = db.session.scalar(select(func.count()).where(LedgerEntry.kind == EntryKind.BONUS))
        assert again == len(bonus)
        actions = list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
        assert actions[-2:] == ["campaign.create", "campaign.send"]
        db.session.rollback()
    # A visit after the send counts for its group.
    a_receiver = next(m for m in members if not held[_card_id(app, m)])
    assert api.post(f"/api/v1/cards/{a_receiver['serial_number']}/earn",
                    json={"points": 10}).status_code == 201
    results = marketer.get(_path(program, campaign["id"], "results")).json
    assert results["campaign_group"]["members"] == done["sent_total"]
    assert results["holdout_group"]["members"] == done["held_out_total"]
    assert results["campaign_group"]["visits"] == 1
    assert results["holdout_group"]["visits"] == 0
    assert marketer.post(_path(program, campaign["id"], "send")).status_code == 409
    assert marketer.post(_path(program, campaign["id"], "cancel")).status_code == 409


def _card_id(app: Flask, card: dict[str, Any]) -> int:
    with app.app_context():
        found = db.session.scalar(select(Card.id).where(
            Card.serial_number == card["serial_number"]))
        db.session.rollback()
        return int(found)


def test_segment_and_no_bonus(app: Flask, api: ApiClient, program: dict[str, Any],
                              members: list[dict[str, Any]]) -> None:
    campaign = _create(api, program, segment={"languages": ["th"]})
    assert api.post(_path(program, campaign["id"], "send")).status_code == 202
    settle(app)
    got = api.get(_path(program, campaign["id"])).json
    assert got["status"] == "sent" and got["sent_total"] == 10 and got["held_out_total"] == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(
            LedgerEntry.kind == EntryKind.BONUS)) == 0
        assert db.session.scalar(select(func.count()).where(Card.message.is_not(None))) == 10
        db.session.rollback()


def test_schedule_update_and_cancel(app: Flask, api: ApiClient, program: dict[str, Any],
                                    members: list[dict[str, Any]]) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    campaign = _create(api, program, scheduled_at=later)
    assert api.post(_path(program, campaign["id"], "send")).json["status"] == "scheduled"
    changed = api.request("PATCH", _path(program, campaign["id"]),
                          json={"scheduled_at": (datetime.now(UTC) - timedelta(minutes=1))
                                .isoformat(), "segment": {"languages": ["en"]}})
    assert changed.status_code == 200, changed.json
    with app.app_context():
        assert service.start_due() == 1
    settle(app)
    got = api.get(_path(program, campaign["id"])).json
    assert got["status"] == "sent" and got["sent_total"] == 30
    draft = _create(api, program, name="Never")
    cancelled = api.post(_path(program, draft["id"], "cancel")).json
    assert cancelled["status"] == "cancelled"
    assert api.post(_path(program, draft["id"], "send")).status_code == 409
    listed = api.get(_path(program)).json["campaigns"]
    assert [c["id"] for c in listed] == [draft["id"], campaign["id"]]
    with app.app_context():
        actions = set(db.session.scalars(select(AuditEvent.action)))
        assert {"campaign.create", "campaign.update", "campaign.send",
                "campaign.cancel"} <= actions
        db.session.rollback()


@pytest.mark.parametrize("body", [
    {"name": "x", "messages": MESSAGES, "holdout_percent": 51},
    {"name": "x", "messages": {}},
    {"name": "x"},
    {"name": "x", "messages": {"fr": {"back": "Bonjour"}}},
    {"name": "x", "messages": {"en": {}}},
    {"name": "x", "messages": MESSAGES, "bonus_points": 0},
    {"name": "x", "messages": MESSAGES, "segment": {"balance_min": 5, "balance_max": 1}},
    {"name": "", "messages": MESSAGES},
])
def test_invalid_campaigns(api: ApiClient, program: dict[str, Any], body: dict[str, Any]) -> None:
    response = api.post(_path(program), json=body)
    assert response.status_code == 422, response.json


def test_reach(api: ApiClient, keys: dict[str, str], program: dict[str, Any]) -> None:
    campaign = _create(api, program)
    assert api.as_(keys["staff"]).get(_path(program)).status_code == 403
    assert api.as_(keys["pos"]).post(_path(program, campaign["id"], "send")).status_code == 403
    other = api.post("/api/v1/programs", json={"name": "Other", "slug": "other-one"}).json
    assert api.get(_path(other, campaign["id"])).status_code == 404
    assert api.post(_path(other, campaign["id"], "dry-run")).status_code == 404


def test_a_stopped_send_resumes_where_it_was(app: Flask, api: ApiClient,
                                             program: dict[str, Any],
                                             members: list[dict[str, Any]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from app.campaigns.models import Campaign, CampaignStatus

    campaign = _create(api, program, bonus_points=5, holdout_percent=20)
    cid = campaign["id"]
    monkeypatch.setattr(service, "BATCH", 7)
    with app.app_context():
        # What the send's job does first, then one batch; then its worker dies.
        db.session.execute(update(Campaign).where(Campaign.id == cid)
                           .values(status=CampaignStatus.SENDING))
        db.session.commit()
        assert service._fix_recipients(cid) is not None
        assert service._send_batch(cid)
        assert db.session.scalar(select(func.count()).where(
            Recipient.campaign_id == cid, Recipient.outcome.is_not(None))) == 7
        service._fix_recipients(cid)  # the recipients are fixed once
        assert db.session.scalar(select(func.count()).where(
            Recipient.campaign_id == cid)) == 40
        # The sweep resumes a send that made no progress for a while.
        assert service.start_due() == 0
        assert db.session.get(Campaign, cid).status is CampaignStatus.SENDING
        db.session.execute(update(Campaign).where(Campaign.id == cid).values(
            updated_at=datetime.now(UTC) - timedelta(seconds=service.STALLED_SECONDS + 1)))
        db.session.commit()
        service.start_due()
    settle(app)
    got = api.get(_path(program, cid)).json
    assert got["status"] == "sent"
    assert got["sent_total"] + got["held_out_total"] == 40
    with app.app_context():
        per_card = db.session.execute(
            select(LedgerEntry.card_id, func.count()).where(LedgerEntry.kind == EntryKind.BONUS)
            .group_by(LedgerEntry.card_id)).all()
        assert len(per_card) == got["sent_total"] and all(n == 1 for _, n in per_card)
        db.session.rollback()
