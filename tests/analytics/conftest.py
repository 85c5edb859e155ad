"""Fixtures of the analytics tests: in a module that sets ``CLOCK_START`` (an aware datetime),
``app`` runs on ``clock``, a fake clock the tests move (enrolments, postings, wallet events
and expiries happen at its time); elsewhere it is the root conftest's app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clock import FakeClock
from tests.factories import DEV_CERTS, make_app


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    start = getattr(request.module, "CLOCK_START", None)
    if start is None:
        pytest.fail(f"{request.module.__name__} uses the clock but sets no CLOCK_START")
    return FakeClock(start.timestamp())


@pytest.fixture
def app(database: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    # Google Wallet with the development stand-in account: save links and callbacks, no
    # syncs (the scenario's saves and deletes come through the callback service).
    settings: dict[str, Any] = {
        "GOOGLE_ISSUER_ID": "3388000000000000018",
        "GOOGLE_SERVICE_ACCOUNT": str(DEV_CERTS["google_service_account"]),
        "STAFF_RATE_LIMIT": "100000/minute"}  # months of redemptions in seconds
    if getattr(request.module, "CLOCK_START", None) is not None:
        settings["CLOCK"] = request.getfixturevalue("clock")
    yield from make_app(database, tmp_path, **settings)
