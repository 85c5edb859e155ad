"""Webhook deliveries to a real local HTTPS receiver: Standard Webhooks signatures (checked
with the ``standardwebhooks`` package), retries with backoff, the delivery log, replays,
secret rotation, disabling an endpoint that keeps failing, and the audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.audit import AuditEvent
from app.extensions import db
from app.webhooks import emit
from tests.factories import ApiClient, admin_api, create_card, create_program, make_app, settle
from tests.processes import wait_until
from tests.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import deliveries, hook_settings, register, wait_for


def _verify(secret: str, received: Any) -> dict[str, Any]:
    return Webhook(secret).verify(received.body, received.headers)  # type: ignore[no-any-return]


def test_a_registered_endpoint_gets_signed_events(
        hook_app: Flask, hook_api: ApiClient, hook_program: dict[str, Any],
        receiver: WebhookReceiver) -> None:
    made = register(hook_api, hook_program, receiver.url())
    assert made["secret"].startswith("whsec_") and made["events"] == ["member.created"]
    assert "secret" not in hook_api.get(f"/api/v1/webhooks/{made['id']}").json
    assert [w["id"] for w in hook_api.get("/api/v1/webhooks").json["webhooks"]] == [made["id"]]
    card = create_card(hook_api, hook_program, name="Budi")
    wait_for(hook_app, receiver, 1)
    (received,) = receiver.requests
    payload = _verify(made["secret"], received)
    assert payload["type"] == "member.created"
    assert payload["data"]["card"]["serial_number"] == card["serial_number"]
    assert received.headers["webhook-id"].startswith("msg_")
    # TLS to the checked address, with the URL's name for SNI, the certificate and Host.
    assert received.server_name == "localhost"
    assert received.headers["Host"] == f"localhost:{receiver.port}"
    assert received.path == "/hooks/pointpass"
    # A wrong secret does not verify.
    other = register(hook_api, hook_program, receiver.url(), events=["card.voided"])
    with pytest.raises(WebhookVerificationError):
        _verify(other["secret"], received)
    (log,) = deliveries(hook_api, made["id"])
    assert log["status"] == "delivered" and log["event_type"] == "member.created"
    assert [a["status_code"] for a in log["attempts"]] == [200]
    assert log["attempts"][0]["duration_ms"] >= 0


def test_a_failing_receiver_gets_the_event_again_after_each_failure(
        hook_app: Flask, hook_api: ApiClient, hook_program: dict[str, Any],
        receiver: WebhookReceiver) -> None:
    made = register(hook_api, hook_program, receiver.url())
    receiver.answers = [500, 503, 302]  # a redirect is a failure: never followed
    receiver.redirect_to = "https://localhost:1/elsewhere"
    create_card(hook_api, hook_program)
    wait_for(hook_app, receiver, 4)
    settle(hook_app)
    assert len(receiver.requests) == 4
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1  # the same message each time
    for received in receiver.requests:
        _verify(made["secret"], received)
    wait_until(lambda: deliveries(hook_api, made["id"])[0]["status"] == "delivered",
               "the delivery to be recorded")
    (log,) = deliveries(hook_api, made["id"])
    assert [a["status_code"] for a in log["attempts"]] == [500, 503, 302, 200]
    assert [a["succeeded"] for a in log["attempts"]] == [False, False, False, True]
    assert "redirect" in log["attempts"][2]["error"]
    assert log["last_status_code"] == 200 and log["next_attempt_at"] is None
    endpoint = hook_api.get(f"/api/v1/webhooks/{made['id']}").json
    assert endpoint["enabled"] and endpoint["failing_since"] is None


def test_after_a_rotation_both_secrets_verify_for_the_overlap(
        hook_app: Flask, hook_api: ApiClient, hook_program: dict[str, Any],
        receiver: WebhookReceiver) -> None:
    made = register(hook_api, hook_program, receiver.url())
    rotated = hook_api.post(f"/api/v1/webhooks/{made['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.json
    new = rotated.json["secret"]
    assert new != made["secret"] and new.startswith("whsec_")
    assert rotated.json["previous_secret_valid_until"] is not None
    create_card(hook_api, hook_program)
    wait_for(hook_app, receiver, 1)
    (received,) = receiver.requests
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    assert _verify(made["secret"], received)["type"] == "member.created"
    assert _verify(new, received)["type"] == "member.created"
    # Once the overlap is over only the new secret signs.
    with hook_app.app_context():
        from app.webhooks.models import WebhookEndpoint

        endpoint = db.session.get(WebhookEndpoint, made["id"])
        assert endpoint is not None
        endpoint.previous_secret_until = endpoint.created_at
        db.session.commit()
    create_card(hook_api, hook_program)
    wait_for(hook_app, receiver, 2)
    later = receiver.requests[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    _verify(new, later)


def test_a_delivery_can_be_replayed(hook_app: Flask, hook_api: ApiClient,
                                    hook_program: dict[str, Any],
                                    receiver: WebhookReceiver) -> None:
    made = register(hook_api, hook_program, receiver.url())
    create_card(hook_api, hook_program)
    wait_for(hook_app, receiver, 1)
    (first,) = deliveries(hook_api, made["id"])
    replayed = hook_api.post(f"/api/v1/webhooks/{made['id']}/deliveries/{first['id']}/replay")
    assert replayed.status_code == 202, replayed.json
    assert replayed.json["message_id"] == first["message_id"]
    assert replayed.json["status"] == "pending"
    wait_for(hook_app, receiver, 2)
    assert receiver.requests[0].body == receiver.requests[1].body
    assert receiver.requests[1].headers["webhook-id"] == first["message_id"]
    log = deliveries(hook_api, made["id"])
    assert [d["id"] for d in log][1] == first["id"] and len(log) == 2
    paged = hook_api.get(f"/api/v1/webhooks/{made['id']}/deliveries?limit=1").json
    assert len(paged["deliveries"]) == 1 and paged["next_before"] == log[0]["id"]
    older = hook_api.get(f"/api/v1/webhooks/{made['id']}/deliveries?limit=1"
                         f"&before={paged['next_before']}").json
    assert [d["id"] for d in older["deliveries"]] == [first["id"]]
    # A disabled endpoint replays nothing.
    assert hook_api.request("PATCH", f"/api/v1/webhooks/{made['id']}",
                            json={"enabled": False}).status_code == 200
    refused = hook_api.post(f"/api/v1/webhooks/{made['id']}/deliveries/{first['id']}/replay")
    assert refused.status_code == 409
    assert refused.json["type"].endswith(":webhook-disabled")


@pytest.fixture
def briefly_retrying_app(sqlite_database: Any, tmp_path: Path,
                         receiver_certs: dict[str, Path]) -> Iterator[Flask]:
    """Retries stop (and an endpoint failing that long is disabled) after 1 second."""
    yield from make_app(sqlite_database, tmp_path, **hook_settings(
        receiver_certs, WEBHOOK_RETRY_PERIOD_SECONDS=1))


def test_an_endpoint_failing_for_the_retry_period_is_disabled(
        briefly_retrying_app: Flask, receiver: WebhookReceiver) -> None:
    app = briefly_retrying_app
    api = admin_api(app)
    program = create_program(api)
    made = register(api, program, receiver.url())
    path = f"/api/v1/webhooks/{made['id']}"
    receiver.answers = [500] * 1000

    def disabled() -> bool:
        settle(app)
        return api.get(path).json["enabled"] is False

    create_card(api, program)
    wait_until(disabled, "the endpoint to be disabled")
    endpoint = api.get(path).json
    assert endpoint["disabled_reason"] == "failing"
    (log,) = deliveries(api, made["id"])
    assert log["status"] == "failed" and len(log["attempts"]) >= 2
    with app.app_context():
        records = db.session.scalars(select(AuditEvent).where(
            AuditEvent.target == f"webhook:{made['id']}")).all()
        assert [r.action for r in records] == ["webhook.create", "webhook.disable"]
        assert records[1].actor == "system"
        assert records[1].details["reason"] == "failing"
    # Enabled again: it is no longer failing.
    again = api.request("PATCH", path, json={"enabled": True})
    assert again.json["enabled"] and again.json["disabled_reason"] is None


def test_changes_are_audited_and_the_secret_never_is(
        hook_app: Flask, hook_api: ApiClient, hook_program: dict[str, Any],
        receiver: WebhookReceiver) -> None:
    made = register(hook_api, hook_program, receiver.url(), description="CRM")
    path = f"/api/v1/webhooks/{made['id']}"
    changed = hook_api.request("PATCH", path, json={
        "events": ["card.voided", "member.created", "card.voided"], "description": None})
    assert changed.status_code == 200, changed.json
    assert changed.json["events"] == ["card.voided", "member.created"]
    assert changed.json["description"] is None
    assert hook_api.request("PATCH", path, json={"enabled": False}).json["disabled_reason"] \
        == "manual"
    rotated = hook_api.post(f"{path}/rotate-secret").json["secret"]
    assert hook_api.request("DELETE", path).status_code == 204
    assert hook_api.get(path).status_code == 404
    with hook_app.app_context():
        records = db.session.scalars(select(AuditEvent).where(
            AuditEvent.target == f"webhook:{made['id']}").order_by(AuditEvent.id)).all()
        assert [r.action for r in records] == ["webhook.create", "webhook.update",
                                               "webhook.disable", "webhook.rotate",
                                               "webhook.delete"]
        everything = json.dumps([r.details for r in records])
    for secret in (made["secret"], rotated):
        assert secret not in everything
        assert secret.removeprefix("whsec_") not in everything


def test_emit_is_a_lookup_only_when_nobody_listens(hook_app: Flask,
                                                   hook_program: dict[str, Any]) -> None:
    with hook_app.app_context():
        assert emit.emit(hook_program["id"], emit.CARD_VOIDED, {"x": 1}) == 0
        db.session.commit()
        from app.webhooks.models import WebhookEvent

        assert db.session.scalars(select(WebhookEvent)).all() == []


def test_the_sweep_forgets_old_events_with_nothing_left_to_send(
        hook_app: Flask, hook_api: ApiClient, hook_program: dict[str, Any],
        receiver: WebhookReceiver) -> None:
    from datetime import timedelta

    from app.webhooks import drain
    from app.webhooks.models import WebhookEvent

    made = register(hook_api, hook_program, receiver.url())
    create_card(hook_api, hook_program)
    wait_for(hook_app, receiver, 1)
    receiver.answers = [500] * 100  # the second stays pending (retrying)
    create_card(hook_api, hook_program)
    wait_for(hook_app, receiver, 2)
    with hook_app.app_context():
        events = db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        for event in events:
            event.created_at -= timedelta(days=31)
        db.session.commit()
        assert drain.forget_old() == 1  # the delivered one; the pending one stays
        assert drain.forget_old() == 0
        assert db.session.scalars(select(WebhookEvent.id)).all() == [events[1].id]
    assert [d["status"] for d in deliveries(hook_api, made["id"])] == ["pending"]
