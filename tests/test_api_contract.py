"""The API answers as its OpenAPI document says, whatever it is sent.

schemathesis generates requests from ``/api/openapi.json`` (valid ones, and, in its negative
generation mode, ones that break the schema in every way it knows) and checks each answer:
never a server error, only documented status codes and content types, bodies that match
their schemas (problem details for errors), invalid input refused, and no operation that
works without a key. It does not require every schema-valid request to succeed: some rules
span fields or the database (give ``points`` or ``amount``, a tier the program has), and
those answer 422 with a problem.

schemathesis 4's pytest plugin does not run on this pytest, so the tests drive its
strategies (``APIOperation.as_strategy``) with hypothesis directly. Hostile bodies that no
JSON Schema generator makes (nesting 5,000 deep, a 4,301-digit integer, a key given twice,
a body just over the size limit) are written by hand and sent to every operation.

Each generated request goes to the app on SQLite and then to the app on PostgreSQL, in one
test: generating the requests costs three times as much as sending them, and the two runs
generated the same ones (the generation is derandomized).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.factories import ApiClient, create_api_key, create_card, create_program, make_app

# Per operation and generation mode (each request goes to both databases); raise it for a
# deeper search: POINTPASS_CONTRACT_EXAMPLES=500 ./scripts/test.sh tests/test_api_contract.py
EXAMPLES = int(os.environ.get("POINTPASS_CONTRACT_EXAMPLES", "15"))
# Only the operations whose path contains this (e.g. POINTPASS_CONTRACT_PATHS=/webhooks while
# working on one part of the API); unset: every operation.
ONLY = os.environ.get("POINTPASS_CONTRACT_PATHS", "")


#: Limits high enough that the generated scans and redemptions are not all 429s. A webhook
#: the generated requests enable sends to a public address that does not answer here: a short
#: timeout keeps the test's background jobs short.
LIMITS = {"STAFF_RATE_LIMIT": "100000/minute", "WEBHOOK_TIMEOUT_SECONDS": 1}


@pytest.fixture
def contract_app(database: Any, tmp_path: Path) -> Iterator[Any]:
    yield from make_app(database, tmp_path, **LIMITS)


@contextmanager
def _app_on(database: Any, tmp_path: Path) -> Iterator[Any]:
    """``make_app`` as a context manager."""
    made = make_app(database, tmp_path, **LIMITS)
    try:
        yield next(made)
    finally:
        next(made, None)


@pytest.fixture
def contract_apps(sqlite_database: Any, postgres_database: Any,
                  tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The app on SQLite and on PostgreSQL, by database name."""
    with ExitStack() as stack:
        yield {database.name: stack.enter_context(_app_on(database, tmp_path / database.name))
               for database in (sqlite_database, postgres_database)}


def _seed(app: Any) -> dict[str, Any]:
    """An admin key, and a program with a member, so some generated ids name something."""
    from sqlalchemy import text

    from app.extensions import db

    key = create_api_key(app, "admin", "contract admin")
    with app.app_context():
        # Generated requests include DELETE /api/v1/keys/{key_id}: an id they will not hit
        # (unlike 1) keeps this key, and so every later operation, past authentication.
        db.session.execute(text("UPDATE api_keys SET id = 1234567"))
        db.session.commit()
    api = ApiClient(app.test_client(), key)
    program = create_program(api)
    card = create_card(api, program, name="Siti Rahayu")
    # A rule, so that generated rule ids (and the hostile bodies' rule_id 1) name one.
    assert api.post(f"/api/v1/programs/{program['id']}/rules", json={
        "kind": "bonus", "name": "Weekend treat", "points": 5,
        "conditions": {"days_of_week": [6, 7]}}).status_code == 201
    # A challenge, so that generated challenge ids (and the hostile bodies' 1) name one.
    assert api.post(f"/api/v1/programs/{program['id']}/challenges", json={
        "kind": "visits", "name": "5 visits in 30 days", "target": 5, "window_days": 30,
        "bonus_points": 50}).status_code == 201
    # A webhook endpoint (disabled) with a delivery, so that generated ids name them.
    hook = api.post("/api/v1/webhooks", json={
        "program_id": program["id"], "url": "https://93.184.215.14/hook",
        "events": ["card.voided"], "enabled": False})
    assert hook.status_code == 201, hook.json
    from app.webhooks.models import WebhookDelivery, WebhookEvent

    with app.app_context():
        event = WebhookEvent(message_id="msg_contract", program_id=program["id"],
                             type="card.voided", body="{}")
        db.session.add(event)
        db.session.flush()
        db.session.add(WebhookDelivery(event_id=event.id, endpoint_id=hook.json["id"],
                                       status="failed"))
        db.session.commit()
    return {"key": key, "program_id": program["id"], "serial": card["serial_number"]}


