"""Webhook fixtures: a local HTTPS receiver whose CA the app trusts, and an app that may call
it (127.0.0.0/8 in POINTPASS_WEBHOOK_ALLOWED_NETWORKS) with short retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.factories import ApiClient, admin_api, create_program, make_app, settle
from tests.processes import wait_until
from tests.webhook_receiver import WebhookReceiver, write_certificates


@pytest.fixture(scope="session")
def receiver_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_certificates(tmp_path_factory.mktemp("webhook-receiver"))


@pytest.fixture
def receiver(receiver_certs: dict[str, Path]) -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(receiver_certs).start()
    yield server
    server.stop()


def hook_settings(certs: dict[str, Path], **overrides: Any) -> dict[str, Any]:
    return {"WEBHOOK_CA_FILE": str(certs["ca"]), "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "WEBHOOK_RETRY_SECONDS": "0.2", **overrides}


@pytest.fixture
def hook_app(sqlite_database: Any, tmp_path: Path,
             receiver_certs: dict[str, Path]) -> Iterator[Flask]:
    """On SQLite: what is tested here does not depend on the database (the emission tests
    and the worker test run on both)."""
    yield from make_app(sqlite_database, tmp_path, **hook_settings(receiver_certs))


@pytest.fixture
def hook_api(hook_app: Flask) -> ApiClient:
    return admin_api(hook_app)


@pytest.fixture
def hook_program(hook_api: ApiClient) -> dict[str, Any]:
    return create_program(hook_api)


def register(api: ApiClient, program: dict[str, Any], url: str,
             events: list[str] | None = None, **more: Any) -> dict[str, Any]:
    answer = api.post("/api/v1/webhooks", json={
        "program_id": program["id"], "url": url,
        "events": events or ["member.created"], **more})
    assert answer.status_code == 201, answer.json
    return answer.json  # type: ignore[no-any-return]


def deliveries(api: ApiClient, webhook_id: int) -> list[dict[str, Any]]:
    answer = api.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
    assert answer.status_code == 200, answer.json
    return answer.json["deliveries"]  # type: ignore[no-any-return]


def wait_for(app: Flask, receiver: WebhookReceiver, count: int, timeout: float = 20) -> None:
    """Until ``receiver`` has had ``count`` requests (running the app's in-process jobs)."""
    def arrived() -> bool:
        settle(app)
        return len(receiver.requests) >= count
    wait_until(arrived, f"{count} webhook request(s)", timeout)
