"""The SSRF guard: which URLs a webhook may call, at registration and at delivery time, and
the problem JSON bad input gets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.config import ConfigError
from app.webhooks import targets
from tests.factories import admin_api, create_card, create_program, make_app, settle
from tests.processes import wait_until
from tests.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import deliveries, hook_settings, register

NAMES = {"hooks.example.test": ["127.0.0.1"], "crm.example.test": ["10.0.0.1"],
         "public.example.test": ["93.184.215.14"],
         "mixed.example.test": ["93.184.215.14", "192.168.1.7"]}


def _resolver(names: dict[str, list[str]]) -> Any:
    def resolve(host: str, _port: int) -> list[str]:
        if host not in names:
            raise OSError(f"unknown host {host}")
        return names[host]
    return resolve


@pytest.fixture
def names() -> dict[str, list[str]]:
    return {name: list(addresses) for name, addresses in NAMES.items()}


@pytest.fixture
def guarded_app(sqlite_database: Any, tmp_path: Path, receiver_certs: dict[str, Path],
                names: dict[str, list[str]]) -> Iterator[Flask]:
    """ENV=testing: the guard applies (only development lifts it); no allowed networks."""
    yield from make_app(sqlite_database, tmp_path, **hook_settings(
        receiver_certs, WEBHOOK_ALLOWED_NETWORKS="", WEBHOOK_RESOLVER=_resolver(names)))


REFUSED = [
    "http://127.0.0.1/hook", "https://127.0.0.1/hook", "https://localhost.invalid/",
    "https://crm.example.test/hook", "https://10.0.0.1/", "https://[::1]/",
    "https://[::ffff:10.0.0.1]/", "https://[::ffff:7f00:1]/", "https://169.254.169.254/",
    "https://[fe80::1]/", "https://224.0.0.1/", "https://0.0.0.0/", "https://100.64.0.1/",
    "https://240.0.0.1/", "https://[fc00::1]/", "https://[64:ff9b::a00:1]/",
    "https://[2002:a00:1::]/", "https://mixed.example.test/", "http://public.example.test/",
    "https://user:pw@public.example.test/", "https://public.example.test/#x",
    "ftp://public.example.test/", "https:///nohost", "https://public.example.test:99999/",
    "https://public.example.test/a b",
]


def test_private_and_local_targets_are_refused_outside_development(
        guarded_app: Flask) -> None:
    api = admin_api(guarded_app)
    program = create_program(api)
    for url in REFUSED:
        answer = api.post("/api/v1/webhooks", json={
            "program_id": program["id"], "url": url, "events": ["card.voided"]})
        assert answer.status_code == 422, (url, answer.json)
        assert answer.content_type == "application/problem+json"
        assert answer.json["type"].endswith(":webhook-url-refused"), (url, answer.json)
        assert answer.json["errors"][0]["field"] == "url"
    assert api.get("/api/v1/webhooks").json["webhooks"] == []
    ok = register(api, program, "https://public.example.test/hook")
    assert ok["url"] == "https://public.example.test/hook"
    assert register(api, program, "https://[2606:4700::1]/")["id"]
    # A change of URL is checked too.
    changed = api.request("PATCH", f"/api/v1/webhooks/{ok['id']}",
                          json={"url": "https://crm.example.test/hook"})
    assert changed.status_code == 422
    assert changed.json["type"].endswith(":webhook-url-refused")


def test_allowed_networks_let_internal_receivers_in(
        sqlite_database: Any, tmp_path: Path, receiver_certs: dict[str, Path]) -> None:
    for app in make_app(sqlite_database, tmp_path, **hook_settings(
            receiver_certs, WEBHOOK_ALLOWED_NETWORKS="10.0.0.0/8, 127.0.0.0/8",
            WEBHOOK_RESOLVER=_resolver(NAMES))):
        api = admin_api(app)
        program = create_program(api)
        assert register(api, program, "http://127.0.0.1/hook")["id"]
        assert register(api, program, "http://crm.example.test/hook")["id"]
        assert register(api, program, "https://[::ffff:10.0.0.1]/")["id"]
        refused = api.post("/api/v1/webhooks", json={
            "program_id": program["id"], "url": "https://192.168.1.1/", "events":
            ["card.voided"]})
        assert refused.status_code == 422
        # http:// only when every address is in the allowed networks.
        assert api.post("/api/v1/webhooks", json={
            "program_id": program["id"], "url": "http://public.example.test/", "events":
            ["card.voided"]}).status_code == 422


def test_development_allows_any_target(sqlite_database: Any, tmp_path: Path) -> None:
    for app in make_app(sqlite_database, tmp_path, ENV="development",
                        WEBHOOK_RESOLVER=_resolver(NAMES)):
        api = admin_api(app)
        assert register(api, create_program(api), "http://127.0.0.1:9/hook")["id"]


def test_a_bad_allowed_networks_setting_stops_the_service(
        sqlite_database: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="POINTPASS_WEBHOOK_ALLOWED_NETWORKS"):
        next(make_app(sqlite_database, tmp_path, WEBHOOK_ALLOWED_NETWORKS="10.0.0.0/8,nope"))


def test_the_address_is_checked_again_at_delivery(
        guarded_app: Flask, names: dict[str, list[str]], receiver: WebhookReceiver) -> None:
    """DNS rebinding: a name public at registration that now leads to a private address is
    not called; the attempt is logged as refused and retried."""
    api = admin_api(guarded_app)
    program = create_program(api)
    made = register(api, program, "https://public.example.test/hook")
    names["public.example.test"] = ["10.0.0.1"]
    create_card(api, program)

    def attempted() -> bool:
        settle(guarded_app)
        log = deliveries(api, made["id"])
        return bool(log and log[0]["attempts"])

    wait_until(attempted, "an attempt")
    attempt = deliveries(api, made["id"])[0]["attempts"][0]
    assert attempt["status_code"] is None and attempt["error"].startswith("refused:")
    assert receiver.requests == []


def test_target_address_classes() -> None:
    import ipaddress

    public = ["8.8.8.8", "2606:4700::1", "::ffff:8.8.8.8"]
    private = ["10.1.2.3", "172.16.0.1", "192.168.0.1", "127.0.0.1", "169.254.1.1",
               "100.64.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "::1", "::",
               "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:192.168.0.1",
               "2002:c0a8:0001::", "64:ff9b::7f00:1", "2001::1", "192.0.2.1", "198.18.0.1"]
    assert all(targets.is_public(ipaddress.ip_address(a)) for a in public)
    assert not any(targets.is_public(ipaddress.ip_address(a)) for a in private)


@pytest.mark.parametrize("body", [
    {"url": "https://public.example.test/", "events": ["card.voided"]},  # no program
    {"program_id": 1, "events": ["card.voided"]},  # no url
    {"program_id": 1, "url": "https://public.example.test/", "events": []},
    {"program_id": 1, "url": "https://public.example.test/", "events": ["card.exploded"]},
    {"program_id": 1, "url": "https://public.example.test/", "events": "card.voided"},
    {"program_id": "1", "url": "https://public.example.test/", "events": ["card.voided"]},
    {"program_id": 1, "url": "https://public.example.test/", "events": ["card.voided"],
     "secret": "whsec_mine"},
    {"program_id": 999, "url": "https://public.example.test/", "events": ["card.voided"]},
])
def test_bad_input_is_a_problem(guarded_app: Flask, body: dict[str, Any]) -> None:
    api = admin_api(guarded_app)
    create_program(api)
    answer = api.post("/api/v1/webhooks", json=body)
    assert answer.status_code == 422, answer.json
    assert answer.content_type == "application/problem+json"
    assert api.get("/api/v1/webhooks").json["webhooks"] == []


def test_only_admins_manage_webhooks(guarded_app: Flask) -> None:
    from tests.factories import ApiClient, create_api_key

    api = admin_api(guarded_app)
    program = create_program(api)
    made = register(api, program, "https://public.example.test/hook")
    for role in ("marketer", "staff", "pos"):
        other = ApiClient(guarded_app.test_client(), create_api_key(guarded_app, role))
        assert other.get("/api/v1/webhooks").status_code == 403
        assert other.post(f"/api/v1/webhooks/{made['id']}/rotate-secret").status_code == 403
    assert api.get("/api/v1/webhooks/999").status_code == 404
    assert api.get("/api/v1/webhooks?program_id=abc").status_code == 422
    for query in ("/api/v1/webhooks?programme_id=1",
                  f"/api/v1/webhooks/{made['id']}/deliveries?bfore=3"):
        unknown = api.get(query)
        assert unknown.status_code == 422 and unknown.json["errors"][0]["message"] == \
            "Unknown parameter.", unknown.json
    assert api.request("PATCH", f"/api/v1/webhooks/{made['id']}", json={}).status_code == 422
