"""Refunds claw back what a purchase earned, in proportion, exactly: through the API, on SQLite
and PostgreSQL, with the app's clock moved by the test.

The test program earns 1 point per Rp 10.000 (1,000,000 minor units); Silver (500 lifetime
points) earns 150%.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.auth.models import ApiKey
from app.extensions import db
from app.loyalty import ledger
from app.loyalty.models import Card, EntryKind, LedgerEntry, PointLot, Program
from app.loyalty.refunds import clawback
from app.redemption import till
from app.staff.actor import TillActor
from tests.clock import FakeClock
from tests.factories import ApiClient, create_card, row_counts
from tests.loyalty.test_ledger_model import ledger_violations

DAY = 86_400.0
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CLOCK_START = T0  # where this module's fake clock starts (tests/loyalty/conftest.py)
RP = 100  # minor units of a rupiah
PROBLEM = "application/problem+json"


@pytest.fixture
def pos(api: ApiClient, keys: dict[str, str]) -> ApiClient:
    return api.as_(keys["pos"])


def _settings(app: Any, program: dict[str, Any], **values: Any) -> None:
    with app.app_context():
        row = db.session.get(Program, program["id"])
        for name, value in values.items():
            setattr(row, name, value)
        db.session.commit()


def _buy(pos: ApiClient, serial: str, rupiah: int, reference: str) -> dict[str, Any]:
    response = pos.post(f"/api/v1/cards/{serial}/earn", json={
        "amount": rupiah * RP, "currency": "IDR", "reference": reference})
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def _refund(client: ApiClient, serial: str, rupiah: int, reference: str, key: str,
            **body: Any) -> Any:
    return client.post(f"/api/v1/cards/{serial}/refunds", json={
        "reference": reference, "amount": rupiah * RP, "currency": "IDR", **body},
        headers={"Idempotency-Key": key})


def _card_id(app: Any, serial: str) -> int:
    with app.app_context():
        card_id = db.session.scalar(select(Card.id).where(Card.serial_number == serial))
        db.session.rollback()
        return int(card_id)


def _lots(app: Any, serial: str) -> list[tuple[int, int, bool]]:
    """(points, remaining, pending) of the card's lots, oldest first."""
    with app.app_context():
        return [(lot.points, lot.remaining, lot.pending) for lot in db.session.scalars(
            select(PointLot).where(PointLot.card_id == _card_id(app, serial))
            .order_by(PointLot.id))]


def test_rp_100000_that_earned_10_refunded_rp_50000_twice_claws_back_5_and_5_then_409(
        app: Any, api: ApiClient, pos: ApiClient, program: dict[str, Any]) -> None:
    serial = create_card(api, program)["serial_number"]
    bought = _buy(pos, serial, 100_000, "INV-1")
    assert bought["entry"]["points"] == 10

    first = _refund(pos, serial, 50_000, "INV-1", "refund-1", reason="one cup back")
    assert first.status_code == 201, first.json
    body = first.json
    assert (body["clawed_back"], body["pending_clawed_back"], body["shortfall"]) == (5, 0, 0)
    assert (body["balance"], body["lifetime_points"]) == (5, 5)
    assert body["purchase"] == {
        "entry_id": bought["entry"]["id"], "reference": "INV-1", "amount": 10_000_000,
        "currency": "IDR", "earned": 10, "refunded": 5_000_000, "left": 5_000_000}
    entry = body["entry"]
    assert (entry["kind"], entry["points"], entry["pending_points"], entry["shortfall"],
            entry["amount"], entry["currency"], entry["reference"], entry["reason"],
            entry["purchase_id"], entry["balance_after"]) == (
        "refund", -5, 0, 0, 5_000_000, "IDR", "INV-1", "one cup back", bought["entry"]["id"],
        5)

    second = _refund(pos, serial, 50_000, "INV-1", "refund-2")
    assert second.status_code == 201, second.json
    assert (second.json["clawed_back"], second.json["balance"]) == (5, 0)
    assert (second.json["purchase"]["refunded"], second.json["purchase"]["left"]) == (
        10_000_000, 0)

    third = _refund(pos, serial, 50_000, "INV-1", "refund-3")
    assert third.status_code == 409
    assert third.content_type == PROBLEM
    assert third.json["type"].endswith(":refund-exceeds-purchase")
    assert third.json["refundable"] == 0
    assert ledger_violations(app, [_card_id(app, serial)]) == []
    with app.app_context():
        entries = [(e.kind, e.points, e.amount) for e in db.session.scalars(
            select(LedgerEntry).order_by(LedgerEntry.id))]
    assert entries == [(EntryKind.EARN, 10, 10_000_000), (EntryKind.REFUND, -5, 5_000_000),
                       (EntryKind.REFUND, -5, 5_000_000)]


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(earned=st.integers(0, 10_000), amount=st.integers(1, 10**12),
       cuts=st.lists(st.floats(0, 1), max_size=12))
