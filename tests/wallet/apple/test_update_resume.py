"""A marketer update survives the death of the worker running it.

The run records how far it got (a keyset position) in the update's row, in the same
transaction as each chunk of cards it marks, and holds a lease it renews after every chunk.
When the lease runs out the periodic sweep asks for another run, which resumes after the last
card marked: no card is marked, and no device pushed, twice; the counts stay true.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.loyalty import changes
from app.loyalty.models import Card
from app.outbox import drain as outbox
from app.outbox.models import OutboxEntry
from app.wallet.apple import pass_files, push
from tests.apns_server import APNsTestServer
from tests.factories import (
    ApiClient,
    admin_api,
    create_card,
    create_program,
    make_app,
    make_worker_app,
    register_device,
    settle,
)
from tests.phones import Phone
from tests.processes import group_alive, start_worker, wait_until
from tests.prometheus import moved, scrape

BIN = Path(sys.executable).parent


def _cards_with_phones(app: Flask, api: ApiClient, count: int) -> tuple[dict[str, Any],
                                                                        list[Phone]]:
    """A program with ``count`` cards, each added to its own iPhone (one push token each)."""
    program = create_program(api)
    phones = [register_device(app, create_card(api, program, name=f"Member {i}")["serial_number"])
              for i in range(count)]
    return program, phones


def _update_rows(app: Flask, update_id: int) -> int:
    """Outbox rows written for the update and not yet delivered."""
    with app.app_context():
        count = db.session.scalar(select(func.count(OutboxEntry.id))
                                  .where(OutboxEntry.update_id == update_id)) or 0
        db.session.rollback()
        return count


def _assert_done_with_true_counts(api: ApiClient, url: str, phones: list[Phone],
                                  apns: APNsTestServer) -> None:
    progress = api.get(url).json
    assert progress["status"] == "done", progress
    cards = len(phones)
    assert (progress["cards_total"], progress["cards_done"]) == (cards, cards), progress
    assert (progress["devices_pushed"], progress["failures"]) == (cards, 0), progress
    assert {phone.token: len(apns.requests_for(phone.token)) for phone in phones} == {
        phone.token: 1 for phone in phones}
    assert len(apns.requests) == cards


class WorkerKilled(BaseException):
    """Stands for the process dying: nothing in the run gets to handle it."""


def test_an_update_interrupted_while_marking_is_resumed_by_the_sweep(
    push_app: Flask, apns: APNsTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = push_app
    # Two cards a chunk; a lease of 0 s: a run that stops is at once presumed dead.
    app.config.update(UPDATE_CHUNK=2, UPDATE_LEASE_SECONDS=0)
    api = admin_api(app)
    program, phones = _cards_with_phones(app, api, 7)
    settle(app)
    apns.reset()

    touch_cards = changes.touch_cards
    calls = []

    def dies_on_the_third_chunk(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 3:
            raise WorkerKilled
        return touch_cards(*args, **kwargs)

    monkeypatch.setattr(changes, "touch_cards", dies_on_the_third_chunk)
    response = api.post(f"/api/v1/programs/{program['id']}/updates",
                        json={"message": "Double points this weekend"})
    assert response.status_code == 202
    url = response.json["url"]
    settle(app)
    monkeypatch.undo()

    progress = api.get(url).json
    assert progress["status"] == "marking"  # interrupted after two chunks of two cards
    assert progress["cards_total"] == 7
    assert progress["cards_done"] + _update_rows(app, progress["id"]) == 4

    with app.app_context():
        from app.wallet import sweep

        sweep.sweep()  # what the periodic sweep runs
    settle(app)

    _assert_done_with_true_counts(api, url, phones, apns)
    with app.app_context():
        # Each card was marked once: created at version 1, one bump for the update.
        assert set(db.session.scalars(select(Card.version))) == {2}
        assert outbox.pending() == 0


def test_a_drain_killed_mid_batch_pushes_again_only_the_part_it_was_on(
    push_app: Flask, apns: APNsTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is pushed in parts, each finished (rows deleted, counted, committed) right
    after its pushes: a drain that dies in the third part leaves the first two done, and the
    next drain pushes the rest; no device is pushed twice."""
    app = push_app
    # Not paced: auto would pre-build a pass to time its serving, a part of its own.
    app.config.update(OUTBOX_LEASE_SECONDS=0, PASS_PREBUILD=True, APNS_PUSH_RATE="0")
    api = admin_api(app)
    program, phones = _cards_with_phones(app, api, 12)
    settle(app)
    apns.reset()
    monkeypatch.setattr(push, "PART", 5)  # three parts: 5, 5 and 2 cards
    prebuild = pass_files.prebuild
    parts = []

    def dies_on_the_third_part(card_ids: list[int], wallet: Any) -> int:
        parts.append(card_ids)
        if len(parts) == 3:
            raise WorkerKilled
        return prebuild(card_ids, wallet)

    monkeypatch.setattr(pass_files, "prebuild", dies_on_the_third_part)
    response = api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "Hi"})
    assert response.status_code == 202
    url = response.json["url"]
    settle(app)
    monkeypatch.undo()

    assert [len(part) for part in parts] == [5, 5, 2]  # one batch, killed in its last part
    assert len(apns.requests) == 10
    progress = api.get(url).json
    assert (progress["status"], progress["cards_done"], progress["devices_pushed"]) == (
        "pushing", 10, 10)
    assert _update_rows(app, progress["id"]) == 2  # leased by the dead drain

    with app.app_context():
        outbox.drain()  # the next drain (the lease is over at once here)
    _assert_done_with_true_counts(api, url, phones, apns)


