"""Fixtures for the redemption tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import ApiClient


@pytest.fixture
def funded(api: ApiClient, card: dict[str, Any]) -> dict[str, Any]:
    assert api.post(f"/api/v1/cards/{card['serial_number']}/earn",
                    json={"points": 250}).status_code == 201
    return card