def test_partial_refunds_claw_back_at_most_what_was_earned_and_all_of_it_in_the_end(
        earned: int, amount: int, cuts: list[float]) -> None:
    parts = sorted({int(amount * cut) for cut in cuts} | {0, amount})
    settled = 0
    for before, after in pairwise(parts):
        taken = clawback(earned, amount, before, after - before, settled)
        settled += taken
        assert 0 <= settled <= earned
        assert settled == earned * after // amount
    assert settled == earned


def test_random_partial_refunds_that_add_up_to_the_purchase_claw_back_exactly_what_it_earned(
        app: Any, api: ApiClient, pos: ApiClient, program: dict[str, Any]) -> None:
    runs = iter(range(10**6))

    @settings(max_examples=6, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(rupiah=st.integers(10_000, 3_000_000), parts=st.lists(
        st.integers(1, 10**6), min_size=1, max_size=6))
    def refund_in_parts(rupiah: int, parts: list[int]) -> None:
        run = next(runs)
        serial = create_card(api, program, name=f"Buyer {run}")["serial_number"]
        earned = _buy(pos, serial, rupiah, "R")["entry"]["points"]
        total, weights = rupiah * RP, sum(parts)
        amounts = [total * p // weights for p in parts]
        amounts[-1] += total - sum(amounts)
        clawed = 0
        for number, amount in enumerate(a for a in amounts if a > 0):
            response = pos.post(f"/api/v1/cards/{serial}/refunds", json={
                "reference": "R", "amount": amount, "currency": "IDR"},
                headers={"Idempotency-Key": f"{run}-{number}"})
            assert response.status_code == 201, response.json
            clawed += response.json["clawed_back"]
            assert response.json["shortfall"] == 0
            assert clawed <= earned
        assert clawed == earned
        assert api.get(f"/api/v1/cards/{serial}").json["balance"] == 0
        assert ledger_violations(app, [_card_id(app, serial)]) == []

    refund_in_parts()


def test_a_refund_of_a_pending_purchase_takes_its_pending_points(
        app: Any, api: ApiClient, pos: ApiClient, program: dict[str, Any],
        clock: FakeClock) -> None:
    _settings(app, program, pending_days=7)
    serial = create_card(api, program)["serial_number"]
    api.post(f"/api/v1/cards/{serial}/adjust", json={"points": 3, "reason": "welcome"})
    _buy(pos, serial, 100_000, "INV-P")
    assert _lots(app, serial) == [(3, 3, False), (10, 10, True)]
    response = _refund(pos, serial, 30_000, "INV-P", "rp")
    assert response.status_code == 201, response.json
    assert (response.json["clawed_back"], response.json["pending_clawed_back"],
            response.json["shortfall"], response.json["balance"]) == (0, 3, 0, 3)
    assert response.json["entry"]["pending_points"] == -3
    assert _lots(app, serial) == [(3, 3, False), (10, 7, True)]
    assert ledger_violations(app, [_card_id(app, serial)]) == []
    # The rest is released when due; the release counts toward the tier, the refunded part not.
    clock.advance(7 * DAY)
    spent = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -1, "reason": "x"})
    assert spent.status_code == 201, spent.json
    assert (spent.json["balance"], spent.json["lifetime_points"]) == (9, 7)
    assert ledger_violations(app, [_card_id(app, serial)]) == []


