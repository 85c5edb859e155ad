"""The feedback invitation a visit makes (app.feedback.service): only after a visit at a
location, at most once per the program's ``feedback_every_days`` per card, never when the
program asks for none, never for an idempotent retry, and rolled back with a failed visit.
And the one answer per invitation: a second is refused (409), an expired one too (410),
an invalid one (422), each leaving the invitation as it was."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from app import timeutil
from app.errors import DomainError, NotFound
from app.feedback import service
from app.loyalty import visits
from app.loyalty.ledger import PostingTransaction, posting
from app.loyalty.models import EntryKind
from tests.clock import FakeClock
from tests.factories import (
    ApiClient,
    admin_api,
    card_code,
    create_card,
    create_program,
    make_app,
)
from tests.feedback.conftest import DAY, add_location, ask_for_feedback, earn, invitations


def test_a_visit_at_a_location_invites_once_per_n_days(app: Any, api: ApiClient, program: dict,
                                                       card: dict, clock: FakeClock) -> None:
    serial = card["serial_number"]
    ask_for_feedback(api, program, every_days=30)
    kemang = add_location(api, program)
    first = earn(api, serial, kemang)
    [invitation] = invitations(app, serial)
    assert invitation.entry_id == first["entry"]["id"]
    assert invitation.location_id == kemang and invitation.staff_member_id is None
    assert invitation.expires_at - invitation.created_at == timedelta(
        days=service.INVITATION_DAYS)
    assert invitation.answered_at is None and invitation.score is None
    assert len(invitation.token) >= 32

    clock.advance(29 * DAY)
    earn(api, serial, kemang)
    assert len(invitations(app, serial)) == 1  # within 30 days of the last one

    clock.advance(2 * DAY)
    second = earn(api, serial, kemang)
    later = invitations(app, serial)
    assert len(later) == 2 and later[1].entry_id == second["entry"]["id"]
    assert later[0].token != later[1].token


def test_redemptions_at_a_location_invite_too(app: Any, api: ApiClient, keys: dict,
                                              program: dict, card: dict) -> None:
    serial = card["serial_number"]
    ask_for_feedback(api, program, every_days=7)
    kemang = add_location(api, program)
    earn(api, serial, points=50)  # not at a location: no invitation
    assert invitations(app, serial) == []
    reward = api.post(f"/api/v1/programs/{program['id']}/rewards",
                      json={"name": "Es Kopi", "points_cost": 20}).json
    staff = api.as_(keys["staff"])
    scan = staff.post("/api/v1/scans", json={"code": card_code(app, serial)}).json
    redeemed = staff.post("/api/v1/redemptions", json={
        "scan_id": scan["scan_id"], "reward_id": reward["id"], "location_id": kemang})
    assert redeemed.status_code == 201, redeemed.json
    [invitation] = invitations(app, serial)
    assert invitation.entry_id == redeemed.json["ledger_entry_id"]
    assert invitation.location_id == kemang


def test_no_invitation_when_the_program_asks_for_none(app: Any, api: ApiClient, program: dict,
                                                      card: dict) -> None:
    serial = card["serial_number"]
    kemang = add_location(api, program)
    earn(api, serial, kemang)
    assert invitations(app, serial) == []
    ask_for_feedback(api, program, every_days=30)
    ask_for_feedback(api, program, every_days=None)  # and off again
    earn(api, serial, kemang)
    assert invitations(app, serial) == []


def test_an_idempotent_retry_is_no_new_visit(app: Any, api: ApiClient, program: dict,
                                             card: dict, clock: FakeClock) -> None:
    serial = card["serial_number"]
    ask_for_feedback(api, program, every_days=1)
    kemang = add_location(api, program)
    first = earn(api, serial, kemang, key="visit-1")
    clock.advance(2 * DAY)  # another invitation would be due
    again = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 10, "location_id": kemang},
                     headers={"Idempotency-Key": "visit-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["entry"]["id"] == first["entry"]["id"]
    assert len(invitations(app, serial)) == 1
    earn(api, serial, kemang, key="visit-2")  # a new visit does
    assert len(invitations(app, serial)) == 2


@pytest.fixture
def failing_listener() -> Iterator[None]:
    """A visit listener told after the feedback one, that fails: the visit rolls back."""
    def fail(p: PostingTransaction, visit: visits.Visit) -> None:
        raise RuntimeError("a later listener failed")

    visits.on_visit(fail)
    yield
    visits.forget(fail)


def test_the_invitation_rolls_back_with_a_failed_visit(app: Any, api: ApiClient,
                                                       program: dict, card: dict,
                                                       failing_listener: None) -> None:
    serial = card["serial_number"]
    ask_for_feedback(api, program)
    kemang = add_location(api, program)
    response = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5, "location_id": kemang})
    assert response.status_code == 500
    assert invitations(app, serial) == []
    assert api.get(f"/api/v1/cards/{serial}").json["balance"] == 0


def test_a_refused_redemption_invites_nobody(app: Any, api: ApiClient, keys: dict,
                                             program: dict, card: dict) -> None:
    serial = card["serial_number"]
    ask_for_feedback(api, program)
    kemang = add_location(api, program)
    staff = api.as_(keys["staff"])
    scan = staff.post("/api/v1/scans", json={"code": card_code(app, serial)}).json
    refused = staff.post("/api/v1/redemptions", json={
        "scan_id": scan["scan_id"], "points": 100, "location_id": kemang})
    assert refused.status_code == 409
    assert invitations(app, serial) == []


# --- Answering ---------------------------------------------------------------------------------


def _invited(app: Any, api: ApiClient, program: dict, card: dict) -> str:
    ask_for_feedback(api, program)
    earn(api, card["serial_number"], add_location(api, program))
    [invitation] = invitations(app, card["serial_number"])
    return invitation.token


def _answer(app: Any, token: str, score: Any, comment: Any = None) -> Any:
    with app.app_context():
        return service.answer(token, score, comment, "id")


def test_an_invitation_is_answered_once(app: Any, api: ApiClient, program: dict,
                                        card: dict) -> None:
    token = _invited(app, api, program, card)
    answered = _answer(app, token, 9, "  Kopi enak, antre lama.  ")
    assert (answered.score, answered.comment, answered.language) == (
        9, "Kopi enak, antre lama.", "id")
    with pytest.raises(service.AlreadyAnswered) as refused:
        _answer(app, token, 2, "changed my mind")
    assert (refused.value.status, refused.value.code) == (409, "already-answered")
    [stored] = invitations(app, card["serial_number"])
    assert (stored.score, stored.comment, stored.answered_at) == (
        9, "Kopi enak, antre lama.", answered.answered_at)


def test_an_expired_invitation_cannot_be_answered(app: Any, api: ApiClient, program: dict,
                                                  card: dict, clock: FakeClock) -> None:
    token = _invited(app, api, program, card)
    clock.advance(service.INVITATION_DAYS * DAY + 1)
    with pytest.raises(service.InvitationExpired) as refused:
        _answer(app, token, 9)
    assert (refused.value.status, refused.value.code) == (410, "invitation-expired")
    assert invitations(app, card["serial_number"])[0].answered_at is None


def test_an_unknown_invitation_is_not_found(app: Any) -> None:
    for token in ("no-such-token", "", "x" * 65):
        with pytest.raises(NotFound):
            _answer(app, token, 9)


@pytest.mark.parametrize(("score", "comment"), [
    (11, None), (-1, None), (7.5, None), ("9", None), (True, None), (None, None),
    (9, "x" * 1001), (9, "hidden\u202emark"), (9, 42),
])
def test_an_invalid_answer_is_refused_and_writes_nothing(app: Any, api: ApiClient, program: dict,
                                                         card: dict, score: Any,
                                                         comment: Any) -> None:
    token = _invited(app, api, program, card)
    with pytest.raises(DomainError) as refused:
        _answer(app, token, score, comment)
    assert (refused.value.status, refused.value.code) == (422, "unprocessable")
    assert invitations(app, card["serial_number"])[0].answered_at is None
    assert _answer(app, token, 10, "x" * 1000).score == 10  # the limits themselves are fine


def test_nps_counts_promoters_and_detractors(app: Any, api: ApiClient, program: dict,
                                             clock: FakeClock) -> None:
    ask_for_feedback(api, program, every_days=1)
    kemang, sudirman = add_location(api, program), add_location(api, program, "Sudirman")
    scores = [(kemang, 10), (kemang, 9), (kemang, 7), (sudirman, 3), (sudirman, 9)]
    for i, (place, score) in enumerate(scores):
        serial = create_card(api, program, name=f"Member {i}")["serial_number"]
        earn(api, serial, place)
        _answer(app, invitations(app, serial)[0].token, score)
    with app.app_context():
        now = timeutil.now()
        start, end = now - timedelta(days=30), now + timedelta(seconds=1)
        overall = service.nps(program["id"], start, end)
        assert (overall.answers, overall.promoters, overall.passives, overall.detractors) == (
            5, 3, 1, 1)
        assert overall.score == pytest.approx(100 * (3 - 1) / 5)
        assert service.nps(program["id"], start, end, kemang).score == pytest.approx(
            100 * 2 / 3)
        assert service.nps(program["id"], start, end, sudirman).score == 0
        by_place = {place.name: figure.answers for place, figure in
                    service.nps_by_location(program["id"], start, end)}
        assert by_place == {"Kemang": 3, "Sudirman": 2}
        assert service.nps(program["id"], end, end + timedelta(days=1)).score is None


def _listener_statements(app: Any, serial: str, entry_id: int, location_id: int) -> list[str]:
    """The statements the feedback listener runs for a visit to ``serial`` (in a posting
    that is rolled back), from SQLite's statement trace on the posting's own connection."""
    traced: list[str] = []
    with app.app_context(), posting(serial) as p:
        raw = p.tx.connection.dbapi_connection
        raw.set_trace_callback(traced.append)
        try:
            service.invite_after_visit(p, visits.Visit(
                entry_id=entry_id, kind=EntryKind.EARN, at=timeutil.now(),
                location_id=location_id))
        finally:
            raw.set_trace_callback(None)
        p.tx.rollback()
    return traced


def test_the_listener_asks_the_database_nothing_when_feedback_is_off(
        sqlite_database: Any, tmp_path: Any) -> None:
    """Every earn and redemption tells the listener: without the setting it returns before
    any statement; with it, one look and one insert."""
    for app in make_app(sqlite_database, tmp_path):
        api = admin_api(app)
        program = create_program(api)
        serial = create_card(api, program)["serial_number"]
        kemang = add_location(api, program)
        entry_id = earn(api, serial)["entry"]["id"]
        assert _listener_statements(app, serial, entry_id, kemang) == []
        ask_for_feedback(api, program)
        asked = _listener_statements(app, serial, entry_id, kemang)
        assert [s.split()[0] for s in asked] == ["SELECT", "INSERT"], asked
