"""Fixtures of the loyalty tests: in a module that sets ``CLOCK_START`` (an aware datetime),
``app`` and ``pg_app`` run on ``clock``, a fake clock the tests move (postings, lots, expiry
and rules happen at its time); elsewhere they are the root conftest's apps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clock import FakeClock
from tests.factories import make_app


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    start = getattr(request.module, "CLOCK_START", None)
    if start is None:
        pytest.fail(f"{request.module.__name__} uses the clock but sets no CLOCK_START")
    return FakeClock(start.timestamp())


def _settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if getattr(request.module, "CLOCK_START", None) is None:
        return {}
    return {"CLOCK": request.getfixturevalue("clock")}


@pytest.fixture
def app(database: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from make_app(database, tmp_path, **_settings(request))


@pytest.fixture
def pg_app(postgres_database: Any, tmp_path: Path,
           request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from make_app(postgres_database, tmp_path, **_settings(request))