@pytest.mark.parametrize("setting", ["clamp", "forgive"])
def test_a_refund_of_spent_points_clamps_at_zero_or_forgives_recording_the_shortfall(
        app: Any, api: ApiClient, pos: ApiClient, program: dict[str, Any],
        setting: str) -> None:
    _settings(app, program, refund_shortfall=setting)
    serial = create_card(api, program)["serial_number"]
    _buy(pos, serial, 100_000, "INV-S")  # 10 points, the oldest lot
    api.post(f"/api/v1/cards/{serial}/adjust", json={"points": 3, "reason": "goodwill"})
    spent = api.post(f"/api/v1/cards/{serial}/adjust", json={"points": -12, "reason": "gift"})
    assert spent.json["balance"] == 1
    response = _refund(pos, serial, 100_000, "INV-S", "rs")
    assert response.status_code == 201, response.json
    got = (response.json["clawed_back"], response.json["shortfall"], response.json["balance"])
    assert got == ((1, 9, 0) if setting == "clamp" else (0, 10, 1))
    assert response.json["entry"]["shortfall"] == got[1]
    with app.app_context():
        entry = db.session.get(LedgerEntry, response.json["entry"]["id"])
        assert (entry.points, entry.shortfall) == (-got[0], got[1])
    assert ledger_violations(app, [_card_id(app, serial)]) == []
    # The purchase is refunded in full: nothing more to claw back, and nothing left to refund.
    again = _refund(pos, serial, 1, "INV-S", "rs-2")
    assert again.status_code == 409
    assert again.json["type"].endswith(":refund-exceeds-purchase")


def test_a_retry_with_the_same_key_answers_as_the_first_and_another_body_is_refused(
        app: Any, api: ApiClient, pos: ApiClient, program: dict[str, Any]) -> None:
    serial = create_card(api, program)["serial_number"]
    _buy(pos, serial, 100_000, "INV-I")
    first = _refund(pos, serial, 20_000, "INV-I", "same")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    later = _refund(pos, serial, 30_000, "INV-I", "other")
    assert later.status_code == 201
    retry = _refund(pos, serial, 20_000, "INV-I", "same")
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert {**retry.json, "lifetime_points": None} == {**first.json, "lifetime_points": None}
    reused = _refund(pos, serial, 10_000, "INV-I", "same")
    assert reused.status_code == 422
    assert reused.content_type == PROBLEM
    assert reused.json["type"].endswith(":idempotency-key-reused")
    assert api.get(f"/api/v1/cards/{serial}").json["balance"] == 5
    assert row_counts(app, LedgerEntry) == (3,)