@pytest.fixture
def seeded(contract_app: Any) -> dict[str, Any]:
    return _seed(contract_app)


def test_every_answer_is_documented_and_none_is_a_server_error(
        contract_apps: dict[str, Any]) -> None:
    admin_keys = {name: _seed(app)["key"] for name, app in contract_apps.items()}
    documents = [app.test_client().get("/api/openapi.json").json
                 for app in contract_apps.values()]
    assert all(document == documents[0] for document in documents)  # one schema for both
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", contract_apps["sqlite"])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:
        if ONLY not in operation.path:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def answers_as_documented(case: Any) -> None:
                for name, app in contract_apps.items():
                    try:
                        case.call_and_validate(
                            app=app, headers={"Authorization": f"Bearer {admin_keys[name]}"},
                            excluded_checks=[checks.positive_data_acceptance])
                    except Exception as error:
                        error.add_note(f"(the app on {name})")
                        raise

            answers_as_documented()


# Hand-made bodies, each for every operation (a field of the operation's body holds the
# hostile value): (name, body template, the status an operation that reads a body answers).
DEEP = "[" * 5000 + "]" * 5000


def _hostile_bodies(field: str, max_length: int) -> list[tuple[str, str, int | None]]:
    key = json.dumps(field)
    prefix = "{" + key + ': "'
    oversize = prefix + "x" * (max_length + 1 - len(prefix) - 2) + '"}'
    assert len(oversize) == max_length + 1
    return [
        ("nested 5,000 deep", f"{{{key}: {DEEP}}}", 400),
        ("4,301-digit integer", f"{{{key}: {'7' * 4301}}}", 400),
        ("duplicate key", f'{{{key}: 1, {key}: "x"}}', 400),
        ("unpaired surrogate", f'{{{key}: "\\udc00"}}', 400),
        ("60 KB string", f'{{{key}: "{"y" * 60_000}"}}', None),  # read: any 4xx
        ("just over POINTPASS_MAX_CONTENT_LENGTH", oversize, 413),
    ]


def _string_field(operation: Any, components: dict[str, Any]) -> str:
    """The first string field of the operation's JSON body (or a name it does not know)."""
    body = operation.definition.raw.get("requestBody", {}).get("content", {})
    reference = body.get("application/json", {}).get("schema", {}).get("$ref", "")
    properties = components.get(reference.rsplit("/", 1)[-1], {}).get("properties", {})
    return next((name for name, prop in properties.items() if prop.get("type") == "string"),
                "unknown")


def test_hostile_bodies_to_every_operation_are_refused_as_documented(
        contract_app: Any, seeded: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", contract_app)
    components = schema.raw_schema["components"]["schemas"]
    client = contract_app.test_client()
    headers = {"Authorization": f"Bearer {seeded['key']}"}
    values = {"program_id": seeded["program_id"], "serial": seeded["serial"],
              "update_id": 1, "redemption_id": 1, "key_id": 1, "device_id": 1, "member_id": 1,
              "rule_id": 1, "campaign_id": 1, "reward_id": 1, "tier_id": 1, "location_id": 1,
              "account_id": 1, "challenge_id": 1, "webhook_id": 1, "delivery_id": 1,
              "loyalty_member_id": 1,
              "kind": "logo"}
    max_length = contract_app.config["MAX_CONTENT_LENGTH"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:
        if ONLY not in operation.path:
            continue
        path = operation.path.format(**values)
        body_types = operation.definition.raw.get("requestBody", {}).get("content", {})
        reads_a_body = "application/json" in body_types
        # An operation whose body is not JSON (an image upload) refuses a JSON one (415).
        other_body = bool(body_types) and not reads_a_body
        field = _string_field(operation, components)
        for name, body, status in _hostile_bodies(field, max_length):
            response = client.open(path, method=operation.method.upper(), data=body,
                                   headers=headers, content_type="application/json")
            where = f"{operation.method.upper()} {path} with {name}"
            assert response.status_code < 500, (where, response.get_data(as_text=True)[:500])
            assert str(response.status_code) in operation.definition.raw["responses"], where
            operation.validate_response(response)
            if reads_a_body and status is not None:
                assert response.status_code == status, (where, response.json)
            if reads_a_body and status == 400:
                assert response.json["type"] == "urn:pointpass:problem:malformed-json", where
            if reads_a_body and status is None:
                assert 400 <= response.status_code < 500, where
            if other_body:
                assert response.status_code == 415, (where, response.json)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