def test_the_devices_a_dead_drain_pushed_and_that_have_asked_since_are_not_pushed_again(
    push_app: Flask, apns: APNsTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drain killed between its pushes and their bookkeeping leaves its rows to the next.
    The devices it pushed ask for their changed serials at once, as Wallet does: the next
    drain does not push them again (they count as skipped, already current) and pushes only
    the devices that have not asked (their push may never have left)."""
    app = push_app
    app.config.update(OUTBOX_LEASE_SECONDS=0, APNS_PUSH_RATE="0")
    api = admin_api(app)
    program, phones = _cards_with_phones(app, api, 6)
    for phone in phones:
        phone.changed()  # each has its pass: a tag from before the update
    settle(app)
    apns.reset()
    client_for = push.client_for

    class DiesAfterPushing:
        def __init__(self, client: Any) -> None:
            self.client = client

        def push_many(self, tokens: Any) -> Any:
            self.client.push_many(tokens)
            raise WorkerKilled

    monkeypatch.setattr(push, "client_for",
                        lambda *args: DiesAfterPushing(client_for(*args)))
    response = api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "Hi"})
    assert response.status_code == 202
    url = response.json["url"]
    settle(app)
    monkeypatch.undo()

    assert len(apns.requests) == 6  # every device pushed; none of it recorded
    progress = api.get(url).json
    assert (progress["status"], progress["cards_done"], progress["devices_pushed"]) == (
        "pushing", 0, 0)
    asked, offline = phones[:4], phones[4:]
    for phone in asked:
        assert len(phone.changed()) == 1  # Wallet asks what changed, on the push

    before = scrape(api.client)
    with app.app_context():
        outbox.drain()  # the next drain (the lease is over at once here)
    assert moved(before, scrape(api.client), "pointpass_apns_pushes_total",
                 outcome="skipped", reason="already-current") == 4
    progress = api.get(url).json
    assert (progress["status"], progress["cards_done"]) == ("done", 6), progress
    assert (progress["devices_pushed"], progress["devices_skipped"]) == (2, 4), progress
    assert progress["skipped"] == {"already-current": 4}
    assert {phone.token: len(apns.requests_for(phone.token)) for phone in phones} == {
        **{phone.token: 1 for phone in asked}, **{phone.token: 2 for phone in offline}}


def test_a_device_that_asked_before_the_change_is_pushed(
    push_app: Flask, apns: APNsTestServer
) -> None:
    """Asking for changed serials skips the pushes of the changes made before, not after."""
    app = push_app
    api = admin_api(app)
    program, phones = _cards_with_phones(app, api, 2)
    settle(app)
    for phone in phones:
        phone.changed()
    apns.reset()
    response = api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "Hi"})
    settle(app)
    progress = api.get(response.json["url"]).json
    assert (progress["status"], progress["devices_pushed"], progress["devices_skipped"]) == (
        "done", 2, 0), progress
    assert len(apns.requests) == 2


@pytest.mark.postgres
def test_two_runs_of_one_update_never_mark_a_card_twice(pg_app: Flask) -> None:
    """A run presumed dead (its lease ran out) may still be alive: the second run that
    resumes the update and the first one share the work, and each card is marked once."""
    import threading

    from app.loyalty import fanout

    app = pg_app
    app.config.update(UPDATE_CHUNK=3, UPDATE_LEASE_SECONDS=0)
    api = admin_api(app)
    program = create_program(api)
    for i in range(12):
        create_card(api, program, name=f"Member {i}")
    settle(app)
    with app.app_context():
        card_ids = list(db.session.scalars(select(Card.id).order_by(Card.id)))
        db.session.rollback()

    blocker = psycopg.connect(app.config["DATABASE_URL"])
    observer = psycopg.connect(app.config["DATABASE_URL"], autocommit=True)

    def waiting(count: int) -> Callable[[], bool]:
        def check() -> bool:
            row = observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'").fetchone()
            return bool(row and row[0] == count)
        return check

    def second_run(update_id: int) -> None:
        with app.app_context():
            fanout.run(update_id)

    try:
        blocker.execute("SELECT id FROM cards WHERE id = %s FOR UPDATE", (card_ids[4],))
        response = api.post(f"/api/v1/programs/{program['id']}/updates", json={})
        url, update_id = response.json["url"], response.json["id"]
        wait_until(waiting(1), "the first run to reach the held card", 60)  # in its second chunk
        second = threading.Thread(target=second_run, args=(update_id,))
        second.start()
        wait_until(waiting(2), "the second run to wait for the first", 60)
        blocker.rollback()
        second.join(30)
        assert not second.is_alive()
        settle(app)
    finally:
        blocker.close()
        observer.close()

    progress = api.get(url).json
    assert (progress["status"], progress["cards_total"]) == ("done", 12)
    with app.app_context():
        assert sorted(db.session.scalars(select(Card.version))) == [2] * 12


@pytest.fixture
def rq_pg_push_app(postgres_database: Any, tmp_path: Path,
                   apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    yield from make_worker_app(postgres_database, tmp_path, **apns_app_settings,
                               OUTBOX_LEASE_SECONDS=2, UPDATE_CHUNK=5, UPDATE_LEASE_SECONDS=2)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize("change", ["message", "design"])
def test_kill_9_of_the_worker_during_an_update_loses_nothing(
    rq_pg_push_app: Flask, apns: APNsTestServer, change: str
) -> None:
    """A marketer's message, or a design change (the same streamed update, started by the
    change itself): killed halfway, it resumes, and no device is pushed twice."""
    app = rq_pg_push_app
    env = app.config["TEST_WORKER_ENV"]
    api = admin_api(app)
    program, phones = _cards_with_phones(app, api, 24)  # five chunks of five cards (and 4)
    with app.app_context():
        card_ids = list(db.session.scalars(select(Card.id).order_by(Card.id)))
        db.session.rollback()

    # Hold the 13th card's row: the run marks chunks 1 and 2, then waits on chunk 3, where it
    # is killed. (A lock, not a sleep: the worker is observably stuck there.)
    blocker = psycopg.connect(app.config["DATABASE_URL"])
    # pg_stat_activity is read once per transaction: look at it from outside any.
    observer = psycopg.connect(app.config["DATABASE_URL"], autocommit=True)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        blocker.execute("SELECT id FROM cards WHERE id = %s FOR UPDATE", (card_ids[12],))

        if change == "message":
            response = api.post(f"/api/v1/programs/{program['id']}/updates",
                                json={"message": "Double points this weekend"})
            assert response.status_code == 202
            url = response.json["url"]
        else:
            response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                                   json={"background_color": "#123524"})
            assert response.status_code == 200, response.json
            url = response.json["pass_update"]
        update_id = api.get(url).json["id"]
        workers.append(start_worker(env))

        def stuck_on_the_third_chunk() -> bool:
            waiting = observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'").fetchone()
            return bool(waiting and waiting[0] == 1)

        # A worker process imports and starts the whole app first: give it time on a busy box.
        wait_until(stuck_on_the_third_chunk, "the run to reach the held card", timeout=120)
        assert api.get(url).json["status"] == "marking"
        assert _update_rows(app, update_id) == 10  # two chunks marked, none pushed yet
        assert apns.requests == []  # the worker was busy marking: no drain ran

        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait(10)
        # rq's scheduler, forked by the worker, goes with it rather than living on as an orphan.
        wait_until(lambda: not group_alive(workers[0].pid), "the dead worker's scheduler to stop",
              timeout=30)
        blocker.rollback()  # the dead run's transaction ends; its third chunk is undone

        workers.append(start_worker(env))
        wait_until(lambda: api.get(url).json["status"] == "done", "the update to finish",
              timeout=120)
    finally:
        blocker.close()
        observer.close()
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(10)
            if group_alive(worker.pid):
                os.killpg(worker.pid, signal.SIGKILL)

    _assert_done_with_true_counts(api, url, phones, apns)
    with app.app_context():
        assert set(db.session.scalars(select(Card.version))) == {2}
        assert outbox.pending() == 0


@pytest.fixture
def short_jobs_app(database: Any, tmp_path: Path,
                   apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    """Runs and drains that hand over after every chunk and batch (0 s budgets)."""
    yield from make_app(database, tmp_path, **apns_app_settings, UPDATE_CHUNK=2,
                        UPDATE_RUN_SECONDS=0, OUTBOX_BATCH=2, OUTBOX_DRAIN_SECONDS=0)


def test_long_runs_and_drains_hand_over_to_fresh_jobs(short_jobs_app: Flask,
                                                      apns: APNsTestServer) -> None:
    """A big update's run and its drains stop after their time budget and ask for the next
    job (rq would kill a job at its timeout, between pushes and their bookkeeping): every
    card is marked once and every device pushed once all the same."""
    app = short_jobs_app
    api = admin_api(app)
    program, phones = _cards_with_phones(app, api, 7)
    settle(app)
    apns.reset()
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"background_color": "#123524"})
    assert response.status_code == 200, response.json
    settle(app)
    _assert_done_with_true_counts(api, response.json["pass_update"], phones, apns)
    with app.app_context():
        assert set(db.session.scalars(select(Card.version))) == {2}
        assert outbox.pending() == 0
