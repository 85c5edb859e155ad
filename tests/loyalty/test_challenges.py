"""Challenges and badges (app.loyalty.challenges) through the API, the ledger and the passes:
the visit that reaches a challenge gives its badge and bonus once, in the visit's transaction;
the Apple pass (fetched through the PassKit web service) and the Google object show the
badge; windows, kinds, retirement and concurrent visits (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.enrollment.links import card_page_path
from app.extensions import db
from app.loyalty import invariants
from app.loyalty.models import CardBadge, EntryKind, LedgerEntry
from tests.clock import FakeClock
from tests.factories import (
    ApiClient,
    admin_api,
    card_code,
    create_card,
    create_program,
    make_app,
    register_device,
)

DAY = 86_400.0
CLOCK_START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
FIVE_VISITS = {"kind": "visits", "name": "5 visits in 30 days", "target": 5,
               "window_days": 30, "bonus_points": 50,
               "texts": {"id": "5 kunjungan dalam 30 hari", "th": "มา 5 ครั้งใน 30 วัน"}}


def add_challenge(api: ApiClient, program: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/v1/programs/{program['id']}/challenges", json=body)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def earn(api: ApiClient, serial: str, key: str, points: int = 10, **extra: Any) -> Any:
    response = api.post(f"/api/v1/cards/{serial}/earn", json={"points": points, **extra},
                        headers={"Idempotency-Key": key})
    assert response.status_code == 201, response.json
    return response


def bonus_entries(app: Flask, serial: str) -> list[tuple[str | None, int, str | None]]:
    """The card's bonus entries: (idempotency key, points, reason)."""
    with app.app_context():
        rows = db.session.execute(select(
            LedgerEntry.idempotency_key, LedgerEntry.points, LedgerEntry.reason,
        ).join(LedgerEntry.card).where(
            LedgerEntry.kind == EntryKind.BONUS,
            LedgerEntry.card.has(serial_number=serial))).all()
        db.session.rollback()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def entry_count(app: Flask) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count(LedgerEntry.id)))
        db.session.rollback()
    return int(count or 0)


def back_field(document: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((f for f in document["storeCard"]["backFields"] if f["key"] == key), None)


def card_json(api: ApiClient, serial: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/cards/{serial}")
    assert response.status_code == 200
    return response.json  # type: ignore[no-any-return]


def test_the_fifth_visit_gives_the_badge_and_its_bonus_once(
        app: Flask, api: ApiClient, program: dict[str, Any], card: dict[str, Any],
        clock: FakeClock) -> None:
    serial = card["serial_number"]
    challenge = add_challenge(api, program, **FIVE_VISITS)
    phone = register_device(app, serial)
    for visit in range(1, 5):
        earn(api, serial, f"visit-{visit}")
        clock.advance(DAY)
    assert card_json(api, serial)["badges"] == []
    assert back_field(phone.fetch(serial), "badges") is None
    assert bonus_entries(app, serial) == []

    fifth = earn(api, serial, "visit-5")
    badges = card_json(api, serial)["badges"]
    assert [(b["challenge_id"], b["name"]) for b in badges] == [
        (challenge["id"], "5 visits in 30 days")]
    assert bonus_entries(app, serial) == [
        (f"challenge:{challenge['id']}", 50, "5 visits in 30 days")]
    assert card_json(api, serial)["balance"] == 5 * 10 + 50
    # The visit's change reached the phone: it lists the card as changed, and the pass it
    # fetches names the badge once on its back, in the phone's language too.
    assert serial in phone.changed()
    files = phone.fetch_files(serial)
    document = json.loads(files["pass.json"])
    field = back_field(document, "badges")
    assert field is not None and field["value"].split("\n") == ["5 visits in 30 days"]
    keys = [f["key"] for f in document["storeCard"]["backFields"]]
    assert keys.index("badges") == keys.index("history") + 1
    indonesian = files["id.lproj/pass.strings"].decode()
    assert '"5 visits in 30 days" = "5 kunjungan dalam 30 hari";' in indonesian
    assert '"badges_label" = ' in indonesian

    # An idempotent retry of the fifth visit and a sixth visit add nothing.
    before = entry_count(app)
    again = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 10},
                     headers={"Idempotency-Key": "visit-5"})
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json == fifth.json
    assert entry_count(app) == before
    earn(api, serial, "visit-6")
    assert entry_count(app) == before + 1  # the sixth visit's earn only
    assert len(bonus_entries(app, serial)) == 1
    assert len(card_json(api, serial)["badges"]) == 1
    field = back_field(phone.fetch(serial), "badges")
    assert field is not None and field["value"] == "5 visits in 30 days"
    with app.app_context():
        assert invariants.violations() == []


