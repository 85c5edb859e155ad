"""Consents (history with wording versions, recorded at join and when changed), marketing
only to members who consented (campaigns, feedback prompts), and the member export."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from app.campaigns import service as campaigns
from app.extensions import db
from app.feedback.models import FeedbackInvitation
from app.loyalty import consent
from app.loyalty.models import Card, MemberConsent
from app.members import rights
from tests.factories import ApiClient, card_code, create_card, register_device, settle


def _history(app: Flask, member_id: int) -> list[tuple[str, bool, str, str]]:
    with app.app_context():
        rows = [(c.kind.value, c.granted, c.wording_version, c.source) for c in
                db.session.scalars(select(MemberConsent).where(
                    MemberConsent.member_id == member_id).order_by(MemberConsent.id))]
        db.session.rollback()
    return rows


def _terms_version(app: Flask, program_id: int) -> str:
    from app.loyalty.models import ConsentKind, Program

    with app.app_context():
        version = consent.wording_version(ConsentKind.TERMS, db.session.get(Program, program_id))
        db.session.rollback()
    return version


def test_consents_are_recorded_at_join_with_their_wording(
        app: Flask, api: ApiClient, program: dict[str, Any]) -> None:
    pid = program["id"]
    terms = _terms_version(app, pid)
    assert terms.startswith("terms-v1+") and len(terms) == len("terms-v1+") + 12
    by_api = api.post(f"/api/v1/programs/{pid}/members", json={
        "name": "Ayu", "consent_terms": True, "consent_marketing": True}).json
    assert _history(app, by_api["id"]) == [("terms", True, terms, "api"),
                                           ("marketing", True, "marketing-v1", "api")]
    # The join page: terms only (marketing is optional, and not asked back).
    client = app.test_client()
    page = client.get(f"/join/{program['slug']}")
    import re
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                      page.get_data(as_text=True)).group(1)
    joined = client.post(f"/join/{program['slug']}", data={
        "name": "Budi", "language": "id", "consent_terms": "y", "csrf_token": token})
    assert joined.status_code == 303
    with app.app_context():
        from app.loyalty.models import Member
        budi = db.session.scalar(select(Member.id).where(Member.name == "Budi"))
        db.session.rollback()
    assert _history(app, budi) == [("terms", True, terms, "join-page")]
    # New terms: a new version.
    assert api.request("PATCH", f"/api/v1/programs/{pid}", json={
        "terms": "Points expire after a year."}).status_code == 200
    assert _terms_version(app, pid) != terms


def test_consents_change_through_the_api(app: Flask, api: ApiClient, keys: dict[str, str],
                                         program: dict[str, Any]) -> None:
    member = api.post(f"/api/v1/programs/{program['id']}/members", json={
        "name": "Ayu", "consent_marketing": True}).json
    path = f"/api/v1/members/{member['id']}/consents"
    withdrawn = api.as_(keys["marketer"]).post(path, json={"kind": "marketing",
                                                           "granted": False})
    assert withdrawn.status_code == 201, withdrawn.json
    assert withdrawn.json["consent_marketing"] is False
    assert [(h["kind"], h["granted"], h["source"]) for h in withdrawn.json["history"]] == [
        ("marketing", True, "api"), ("marketing", False, "api")]
    given = api.post(path, json={"kind": "terms", "granted": True,
                                 "wording_version": "terms-2026-print"})
    assert given.json["consent_terms"] is True
    assert given.json["history"][-1]["wording_version"] == "terms-2026-print"
    for body in ({}, {"kind": "sms", "granted": True}, {"kind": "terms", "granted": "yes"},
                 {"kind": "terms", "granted": 1}, {"kind": "terms", "granted": True,
                                                   "wording_version": "x" * 65},
                 {"kind": "terms", "granted": True, "extra": 1}, [1], "terms"):
        refused = api.post(path, json=body)
        assert refused.status_code in (400, 422), (body, refused.status_code)
        assert refused.content_type == "application/problem+json"
    assert api.post("/api/v1/members/999999/consents",
                    json={"kind": "terms", "granted": True}).status_code == 404
    for role in ("staff", "pos"):
        assert api.as_(keys[role]).post(path, json={"kind": "terms",
                                                    "granted": False}).status_code == 403
    assert len(_history(app, member["id"])) == 3  # nothing more was written
    assert api.request("DELETE", f"/api/v1/members/{member['id']}").status_code == 200
    assert api.post(path, json={"kind": "marketing", "granted": True}).status_code == 410


def test_campaigns_reach_only_members_who_consented(app: Flask, api: ApiClient,
                                                    program: dict[str, Any]) -> None:
    yes = [create_card(api, program, name=f"Yes {i}")["serial_number"] for i in range(3)]
    no = [create_card(api, program, name=f"No {i}", consent_marketing=False)["serial_number"]
          for i in range(2)]
    path = f"/api/v1/programs/{program['id']}/campaigns"
    campaign = api.post(path, json={"name": "Rain", "bonus_points": 10,
                                    "messages": {"en": {"lock_screen": "Hot drinks"}}}).json
    dry = api.post(f"{path}/{campaign['id']}/dry-run").json
    assert dry["recipients"] == 3
    # One withdraws after the recipients are fixed: skipped at the send.
    with app.app_context():
        from sqlalchemy import update

        from app.campaigns.models import Campaign, CampaignStatus
        db.session.execute(update(Campaign).where(Campaign.id == campaign["id"])
                           .values(status=CampaignStatus.SENDING))
        db.session.commit()
        assert campaigns._fix_recipients(campaign["id"]) is not None
        member_id = db.session.scalar(select(Card.member_id).where(
            Card.serial_number == yes[0]))
        db.session.rollback()
    assert api.post(f"/api/v1/members/{member_id}/consents", json={
        "kind": "marketing", "granted": False}).status_code == 201
    with app.app_context():
        campaigns.run(campaign["id"])
    settle(app)
    done = api.get(f"{path}/{campaign['id']}").json
    assert (done["recipients_total"], done["sent_total"], done["skipped_total"]) == (3, 2, 1)
    with app.app_context():
        messages = dict(db.session.execute(select(Card.serial_number, Card.message)).all())
        db.session.rollback()
    assert [messages[s] for s in yes] == [None, "Hot drinks", "Hot drinks"]
    assert [messages[s] for s in no] == [None, None]
    balances = {s: api.get(f"/api/v1/cards/{s}").json["balance"] for s in yes + no}
    assert balances == {yes[0]: 0, yes[1]: 10, yes[2]: 10, no[0]: 0, no[1]: 0}


def test_feedback_prompts_only_with_marketing_consent(app: Flask, api: ApiClient,
                                                      program: dict[str, Any]) -> None:
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}", json={
        "feedback_every_days": 30}).status_code == 200
    location = api.post(f"/api/v1/programs/{program['id']}/locations", json={
        "name": "Kemang", "latitude": -6.26, "longitude": 106.81}).json["id"]
    yes = create_card(api, program, name="Yes")["serial_number"]
    no = create_card(api, program, name="No", consent_marketing=False)["serial_number"]
    for serial in (yes, no):
        assert api.post(f"/api/v1/cards/{serial}/earn", json={
            "points": 5, "location_id": location}).status_code == 201
    with app.app_context():
        invited = set(db.session.scalars(select(Card.serial_number).join(
            FeedbackInvitation, FeedbackInvitation.card_id == Card.id)))
        db.session.rollback()
    assert invited == {yes}


def test_the_export_holds_every_section(app: Flask, api: ApiClient, keys: dict[str, str],
                                        program: dict[str, Any]) -> None:
    joined = api.post(f"/api/v1/programs/{program['id']}/members", json={
        "name": "Dewi Lestari", "email": "dewi@example.com", "phone": "+62 811 000 1234",
        "birthday": "1992-02-29", "consent_terms": True, "consent_marketing": True}).json
    serial = joined["card"]["serial_number"]
    friend = api.post(f"/api/v1/programs/{program['id']}/members", json={
        "name": "Rina", "referral_code": joined["referral_code"]}).json
    assert api.post(f"/api/v1/cards/{serial}/adjust", json={
        "points": 150, "reason": "welcome back"}).status_code == 201
    assert api.post("/api/v1/redemptions", json={
        "code": card_code(app, serial), "reward_id": program["rewards"][0]["id"]}
    ).status_code == 201
    register_device(app, serial)
    settle(app)
    exported = api.get(f"/api/v1/members/{joined['id']}/export")
    assert exported.status_code == 200, exported.json
    body = exported.json
    assert set(body) == {"format", "exported_at", *rights.SECTIONS}
    assert body["member"]["name"] == "Dewi Lestari"
    assert body["member"]["birthday"] == "1992-02-29"
    assert body["member"]["phone"] == "+62 811 000 1234"
    assert [c["kind"] for c in body["consents"]] == ["terms", "marketing"]
    assert body["card"]["serial_number"] == serial
    assert {e["kind"] for e in body["ledger"]} == {"adjust", "redeem", "earn"}  # + referral
    assert any(e["reason"] == "welcome back" for e in body["ledger"])
    assert body["lots"] and body["redemptions"][0]["reward"] == "Coffee"
    assert len(body["devices"]["apple"]) == 1 and body["devices"]["apple"][0]["push_token"]
    assert body["devices"]["google"]["status"] == "not-created"
    assert [e["kind"] for e in body["wallet_events"]] == ["installed"]
    assert body["referrals"]["referred_member_ids"] == [friend["id"]]
    assert "card.adjust" in {e["action"] for e in body["audit"]}
    assert body["feedback"] == [] and body["badges"] == [] and body["campaigns"] == []
    # Only admins; another program's member or none at all: 404.
    assert api.as_(keys["marketer"]).get(
        f"/api/v1/members/{joined['id']}/export").status_code == 403
    missing = api.get("/api/v1/members/999999/export")
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"


