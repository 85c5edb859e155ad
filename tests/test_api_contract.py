"""The API answers as its OpenAPI document says, whatever it is sent.

schemathesis generates requests from ``/api/openapi.json`` (valid ones and ones that break
the schema in every way it knows) and checks each answer: never a server error, only
documented status codes and content types, bodies that match their schemas (problem details
for errors), and no operation that works without a key. It does not require every
schema-valid request to succeed: some rules span fields or the database (give ``points`` or
``amount``, a tier the program has), and those answer 422 with a problem.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.conftest import PROGRAM, ApiClient, _make_app

# Per operation and generation mode (17 operations x 2 modes x 2 databases); raise it for a
# deeper search: POINTPASS_CONTRACT_EXAMPLES=500 ./scripts/test.sh tests/test_api_contract.py
EXAMPLES = int(os.environ.get("POINTPASS_CONTRACT_EXAMPLES", "15"))


@pytest.fixture
def contract_app(database: Any, tmp_path: Path) -> Iterator[Any]:
    # Limits high enough that the generated scans and redemptions are not all 429s.
    yield from _make_app(database, tmp_path, STAFF_RATE_LIMIT="100000/minute")


@pytest.fixture
def admin_key(contract_app: Any) -> str:
    """An admin key, and a program with a member, so some generated ids name something."""
    from sqlalchemy import text

    from app.auth import keys as api_keys
    from app.extensions import db

    with contract_app.app_context():
        key = api_keys.create("contract admin", "admin")[1]
        # Generated requests include DELETE /api/v1/keys/{key_id}: an id they will not hit
        # (unlike 1) keeps this key, and so every later operation, past authentication.
        db.session.execute(text("UPDATE api_keys SET id = 1234567"))
        db.session.commit()
    api = ApiClient(contract_app.test_client(), key)
    program = api.post("/api/v1/programs", json=PROGRAM).json
    api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Siti Rahayu"})
    return key


def test_every_answer_is_documented_and_none_is_a_server_error(contract_app: Any,
                                                               admin_key: str) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", contract_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def answers_as_documented(case: Any) -> None:
                case.call_and_validate(headers={"Authorization": f"Bearer {admin_key}"},
                                       excluded_checks=[checks.positive_data_acceptance])

            answers_as_documented()