def test_visits_outside_the_window_do_not_count(app: Flask, api: ApiClient,
                                               program: dict[str, Any], card: dict[str, Any],
                                               clock: FakeClock) -> None:
    serial = card["serial_number"]
    add_challenge(api, program, kind="visits", name="3 in a week", target=3, window_days=7)
    earn(api, serial, "a")
    clock.advance(6 * DAY)
    earn(api, serial, "b")
    clock.advance(2 * DAY)  # the first visit is 8 days ago now
    earn(api, serial, "c")
    assert card_json(api, serial)["badges"] == []
    clock.advance(DAY)
    earn(api, serial, "d")  # b (3 days ago), c, d: within 7 days
    assert [b["name"] for b in card_json(api, serial)["badges"]] == ["3 in a week"]
    assert bonus_entries(app, serial) == []  # no bonus points: a badge alone


def test_a_reversed_visit_does_not_count(app: Flask, api: ApiClient, program: dict[str, Any],
                                         card: dict[str, Any], keys: dict[str, str]) -> None:
    serial = card["serial_number"]
    add_challenge(api, program, kind="visits", name="Three times", target=3, bonus_points=5)
    earn(api, serial, "a", points=200)
    staff = api.as_(keys["staff"])
    redeemed = staff.post("/api/v1/redemptions", json={
        "code": card_code(app, serial), "reward_id": program["rewards"][0]["id"]})
    assert redeemed.status_code == 201, redeemed.json
    assert api.post(f"/api/v1/redemptions/{redeemed.json['id']}/reverse",
                    json={"reason": "wrong card"}).status_code == 201
    earn(api, serial, "b")  # the earn, this one; the redemption was taken back
    assert card_json(api, serial)["badges"] == []
    earn(api, serial, "c")
    assert [b["name"] for b in card_json(api, serial)["badges"]] == ["Three times"]


def test_different_rewards_and_locations(app: Flask, api: ApiClient, program: dict[str, Any],
                                         card: dict[str, Any], keys: dict[str, str]) -> None:
    serial, pid = card["serial_number"], program["id"]
    coffee = program["rewards"][0]["id"]
    cake = api.post(f"/api/v1/programs/{pid}/rewards",
                    json={"name": "Cake", "points_cost": 100}).json["id"]
    rewards = add_challenge(api, program, kind="rewards", name="Try 2 rewards", target=2,
                            bonus_points=30)
    places = add_challenge(api, program, kind="locations", name="Visit 2 shops", target=2)
    shops = [api.post(f"/api/v1/programs/{pid}/locations",
                      json={"name": name, "latitude": -6.2, "longitude": 106.8}).json["id"]
             for name in ("Kemang", "Senopati")]
    staff = api.as_(keys["staff"])

    def redeem(reward_id: int) -> None:
        answer = staff.post("/api/v1/redemptions", json={"code": card_code(app, serial),
                                                         "reward_id": reward_id})
        assert answer.status_code == 201, answer.json

    earn(api, serial, "e1", points=500, location_id=shops[0])
    earn(api, serial, "e2", location_id=shops[0])
    redeem(coffee)
    redeem(coffee)  # the same reward again: still one different reward
    assert card_json(api, serial)["badges"] == []
    redeem(cake)
    assert [b["challenge_id"] for b in card_json(api, serial)["badges"]] == [rewards["id"]]
    assert [(k, p) for k, p, _ in bonus_entries(app, serial)] == [
        (f"challenge:{rewards['id']}", 30)]
    earn(api, serial, "e3", location_id=shops[1])
    assert [b["challenge_id"] for b in card_json(api, serial)["badges"]] == [
        rewards["id"], places["id"]]


def test_a_retired_challenge_awards_nothing_and_its_badges_stay(
        app: Flask, api: ApiClient, program: dict[str, Any], card: dict[str, Any]) -> None:
    serial, pid = card["serial_number"], program["id"]
    once = add_challenge(api, program, kind="visits", name="First visit", target=1)
    twice = add_challenge(api, program, kind="visits", name="Second visit", target=2,
                          bonus_points=10)
    earn(api, serial, "a")
    assert [b["name"] for b in card_json(api, serial)["badges"]] == ["First visit"]
    path = f"/api/v1/programs/{pid}/challenges"
    assert api.request("DELETE", f"{path}/{twice['id']}").status_code == 204
    assert api.request("DELETE", f"{path}/{once['id']}").status_code == 204
    earn(api, serial, "b")
    assert [b["name"] for b in card_json(api, serial)["badges"]] == ["First visit"]
    assert bonus_entries(app, serial) == []
    # The program has no live challenge now: the listener asks nothing.
    listed = api.get(path).json["challenges"]
    assert {c["id"] for c in listed} == {once["id"], twice["id"]}
    assert all(c["retired_at"] for c in listed)