def test_refunds_refuse_what_they_cannot_do_with_a_problem_and_write_nothing(
        app: Any, api: ApiClient, pos: ApiClient, keys: dict[str, str],
        program: dict[str, Any]) -> None:
    serial = create_card(api, program)["serial_number"]
    _buy(pos, serial, 100_000, "INV-B")
    _buy(pos, serial, 20_000, "TWICE")
    _buy(pos, serial, 30_000, "TWICE")
    pos.post(f"/api/v1/cards/{serial}/earn", json={"points": 4, "reference": "POINTS"})
    url = f"/api/v1/cards/{serial}/refunds"
    good = {"reference": "INV-B", "amount": 1_000_000, "currency": "IDR"}
    cases = [
        ("no key", pos, url, good, {}, 422, "validation"),
        ("empty key", pos, url, good, {"Idempotency-Key": ""}, 422, "validation"),
        ("wrong currency", pos, url, {**good, "currency": "THB"}, None, 422, "unprocessable"),
        ("unknown currency", pos, url, {**good, "currency": "EUR"}, None, 422, "validation"),
        ("no currency", pos, url, {"reference": "INV-B", "amount": 5}, None, 422, "validation"),
        ("amount 0", pos, url, {**good, "amount": 0}, None, 422, "validation"),
        ("amount negative", pos, url, {**good, "amount": -100}, None, 422, "validation"),
        ("amount a fraction", pos, url, {**good, "amount": 10.5}, None, 422, "validation"),
        ("amount a string", pos, url, {**good, "amount": "100"}, None, 422, "validation"),
        ("amount huge", pos, url, {**good, "amount": 10**30}, None, 422, "validation"),
        ("no reference", pos, url, {"amount": 5, "currency": "IDR"}, None, 422, "validation"),
        ("unknown field", pos, url, {**good, "points": 3}, None, 422, "validation"),
        ("unknown reference", pos, url, {**good, "reference": "NOPE"}, None, 404,
         "purchase-not-found"),
        ("two purchases", pos, url, {**good, "reference": "TWICE"}, None, 409,
         "ambiguous-reference"),
        ("an earn of points", pos, url, {**good, "reference": "POINTS"}, None, 409,
         "not-a-purchase"),
        ("more than the purchase", pos, url, {**good, "amount": 10_000_001}, None, 409,
         "refund-exceeds-purchase"),
        ("unknown card", pos, "/api/v1/cards/NOPE/refunds", good, None, 404, "not-found"),
        ("staff", api.as_(keys["staff"]), url, good, None, 403, None),
        ("marketer", api.as_(keys["marketer"]), url, good, None, 403, None),
        ("no auth", api.as_(None), url, good, None, 401, None),
    ]
    before = row_counts(app, LedgerEntry, PointLot)
    for number, (name, client, path, body, headers, status, problem) in enumerate(cases):
        sent = {"Idempotency-Key": f"bad-{number}"} if headers is None else headers
        response = client.post(path, json=body, headers=sent)
        assert response.status_code == status, (name, response.json)
        assert response.content_type == PROBLEM, name
        if problem:
            assert response.json["type"] == f"urn:pointpass:problem:{problem}", name
    assert row_counts(app, LedgerEntry, PointLot) == before
    assert api.get(f"/api/v1/cards/{serial}").json["balance"] == 19


def test_a_reversed_purchase_has_nothing_left_to_refund_and_a_voided_card_refunds_nothing(
        app: Any, api: ApiClient, pos: ApiClient, program: dict[str, Any]) -> None:
    serial = create_card(api, program)["serial_number"]
    bought = _buy(pos, serial, 100_000, "INV-R")
    purchase = bought["entry"]["id"]
    with app.app_context(), ledger.posting(serial) as p:  # what the till's undo writes
        p.post(EntryKind.REVERSE, -p.earned_by(purchase), actor="test", reverses_id=purchase,
               take_first_from=purchase, counts_toward_tier=True)
    response = _refund(pos, serial, 10_000, "INV-R", "rr")
    assert response.status_code == 409
    assert response.json["type"].endswith(":nothing-earned")

    _buy(pos, serial, 100_000, "INV-V")
    assert api.post(f"/api/v1/cards/{serial}/void", json={"reason": "lost"}).status_code == 200
    before = row_counts(app, LedgerEntry)
    voided = _refund(pos, serial, 10_000, "INV-V", "rv")
    assert voided.status_code == 410
    assert voided.content_type == PROBLEM
    assert voided.json["type"].endswith(":card-voided")
    assert row_counts(app, LedgerEntry) == before


def test_a_refund_too_small_for_a_point_is_recorded_with_0_points(
        app: Any, api: ApiClient, pos: ApiClient, program: dict[str, Any]) -> None:
    serial = create_card(api, program)["serial_number"]
    _buy(pos, serial, 100_000, "INV-T")
    response = _refund(pos, serial, 9_999, "INV-T", "tiny")  # 9.999 / 100.000 of 10 points
    assert response.status_code == 201, response.json
    assert (response.json["clawed_back"], response.json["entry"]["points"],
            response.json["balance"]) == (0, 0, 10)
    rest = _refund(pos, serial, 90_001, "INV-T", "rest")
    assert (rest.json["clawed_back"], rest.json["balance"]) == (10, 0)


