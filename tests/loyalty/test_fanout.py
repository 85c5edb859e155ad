"""The estimated finish of a streamed update: the pace kept since it started, carried on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.loyalty import fanout
from app.outbox.models import PassUpdate, UpdateStatus

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def _update(**values: object) -> PassUpdate:
    return PassUpdate(program_id=1, requested_by="test", **{
        "status": UpdateStatus.PUSHING, "started_at": T0, "cards_total": 1_000_000,
        "cards_done": 0, **values})


def test_the_finish_is_the_pace_so_far_carried_over_what_is_left() -> None:
    update = _update(cards_done=250_000)
    # A quarter done in 10 minutes: the other three quarters take 30 more.
    assert fanout.eta(update, T0 + timedelta(minutes=10)) == T0 + timedelta(minutes=40)
    # Slower later: the estimate moves out.
    update.cards_done = 300_000
    assert fanout.eta(update, T0 + timedelta(minutes=20)) == \
        T0 + timedelta(minutes=20) + timedelta(seconds=700_000 * 1200 / 300_000)


def test_no_estimate_before_the_first_card_nor_once_done() -> None:
    assert fanout.eta(_update(cards_done=0), T0 + timedelta(minutes=1)) is None
    assert fanout.eta(_update(started_at=None, status=UpdateStatus.QUEUED), T0) is None
    assert fanout.eta(_update(cards_done=1_000_000, status=UpdateStatus.DONE),
                      T0 + timedelta(minutes=5)) is None


def test_a_program_change_names_what_changed() -> None:
    assert fanout.fields_of(_update(fields="background_color,logo")) == frozenset(
        {"background_color", "logo"})
    assert fanout.fields_of(_update(fields=None)) is None