def test_a_badge_without_bonus_still_rebuilds_the_pass(
        app: Flask, api: ApiClient, program: dict[str, Any], card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    add_challenge(api, program, kind="visits", name="Hello", target=1,
                  texts={"th": "สวัสดี"})
    phone = register_device(app, serial)
    phone.changed()
    earn(api, serial, "a")
    assert phone.changed() == [serial]
    field = back_field(phone.fetch(serial), "badges")
    assert field is not None and field["value"] == "Hello"


def test_renaming_a_challenge_renames_the_badge_on_the_pass(
        app: Flask, api: ApiClient, program: dict[str, Any], card: dict[str, Any]) -> None:
    serial = card["serial_number"]
    challenge = add_challenge(api, program, kind="visits", name="Hello", target=1)
    earn(api, serial, "a")
    phone = register_device(app, serial)
    phone.changed()
    renamed = api.request("PATCH", f"/api/v1/programs/{program['id']}/challenges/"
                          f"{challenge['id']}", json={"name": "Welcome back", "target": 3})
    assert renamed.status_code == 200, renamed.json
    assert phone.changed() == [serial]
    field = back_field(phone.fetch(serial), "badges")
    assert field is not None and field["value"] == "Welcome back"
    # The badge stays though the target is higher now.
    assert len(card_json(api, serial)["badges"]) == 1


@pytest.fixture
def concurrent_app(postgres_database: Any, tmp_path: Path, clock: FakeClock) -> Iterator[Flask]:
    """PostgreSQL: SQLite runs one writer at a time, so the race is PostgreSQL's."""
    yield from make_app(postgres_database, tmp_path, CLOCK=clock)


def test_concurrent_fifth_visits_award_once(concurrent_app: Flask) -> None:
    app = concurrent_app
    api = admin_api(app)
    program = create_program(api)
    serial = create_card(api, program)["serial_number"]
    challenge = add_challenge(api, program, **FIVE_VISITS)
    for visit in range(4):
        earn(api, serial, f"visit-{visit}")
    threads = 8
    barrier = threading.Barrier(threads)

    def fifth(i: int) -> int:
        client = ApiClient(app.test_client(), api.key)
        barrier.wait()
        answer = client.post(f"/api/v1/cards/{serial}/earn", json={"points": 10},
                             headers={"Idempotency-Key": f"fifth-{i}"})
        return int(answer.status_code)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        assert list(pool.map(fifth, range(threads))) == [201] * threads
    assert bonus_entries(app, serial) == [
        (f"challenge:{challenge['id']}", 50, "5 visits in 30 days")]
    with app.app_context():
        assert db.session.scalar(select(func.count(CardBadge.id))) == 1
        assert invariants.violations() == []
        db.session.rollback()
    assert card_json(api, serial)["balance"] == (4 + threads) * 10 + 50


def card_page(app: Flask, serial: str, language: str = "en") -> str:
    with app.app_context():
        page_path = card_page_path(serial)
    response = app.test_client().get(f"{page_path}?lang={language}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_card_page_shows_badges_and_the_next_challenge(
        app: Flask, api: ApiClient, program: dict[str, Any], card: dict[str, Any],
        clock: FakeClock) -> None:
    serial = card["serial_number"]
    add_challenge(api, program, **FIVE_VISITS)
    add_challenge(api, program, kind="locations", name="2 shops", target=2)
    add_challenge(api, program, kind="visits", name="First visit", target=1,
                  texts={"id": "Kunjungan pertama"})
    page = card_page(app, serial)
    assert 'id="badges"' not in page and "No badges yet." in page
    # None started: the first in the program's order is next.
    assert "Next: 5 visits in 30 days, 0 of 5 visits" in page
    for visit in range(3):
        earn(api, serial, f"v{visit}")
        clock.advance(DAY)
    page = card_page(app, serial)
    badges = page[page.index('id="badges"'):page.index("</ul>", page.index('id="badges"'))]
    assert badges.count("<li>") == 1 and "First visit" in badges
    # 3 of 5 visits is nearer than 0 of 2 locations.
    assert "Next: 5 visits in 30 days, 3 of 5 visits" in page
    assert '<progress max="5" value="3"' in page
    assert "Kunjungan pertama" in card_page(app, serial, "id")
