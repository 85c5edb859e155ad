"""Segments: each condition, combinations, validation and who may count (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text, update

from app.extensions import db
from app.loyalty import invariants
from app.loyalty.models import Card, LedgerEntry, Member, PointLot
from app.wallet.google.models import GoogleObjectState
from tests.clock import FakeClock
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
    - C: th, joined 2026-03-15, no visit, its pass added to an iPhone then removed (not
      installed); D: en, voided; E: en, in another program.
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
    register_device(app, serial["C"]).remove(serial["C"])
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
            # History rewritten: the card's copies with it (as the posting and the enrolment
            # would have written them).
            db.session.execute(update(LedgerEntry).where(LedgerEntry.card_id == ids[name])
                               .values(created_at=_at(visited)))
            db.session.execute(update(Card).where(Card.id == ids[name])
                               .values(last_visit_at=_at(visited)))
            db.session.execute(update(Member).where(Member.id == member_ids[name])
                               .values(created_at=_at(joined)))
            db.session.execute(update(Card).where(Card.id == ids[name])
                               .values(member_joined_at=_at(joined)))
            db.session.execute(update(PointLot).where(PointLot.card_id == ids[name])
                               .values(expires_at=expires))
        db.session.execute(update(Member).where(Member.id == member_ids["C"])
                           .values(created_at=_at("2026-03-15")))
        db.session.execute(update(Card).where(Card.id == ids["C"])
                           .values(member_joined_at=_at("2026-03-15")))
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


# The last-visit conditions as first defined, on the ledger itself: a visit (an earn or a
# redemption) before the moment and none since; a visit since the moment.
_LAPSED_SQL = (
    "SELECT count(*) FROM cards c WHERE c.program_id = :p AND c.status = 'active' "
    "AND EXISTS (SELECT 1 FROM ledger_entries e WHERE e.card_id = c.id "
    "AND e.kind IN ('earn', 'redeem') AND e.created_at < :t) "
    "AND NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.card_id = c.id "
    "AND e.kind IN ('earn', 'redeem') AND e.created_at >= :t)")
_VISITED_SQL = (
    "SELECT count(*) FROM cards c WHERE c.program_id = :p AND c.status = 'active' "
    "AND EXISTS (SELECT 1 FROM ledger_entries e WHERE e.card_id = c.id "
    "AND e.kind IN ('earn', 'redeem') AND e.created_at >= :t)")


def test_last_visit_agrees_with_the_ledger(app: Flask, api: ApiClient,
                                           population: dict[str, Any]) -> None:
    """The last-visit conditions (on cards.last_visit_at) count what the ledger's entries
    say, at moments before, between and after the visits."""
    pid = population["program"]["id"]
    counted = []
    for moment in ("2025-01-01", "2026-01-10", "2026-01-11", "2026-03-01", "2026-03-02",
                   "2027-01-01"):
        with app.app_context():
            expected = tuple(db.session.execute(text(sql), {"p": pid, "t": _at(moment)})
                             .scalar() for sql in (_LAPSED_SQL, _VISITED_SQL))
            db.session.rollback()
        found = (_count(api, pid, last_visit_before=_at(moment).isoformat()),
                 _count(api, pid, last_visit_after=_at(moment).isoformat()))
        assert found == expected, moment
        counted.append(found)
    assert counted[0] == (0, 2) and counted[-1] == (2, 0)  # the moments do tell them apart


def test_postings_keep_the_last_visit(app: Flask, api: ApiClient,
                                      program: dict[str, Any]) -> None:
    """An earn or a redemption moves the card's last visit up to its entry's time, in the
    posting; other entries (an adjustment, a reversal) and an earlier time leave it."""
    clock = FakeClock(start=_at("2026-03-01").timestamp())
    app.config["CLOCK"] = clock
    serial = create_card(api, program)["serial_number"]

    def last_visit() -> datetime | None:
        with app.app_context():
            found = db.session.scalar(db.select(Card.last_visit_at)
                                      .where(Card.serial_number == serial))
            assert invariants.violations() == []
            return found

    assert last_visit() is None
    clock.advance(3600)
    assert api.post(f"/api/v1/cards/{serial}/adjust",
                    json={"points": 500, "reason": "welcome"}).status_code == 201
    assert last_visit() is None
    earned = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 100})
    assert earned.status_code == 201
    assert last_visit() == _at("2026-03-01") + timedelta(hours=1)
    clock.advance(86400)
    assert api.post(f"/api/v1/cards/{serial}/adjust",
                    json={"points": -10, "reason": "correction"}).status_code == 201
    assert last_visit() == _at("2026-03-01") + timedelta(hours=1)
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5}).status_code == 201
    assert last_visit() == _at("2026-03-02") + timedelta(hours=1)
    clock.advance(-10 * 86400)  # a clock set back: the latest visit stays the last
    assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5}).status_code == 201
    assert last_visit() == _at("2026-03-02") + timedelta(hours=1)


def test_enrolment_copies_the_members_fields(app: Flask, api: ApiClient,
                                             program: dict[str, Any]) -> None:
    """A new card carries its member's language, birthday month and joining time, which
    the language, birthday and joining conditions read (against the members table here)."""
    create_card(api, program, email="x@example.com", language="th", birthday="1990-12-31")
    create_card(api, program, email="y@example.com")
    with app.app_context():
        rows = db.session.execute(text(
            "SELECT c.member_language, m.language, c.member_birthday_month, m.birthday, "
            "c.member_joined_at, m.created_at FROM cards c JOIN members m ON m.id = c.member_id "
            "WHERE c.program_id = :p ORDER BY c.id"), {"p": program["id"]}).all()
        db.session.rollback()
    assert [(r[0], r[2]) for r in rows] == [("th", 12), (program["default_language"], None)]
    for row in rows:
        assert row[0] == row[1] and row[4] is not None and str(row[4]) == str(row[5])
    pid = program["id"]
    assert _count(api, pid, languages=["th"], birthday_month=12) == 1
    assert _count(api, pid, joined_from="2000-01-01T00:00:00Z") == 2
    assert _count(api, pid, joined_until="2000-01-01T00:00:00Z") == 0


def test_planner_settings_last_for_the_count_only(app: Flask,
                                                  population: dict[str, Any]) -> None:
    """On PostgreSQL a count runs without JIT, with SEGMENT_COUNT_WORKERS parallel workers
    and random_page_cost 1.1; the transaction's own settings are back afterwards."""
    from app.campaigns import segments
    from app.loyalty.models import Program

    app.config["SEGMENT_COUNT_WORKERS"] = 1
    with app.app_context():
        program = db.session.get(Program, population["program"]["id"])
        assert program is not None
        if db.engine.dialect.name != "postgresql":
            assert segments.count(program, segments.Segment()) == 3
            return
        read = text("SELECT current_setting('jit'), "
                    "current_setting('max_parallel_workers_per_gather'), "
                    "current_setting('random_page_cost')")
        db.session.execute(text("SET LOCAL jit = on"))
        db.session.execute(text("SET LOCAL max_parallel_workers_per_gather = 3"))
        db.session.execute(text("SET LOCAL random_page_cost = 3.5"))
        with segments.planner_settings():
            assert tuple(db.session.execute(read).one()) == ("off", "1", "1.1")
        assert segments.count(program, segments.Segment()) == 3
        assert tuple(db.session.execute(read).one()) == ("on", "3", "3.5")
        db.session.rollback()
