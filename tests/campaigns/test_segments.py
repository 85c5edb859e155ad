"""Segments: each condition, combinations, validation and who may count (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text, update

from app.extensions import db
from app.loyalty.models import Card, LedgerEntry, Member, PointLot
from app.wallet.google.models import GoogleObjectState
from tests.factories import ApiClient, create_card, create_program, register_device


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


@pytest.fixture
def population(app: Flask, api: ApiClient) -> dict[str, Any]:
    """Four cards of one program (one voided) and one of another program:

    - A: en, March birthday, joined 2025-06-01, 600 points earned at location L1 on
      2026-01-10 (Silver), points expiring in 5 days, an iPhone registered;
    - B: id, July birthday, joined 2026-02-01, 50 points earned on 2026-03-01, expiring in
      40 days, saved to Google Wallet;
    - C: th, joined 2026-03-15, no visit; D: en, voided; E: en, in another program.
    """
    program = create_program(api)
    other = create_program(api, slug="other-program", name="Other")
    l1 = api.post(f"/api/v1/programs/{program['id']}/locations",
                  json={"name": "Central", "latitude": 1.3, "longitude": 103.8}).json
    l2 = api.post(f"/api/v1/programs/{program['id']}/locations",
                  json={"name": "East", "latitude": 1.35, "longitude": 103.9}).json
    cards = {
        "A": create_card(api, program, email="a@example.com", language="en",
                         birthday="1990-03-14"),
        "B": create_card(api, program, email="b@example.com", language="id",
                         birthday="1985-07-02"),
        "C": create_card(api, program, email="c@example.com", language="th"),
        "D": create_card(api, program, email="d@example.com", language="en"),
        "E": create_card(api, other, email="e@example.com", language="en"),
    }
    serial = {name: card["serial_number"] for name, card in cards.items()}
    assert api.post(f"/api/v1/cards/{serial['A']}/earn",
                    json={"points": 600, "location_id": l1["id"]}).status_code == 201
    assert api.post(f"/api/v1/cards/{serial['B']}/earn",
                    json={"points": 50}).status_code == 201
    assert api.post(f"/api/v1/cards/{serial['E']}/earn",
                    json={"points": 600}).status_code == 201
    assert api.post(f"/api/v1/cards/{serial['D']}/void",
                    json={"reason": "lost"}).status_code == 200
    register_device(app, serial["A"])
    now = datetime.now(UTC)
    with app.app_context():
        ids = {name: db.session.scalar(db.select(Card.id).where(Card.serial_number == s))
               for name, s in serial.items()}
        member_ids = {name: db.session.scalar(db.select(Card.member_id)
                                              .where(Card.id == card_id))
                      for name, card_id in ids.items()}
        for name, visited, joined, expires in (
                ("A", "2026-01-10", "2025-06-01", now + timedelta(days=5)),
                ("B", "2026-03-01", "2026-02-01", now + timedelta(days=40))):
            db.session.execute(update(LedgerEntry).where(LedgerEntry.card_id == ids[name])
                               .values(created_at=_at(visited)))
            db.session.execute(update(Member).where(Member.id == member_ids[name])
                               .values(created_at=_at(joined)))
            db.session.execute(update(PointLot).where(PointLot.card_id == ids[name])
                               .values(expires_at=expires))
        db.session.execute(update(Member).where(Member.id == member_ids["C"])
                           .values(created_at=_at("2026-03-15")))
        db.session.add(GoogleObjectState(card_id=ids["B"], synced_version=1, synced_balance=50,
                                         saved=True))
        db.session.commit()
    tiers = {tier["name"]: tier["id"] for tier in program["tiers"]}
    return {"program": program, "other": other, "locations": (l1["id"], l2["id"]),
            "tiers": tiers, "ids": ids}


def _count(api: ApiClient, program_id: int, **conditions: Any) -> int:
    response = api.post(f"/api/v1/programs/{program_id}/segments/count", json=conditions)
    assert response.status_code == 200, response.json
    return response.json["count"]  # type: ignore[no-any-return]


def test_each_condition(api: ApiClient, keys: dict[str, str],
                        population: dict[str, Any]) -> None:
    marketer = api.as_(keys["marketer"])
    pid = population["program"]["id"]
    l1, l2 = population["locations"]
    tiers = population["tiers"]
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 3),  # A, B, C: not the voided D, not E of the other program
        ({"tier_ids": [tiers["Silver"]]}, 1),
        ({"languages": ["en"]}, 1),
        ({"languages": ["id", "th"]}, 2),
        ({"location_ids": [l1]}, 1),
        ({"location_ids": [l2]}, 0),
        ({"last_visit_before": "2026-02-01T00:00:00Z"}, 1),
        ({"last_visit_before": "2026-04-01T00:00:00+07:00"}, 2),
        ({"last_visit_before": "2026-01-10T00:00:00Z"}, 0),
        ({"last_visit_after": "2026-02-01T00:00:00Z"}, 1),
        ({"last_visit_after": "2025-01-01T00:00:00Z"}, 2),
        ({"balance_min": 100}, 1),
        ({"balance_max": 100}, 2),
        ({"balance_min": 0, "balance_max": 0}, 1),
        ({"balance_min": 50, "balance_max": 50}, 1),
        ({"expiring_within_days": 7}, 1),
        ({"expiring_within_days": 60}, 2),
        ({"birthday_month": 3}, 1),
        ({"birthday_month": 7}, 1),
        ({"birthday_month": 12}, 0),
        ({"apple_installed": True}, 1),
        ({"apple_installed": False}, 2),
        ({"google_installed": True}, 1),
        ({"google_installed": False}, 2),
        ({"joined_from": "2026-01-01T00:00:00Z"}, 2),
        ({"joined_until": "2026-01-01T00:00:00Z"}, 1),
        ({"joined_from": "2026-02-01T00:00:00Z", "joined_until": "2026-03-01T00:00:00Z"}, 1),
    ]
    got = [(conditions, _count(marketer, pid, **conditions)) for conditions, _ in cases]
    assert got == cases


def test_combinations(api: ApiClient, population: dict[str, Any]) -> None:
    pid = population["program"]["id"]
    assert _count(api, pid, languages=["en", "id"], balance_max=100) == 1  # B
    assert _count(api, pid, apple_installed=False, joined_from="2026-01-01T00:00:00Z") == 2
    assert _count(api, pid, apple_installed=True, google_installed=True) == 0
    assert _count(api, pid, last_visit_after="2025-12-01T00:00:00Z",
                  last_visit_before="2026-02-01T00:00:00Z", expiring_within_days=7,
                  birthday_month=3, location_ids=[population["locations"][0]]) == 1  # A
    # The other program counts its own card only.
    assert _count(api, population["other"]["id"]) == 1


def test_the_count_is_the_ids(app: Flask, population: dict[str, Any]) -> None:
    from app.campaigns import segments
    from app.loyalty.models import Program

    with app.app_context():
        program = db.session.get(Program, population["program"]["id"])
        segment = segments.Segment.of({"balance_max": 100})
        ids = set(db.session.scalars(segments.card_ids(program, segment)))
        assert ids == {population["ids"]["B"], population["ids"]["C"]}
        assert segments.count(program, segment) == 2
        stored = segments.Segment.from_json(
            segments.Segment.of({"languages": ["en"], "joined_from":
                                 _at("2026-01-01")}).as_json())
        assert stored == segments.Segment.of({"languages": ["en"],
                                              "joined_from": _at("2026-01-01")})
        db.session.rollback()


@pytest.mark.parametrize("body, field", [
    ({"balance_min": 10, "balance_max": 5}, "balance_max"),
    ({"joined_from": "2026-02-01T00:00:00Z", "joined_until": "2026-01-01T00:00:00Z"},
     "joined_until"),
    ({"last_visit_after": "2026-02-01T00:00:00Z", "last_visit_before": "2026-01-01T00:00:00Z"},
     "last_visit_before"),
    ({"languages": ["fr"]}, "languages"),
    ({"languages": []}, "languages"),
    ({"birthday_month": 13}, "birthday_month"),
    ({"balance_min": "10"}, "balance_min"),
    ({"balance_min": -1}, "balance_min"),
    ({"expiring_within_days": 0}, "expiring_within_days"),
    ({"apple_installed": "yes"}, "apple_installed"),
    ({"joined_from": "2026-01-01T00:00:00"}, "joined_from"),  # no offset: ambiguous
    ({"colour": "red"}, "colour"),
])
def test_invalid_conditions(api: ApiClient, program: dict[str, Any], body: dict[str, Any],
                            field: str) -> None:
    response = api.post(f"/api/v1/programs/{program['id']}/segments/count", json=body)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert field in str(response.json)


def test_another_programs_tier_or_location(api: ApiClient,
                                           population: dict[str, Any]) -> None:
    other = population["other"]
    response = api.post(f"/api/v1/programs/{other['id']}/segments/count",
                        json={"tier_ids": [population["tiers"]["Silver"]]})
    assert response.status_code == 422
    assert response.json["type"].endswith("segment-unknown-reference")
    response = api.post(f"/api/v1/programs/{other['id']}/segments/count",
                        json={"location_ids": [population["locations"][0]]})
    assert response.status_code == 422


def test_who_may_count(api: ApiClient, keys: dict[str, str], program: dict[str, Any]) -> None:
    path = f"/api/v1/programs/{program['id']}/segments/count"
    assert api.as_(keys["marketer"]).post(path, json={}).status_code == 200
    assert api.as_(keys["staff"]).post(path, json={}).status_code == 403
    assert api.as_(keys["pos"]).post(path, json={}).status_code == 403
    assert api.as_(None).post(path, json={}).status_code == 401
    assert api.post("/api/v1/programs/999999/segments/count", json={}).status_code == 404


def test_listed_in_openapi(api: ApiClient) -> None:
    assert "/api/v1/programs/{program_id}/segments/count" in \
        api.get("/api/openapi.json").json["paths"]


def test_raw_sql_agrees(app: Flask, population: dict[str, Any]) -> None:
    """The balance range against a plain SQL count, so the engine's filters are not read
    back through themselves only."""
    with app.app_context():
        expected = db.session.execute(text(
            "SELECT count(*) FROM cards WHERE program_id = :p AND status = 'active' "
            "AND balance <= 100"), {"p": population["program"]["id"]}).scalar()
        db.session.rollback()
    assert expected == 2
