"""Fixtures for the till's staff accounts: an app whose clock the test moves, a location,
and :class:`Till`, which enrols devices and signs staff in as a phone at the till would."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.clock import FakeClock
from tests.factories import ApiClient, make_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=time.time())


@pytest.fixture
def app(database: Any, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    """The app (SQLite and PostgreSQL) on ``clock`` (PIN locks, link expiry)."""
    yield from make_app(database, tmp_path, CLOCK=clock)


def form_token(page: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "the form has no CSRF token"
    return match.group(1)


class Till:
    """Staff and devices made through the admin API; pages used through a test client."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def location(self, program: dict[str, Any], name: str = "Kopi Sudirman") -> int:
        response = self.api.post(f"/api/v1/programs/{program['id']}/locations",
                                 json={"name": name, "latitude": -6.2, "longitude": 106.8})
        assert response.status_code == 201, response.json
        return int(response.json["id"])

    def add_staff(self, name: str, pin: str, *location_ids: int,
                  language: str = "en") -> dict[str, Any]:
        response = self.api.post("/api/v1/staff", json={
            "name": name, "pin": pin, "location_ids": list(location_ids), "language": language})
        assert response.status_code == 201, response.json
        return response.json  # type: ignore[no-any-return]

    def new_device(self, location_id: int) -> dict[str, Any]:
        response = self.api.post("/api/v1/devices", json={"location_id": location_id})
        assert response.status_code == 201, response.json
        return response.json  # type: ignore[no-any-return]

    def enrol(self, client: FlaskClient, location_id: int) -> dict[str, Any]:
        """A new device at the location, enrolled in ``client``'s browser."""
        device = self.new_device(location_id)
        path = enrol_path(device)
        page = client.get(path)
        assert page.status_code == 200
        response = client.post(path, data={"csrf_token": form_token(page.get_data(as_text=True))})
        assert response.status_code == 303, response.get_data(as_text=True)
        return device

    def type_pin(self, client: FlaskClient, member_id: int, pin: str,
                 token: str | None = None) -> Any:
        """Open the PIN pad and send ``pin`` (with ``token``: send it from a page opened
        earlier, as a phone left on the pad does)."""
        if token is None:
            page = client.get(f"/staff/pin/{member_id}")
            assert page.status_code == 200, page.headers.get("Location")
            token = form_token(page.get_data(as_text=True))
        return client.post(f"/staff/pin/{member_id}", data={"csrf_token": token, "pin": pin})


def enrol_path(device: dict[str, Any]) -> str:
    return str(device["enrol_url"]).removeprefix("https://pointpass.test")


@pytest.fixture
def till(api: ApiClient) -> Till:
    return Till(api)
