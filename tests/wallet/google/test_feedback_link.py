"""The Google Wallet object links to an open feedback invitation ("How was your visit?") and
drops the link once it is answered; the test server checks every body against Google's
schema."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.feedback import service
from app.feedback.models import FeedbackInvitation
from tests.factories import settle
from tests.google_server import GoogleWalletTestServer
from tests.wallet.google.conftest import new_google_card


def _links(server: GoogleWalletTestServer, object_id: str) -> list[dict[str, Any]]:
    return list(server.objects[object_id].get("linksModuleData", {}).get("uris", []))


def test_the_object_links_to_the_open_invitation_until_answered(
        google_app: Flask, wallet_server: GoogleWalletTestServer) -> None:
    api, program, serial, object_id = new_google_card(google_app)
    settle(google_app)
    assert _links(wallet_server, object_id) == []
    api.request("PATCH", f"/api/v1/programs/{program['id']}", json={"feedback_every_days": 14})
    place = api.post(f"/api/v1/programs/{program['id']}/locations",
                     json={"name": "Kemang", "latitude": -6.26, "longitude": 106.81}).json
    assert api.post(f"/api/v1/cards/{serial}/earn",
                    json={"points": 5, "location_id": place["id"]}).status_code == 201
    settle(google_app)

    with google_app.app_context():
        token = db.session.scalar(select(FeedbackInvitation.token))
        db.session.rollback()
    [link] = _links(wallet_server, object_id)
    assert link["id"] == "feedback"
    assert link["uri"] == f"https://pointpass.test/feedback/{token}"
    assert link["description"] == "How was your visit?"
    languages = {t["language"] for t in link["localizedDescription"]["translatedValues"]}
    assert languages == {"en", "id", "th", "ms"}

    with google_app.app_context():
        service.answer(str(token), 10)
    settle(google_app)
    assert _links(wallet_server, object_id) == []
    assert all(r.status == 200 for r in wallet_server.api_requests("patch"))
