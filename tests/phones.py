"""An iPhone's Wallet, as the PassKit web service sees it."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.loyalty.models import Card


class Phone:
    """An iPhone's Wallet: adds cards, registers for pushes, lists and fetches passes."""

    def __init__(self, app: Flask, token: str | None = None) -> None:
        self.app = app
        self.client = app.test_client()
        self.device = uuid.uuid4().hex
        self.token = token or uuid.uuid4().hex * 2
        self.pass_type = app.extensions["pointpass.apple"].pass_type_id
        self.tag: str | None = None

    def auth(self, serial: str) -> dict[str, str]:
        with self.app.app_context():
            token = db.session.scalar(select(Card.authentication_token)
                                      .where(Card.serial_number == serial))
            db.session.rollback()
        return {"Authorization": f"ApplePass {token}"}

    def add(self, serial: str) -> None:
        response = self.client.post(
            f"/passkit/v1/devices/{self.device}/registrations/{self.pass_type}/{serial}",
            json={"pushToken": self.token}, headers=self.auth(serial))
        assert response.status_code in (200, 201)

    def remove(self, serial: str) -> None:
        """The pass is removed from Wallet: the device unregisters."""
        response = self.client.delete(
            f"/passkit/v1/devices/{self.device}/registrations/{self.pass_type}/{serial}",
            headers=self.auth(serial))
        assert response.status_code == 200

    def changed(self) -> list[str]:
        query = f"?passesUpdatedSince={self.tag}" if self.tag else ""
        response = self.client.get(
            f"/passkit/v1/devices/{self.device}/registrations/{self.pass_type}{query}")
        if response.status_code == 204:
            return []
        self.tag = response.json["lastUpdated"]
        return list(response.json["serialNumbers"])

    def fetch_files(self, serial: str) -> dict[str, bytes]:
        response = self.client.get(f"/passkit/v1/passes/{self.pass_type}/{serial}",
                                   headers=self.auth(serial))
        assert response.status_code == 200
        with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}

    def fetch(self, serial: str) -> dict[str, Any]:
        return json.loads(self.fetch_files(serial)["pass.json"])  # type: ignore[no-any-return]
