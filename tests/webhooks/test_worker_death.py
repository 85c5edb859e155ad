"""A webhook delivery survives the death of the worker sending it (``kill -9``): the delivery
row was written with the change and leased before the POST; when the lease runs out the
periodic sweep of a new worker asks for a drain, which sends it again. And while a receiver
keeps the worker's webhook drain waiting, the same worker still pushes wallet updates."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from standardwebhooks import Webhook

from app.extensions import db
from app.webhooks.models import WebhookDelivery
from tests.apns_server import APNsTestServer
from tests.factories import (
    admin_api,
    create_card,
    create_program,
    make_worker_app,
    register_device,
)
from tests.processes import group_alive, start_worker, wait_until
from tests.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import deliveries, hook_settings, register


@pytest.fixture
def rq_hook_app(postgres_database: Any, tmp_path: Path, receiver_certs: dict[str, Path],
                apns_app_settings: dict[str, Any]) -> Iterator[Flask]:
    yield from make_worker_app(postgres_database, tmp_path, **apns_app_settings,
                               **hook_settings(receiver_certs, WEBHOOK_LEASE_SECONDS=2,
                                               WEBHOOK_TIMEOUT_SECONDS=60))


def _delivery(app: Flask) -> WebhookDelivery:
    with app.app_context():
        row = db.session.scalars(select(WebhookDelivery)).one()
        db.session.expunge(row)
        db.session.rollback()
        return row


@pytest.mark.redis
@pytest.mark.postgres
def test_kill_9_of_the_worker_mid_delivery_loses_nothing(
        rq_hook_app: Flask, receiver: WebhookReceiver, apns: APNsTestServer) -> None:
    app = rq_hook_app
    env = app.config["TEST_WORKER_ENV"]
    api = admin_api(app)
    program = create_program(api)
    made = register(api, program, receiver.url())
    receiver.stall = True  # the first POST gets no answer: the worker is stuck sending it
    card = create_card(api, program)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        workers.append(start_worker(env))
        # A worker process imports and starts the whole app first: give it time on a busy box.
        assert receiver.stalled.wait(120), "the worker never sent the delivery"
        leased = _delivery(app)
        assert (leased.status, leased.attempts) == ("pending", 1)
        # The receiver holds the webhook drain; the worker still tells the card's iPhone of
        # an earn (the outbox drain is a job of its own, run while the webhooks wait).
        phone = register_device(app, card["serial_number"])
        assert api.post(f"/api/v1/cards/{card['serial_number']}/earn",
                        json={"points": 5}).status_code == 201
        wait_until(lambda: apns.requests_for(phone.token), "the wallet push", timeout=30)
        assert receiver.requests == [] and len(receiver.stalled_requests) == 1

        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait(10)
        wait_until(lambda: not group_alive(workers[0].pid), "the dead worker's scheduler",
                   timeout=30)
        receiver.release()
        assert receiver.requests == []
        assert _delivery(app).status == "pending"  # nothing was recorded as sent

        workers.append(start_worker(env))
        wait_until(lambda: _delivery(app).status == "delivered", "the delivery", timeout=120)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(10)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(10)
            if group_alive(worker.pid):
                os.killpg(worker.pid, signal.SIGKILL)

    (received,) = receiver.requests
    (stalled,) = receiver.stalled_requests
    assert received.headers["webhook-id"] == stalled.headers["webhook-id"]
    payload = Webhook(made["secret"]).verify(received.body, received.headers)
    assert payload["data"]["card"]["serial_number"] == card["serial_number"]
    (log,) = deliveries(api, made["id"])
    assert log["status"] == "delivered"
    # The dead worker's attempt left no record but its count; the new one's is logged.
    assert [a["status_code"] for a in log["attempts"]] == [200]
    assert _delivery(app).attempts == 2