def test_the_openapi_document_describes_refunds(app: Any) -> None:
    spec = app.test_client().get("/api/openapi.json").json
    operation = spec["paths"]["/api/v1/cards/{serial}/refunds"]["post"]
    header = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert header["required"] is True
    assert {"201", "404", "409", "410", "422"} <= set(operation["responses"])
    refund_in = spec["components"]["schemas"]["RefundIn"]
    assert set(refund_in["required"]) == {"reference", "amount", "currency"}
    assert refund_in["properties"]["amount"]["minimum"] == 1


def test_undoing_a_partly_refunded_purchase_at_the_till_takes_back_only_what_is_left(
        app: Any, api: ApiClient, pos: ApiClient, program: dict[str, Any]) -> None:
    serial = create_card(api, program)["serial_number"]
    api.post(f"/api/v1/cards/{serial}/adjust", json={"points": 20, "reason": "welcome"})
    bought = _buy(pos, serial, 100_000, "INV-U")  # the pos key's last action
    refunded = _refund(api, serial, 50_000, "INV-U", "ru")  # by the admin key
    assert (refunded.json["clawed_back"], refunded.json["balance"]) == (5, 25)
    with app.app_context():
        pos_key = db.session.scalar(select(ApiKey).where(ApiKey.name == "test pos"))
        undo = till.undo_last(TillActor(kind="api_key", id=pos_key.id, name=pos_key.name),
                              entry_id=bought["entry"]["id"])
    assert (undo.points, undo.balance) == (-5, 20)
    assert ledger_violations(app, [_card_id(app, serial)]) == []


def test_a_purchase_refunded_in_full_has_nothing_to_undo_at_the_till(
        app: Any, api: ApiClient, pos: ApiClient, program: dict[str, Any]) -> None:
    serial = create_card(api, program)["serial_number"]
    bought = _buy(pos, serial, 100_000, "INV-F")
    assert _refund(api, serial, 100_000, "INV-F", "rf").json["balance"] == 0
    with app.app_context():
        pos_key = db.session.scalar(select(ApiKey).where(ApiKey.name == "test pos"))
        with pytest.raises(till.NothingToUndo):
            till.undo_last(TillActor(kind="api_key", id=pos_key.id, name=pos_key.name),
                           entry_id=bought["entry"]["id"])
    assert row_counts(app, LedgerEntry) == (2,)


def test_parallel_refunds_of_one_purchase_claw_back_its_points_once(
        app: Any, api: ApiClient, pos: ApiClient, keys: dict[str, str],
        program: dict[str, Any]) -> None:
    serial = create_card(api, program)["serial_number"]
    _buy(pos, serial, 100_000, "INV-C")  # 10 points; twelve keys refund Rp 10.000 each
    threads = 24
    barrier = threading.Barrier(threads)

    def refund(i: int) -> tuple[str, int, int | None]:
        client = ApiClient(app.test_client(), keys["pos"])
        barrier.wait()
        response = _refund(client, serial, 10_000, "INV-C", f"c-{i % 12}")
        return f"c-{i % 12}", response.status_code, (
            response.json["entry"]["id"] if response.status_code == 201 else None)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(refund, range(threads)))
    assert {status for _key, status, _entry in results} <= {201, 409}, results
    by_key: dict[str, set[Any]] = {}
    for key, _status, entry in results:
        by_key.setdefault(key, set()).add(entry)
    assert all(len(entries) == 1 for entries in by_key.values()), by_key  # one answer a key
    assert sum(entries != {None} for entries in by_key.values()) == 10
    assert api.get(f"/api/v1/cards/{serial}").json["balance"] == 0
    assert row_counts(app, LedgerEntry) == (11,)
    assert ledger_violations(app, [_card_id(app, serial)]) == []
