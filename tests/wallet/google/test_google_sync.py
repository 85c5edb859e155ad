"""Google Wallet kept in step with the points store, through the real HTTP API and the
local Google test server (OAuth token exchange, REST, schema validation)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.wallet.events import WalletEvent
from app.wallet.google.models import GoogleObjectState
from app.wallet.google.sync import sync_classes
from tests.factories import (
    ApiClient,
    admin_api,
    card_short_code,
    create_api_key,
    create_card,
    create_program,
    settle,
)
from tests.google_callbacks import CallbackSigner, message
from tests.google_server import GoogleWalletTestServer
from tests.wallet.google.conftest import ISSUER_ID, new_google_card


def _jwt_parts(url: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    token = url.removeprefix("https://pay.google.com/gp/v/save/")
    header, payload, signature = token.split(".")

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    return (json.loads(decode(header)), json.loads(decode(payload)),
            f"{header}.{payload}".encode(), decode(signature))


def test_enrolment_creates_class_and_object_before_the_link(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    """The outbox's drain, after the enrolment commits, creates the class and the object;
    the card shows its save link once Google has the object (see also
    ``test_the_enrolment_request_leaves_google_to_the_worker``)."""
    api = admin_api(google_app)
    program = create_program(api)
    enrolled = api.post(f"/api/v1/programs/{program['id']}/members",
                        json={"name": "Dewi Lestari", "language": "id"})
    assert enrolled.status_code == 201, enrolled.json
    settle(google_app)
    card = api.get(f"/api/v1/cards/{enrolled.json['card']['serial_number']}").json
    class_id = f"{ISSUER_ID}.{program['slug']}"
    object_id = f"{ISSUER_ID}.{card['serial_number']}"
    assert wallet_server.classes[class_id]["programName"] == "Kopi Test"
    class_writes = [r for r in wallet_server.api_requests()
                    if r.operation in ("insert", "patch", "update")
                    and (r.resource_id == class_id or (r.body or {}).get("id") == class_id)]
    assert class_writes
    assert {r.body.get("reviewStatus") for r in class_writes} == {"UNDER_REVIEW"}
    obj = wallet_server.objects[object_id]
    assert obj["state"] == "ACTIVE"
    assert obj["loyaltyPoints"]["balance"]["int"] == 0
    assert obj["barcode"]["value"].startswith(f"PP1:{card['serial_number']}:1:")
    assert obj["accountName"] == "Dewi Lestari"

    url = card["google_save_url"]
    assert url.startswith("https://pay.google.com/gp/v/save/") and len(url) < 1800
    header, claims, signed, signature = _jwt_parts(url)
    info = json.loads(Path(wallet_server.sa_file).read_text())  # type: ignore[attr-defined]
    key = serialization.load_pem_private_key(info["private_key"].encode(), None)
    key.public_key().verify(signature, signed, padding.PKCS1v15(),  # type: ignore[union-attr]
                            hashes.SHA256())
    assert header["alg"] == "RS256"
    assert claims["iss"] == info["client_email"]
    assert (claims["aud"], claims["typ"]) == ("google", "savetowallet")
    assert claims["origins"] == ["https://pointpass.test"]
    assert claims["payload"] == {"loyaltyObjects": [{"id": object_id}]}


def test_balance_changes_patch_the_object_and_the_fourth_notification_is_silent(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    api, _, serial, object_id = new_google_card(google_app)
    settle(google_app)
    before = len(wallet_server.api_requests("patch"))
    wallet_server.fail("patch", object_id, 429, "rateLimitExceeded", times=1)

    for points in (10, 20, 30, 40):
        assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": points}
                        ).status_code == 201
        settle(google_app)

    assert wallet_server.objects[object_id]["loyaltyPoints"]["balance"]["int"] == 100
    patches = [r for r in wallet_server.api_requests("patch")[before:]
               if r.resource_id == object_id]
    assert patches[0].status == 429 and patches[1].status == 200  # retried
    delivered = [p for p in patches if p.status == 200]
    assert [p.body.get("notifyPreference") for p in delivered] == \
        ["NOTIFY_ON_UPDATE"] * 3 + ["NOTIFICATION_SETTINGS_FOR_UPDATES_UNSPECIFIED"]


def test_redemption_patches_the_new_code_and_void_makes_it_inactive(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    api = admin_api(google_app)
    staff = api.as_(create_api_key(google_app, "staff"))
    program = create_program(api)
    serial = create_card(api, program, name="Ari")["serial_number"]
    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 150})
    settle(google_app)
    object_id = f"{ISSUER_ID}.{serial}"
    old_code = wallet_server.objects[object_id]["barcode"]["value"]
    old_short = wallet_server.objects[object_id]["barcode"]["alternateText"]
    assert old_short == card_short_code(google_app, serial)
    scan = staff.post("/api/v1/scans", json={"code": old_code}).json
    assert staff.post("/api/v1/redemptions", json={"scan_id": scan["scan_id"],
                                                   "points": 100}).status_code == 201
    settle(google_app)
    obj = wallet_server.objects[object_id]
    assert obj["loyaltyPoints"]["balance"]["int"] == 50
    new_code = obj["barcode"]["value"]
    assert new_code != old_code
    assert staff.post("/api/v1/scans", json={"code": old_code}).status_code == 409
    assert staff.post("/api/v1/scans", json={"code": new_code}).status_code == 200
    # The text under the QR code is the short code, patched with it: it scans, the old one
    # does not.
    assert obj["barcode"]["alternateText"] == card_short_code(google_app, serial)
    assert obj["barcode"]["alternateText"] != old_short
    assert staff.post("/api/v1/scans", json={"code": old_short}).status_code == 409
    assert staff.post("/api/v1/scans", json={"code": obj["barcode"]["alternateText"]}
                      ).status_code == 200

    api.post(f"/api/v1/cards/{serial}/void", json={"reason": "lost"})
    settle(google_app)
    assert wallet_server.objects[object_id]["state"] == "INACTIVE"


def test_marketer_message_notifies_then_falls_back_to_text(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    """A message to a segment goes object by object (the class would show it to all)."""
    api, program, _, object_id = new_google_card(google_app)
    settle(google_app)
    wallet_server.fail("addMessage", object_id, 403, "quotaExceeded", times=1)
    response = api.post(f"/api/v1/programs/{program['id']}/updates",
                        json={"message": "Double points on Friday",
                              "segment": {"language": "en"}})
    assert response.status_code == 202
    settle(google_app)
    messages = [r for r in wallet_server.api_requests("addMessage") if r.resource_id == object_id]
    assert [(m.status, m.body["message"]["messageType"]) for m in messages] == \
        [(403, "TEXT_AND_NOTIFY"), (200, "TEXT")]
    assert messages[-1].body["message"]["body"] == "Double points on Friday"
    assert api.get(response.json["url"]).json["status"] == "done"


def test_design_change_patches_the_class(google_app: Flask,
                                         wallet_server: GoogleWalletTestServer) -> None:
    api = admin_api(google_app)
    program = create_program(api)
    api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Ari"})
    settle(google_app)
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"name": "Kopi Test Plus", "background_color": "#112233"})
    assert response.status_code == 200
    settle(google_app)
    google_class = wallet_server.classes[f"{ISSUER_ID}.{program['slug']}"]
    assert google_class["programName"] == "Kopi Test Plus"
    assert google_class["hexBackgroundColor"].lower() == "#112233"
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}", json={}).status_code == 422


def test_a_design_change_on_the_class_is_one_patch_not_one_per_object(
        google_app: Flask, wallet_server: GoogleWalletTestServer) -> None:
    """Colours, the organization's name and the images live on the loyalty class: a change of
    them is one PATCH of the class, however many objects there are. The points label is on
    each object: a change of it patches every object, once."""
    api = admin_api(google_app)
    program = create_program(api)
    for i in range(3):
        api.post(f"/api/v1/programs/{program['id']}/members", json={"name": f"Member {i}"})
    settle(google_app)
    class_id = f"{ISSUER_ID}.{program['slug']}"
    objects = sorted(wallet_server.objects)
    assert len(objects) == 3

    before = len(wallet_server.api_requests())
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"background_color": "#112233",
                                 "organization_name": "Kopi Group"})
    assert response.status_code == 200, response.json
    settle(google_app)
    sent = [(r.operation, r.resource_id) for r in wallet_server.api_requests()[before:]]
    assert sent == [("patch", class_id)]
    assert wallet_server.classes[class_id]["issuerName"] == "Kopi Group"
    progress = api.get(response.json["pass_update"]).json
    assert (progress["status"], progress["cards_done"], progress["cards_total"]) == (
        "done", 3, 3)
    assert progress["changed"] == ["background_color", "organization_name"]
    assert progress["started_at"] is not None and progress["estimated_finish"] is None

    before = len(wallet_server.api_requests())
    response = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                           json={"points_label": "Beans"})
    assert response.status_code == 200, response.json
    settle(google_app)
    sent = [(r.operation, r.resource_id) for r in wallet_server.api_requests()[before:]]
    assert sorted(sent) == sorted([("patch", class_id)] + [("patch", o) for o in objects])
    assert {wallet_server.objects[o]["loyaltyPoints"]["label"] for o in objects} == {"Beans"}


def test_save_and_delete_callbacks_are_verified_and_recorded(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    api = admin_api(google_app)
    program = create_program(api)
    serial = create_card(api, program, name="Ari")["serial_number"]
    settle(google_app)  # the outbox creates the object the callbacks are about
    signer = CallbackSigner()
    wallet_server.root_keys = signer.keys_json()
    client = google_app.test_client()

    def saved() -> bool:
        with google_app.app_context():
            state = db.session.get(GoogleObjectState, _card_id(serial))
            db.session.rollback()
            return bool(state and state.saved)

    save = signer.callback(message(ISSUER_ID, "save", serial=serial, program=program["slug"]),
                           recipient_id=ISSUER_ID)
    assert client.post("/wallet/google/callback", json=save).status_code == 200
    assert saved()
    assert client.post("/wallet/google/callback", json=save).status_code == 200  # duplicate

    tampered = dict(save, signedMessage=save["signedMessage"].replace("save", "del"))
    assert client.post("/wallet/google/callback", json=tampered).status_code == 400
    expired = signer.callback(message(ISSUER_ID, "del", serial=serial, program=program["slug"],
                                      expires_ms=1000), recipient_id=ISSUER_ID)
    assert client.post("/wallet/google/callback", json=expired).status_code == 400
    assert saved()
    assert client.post("/wallet/google/callback", data="{", content_type="application/json"
                       ).status_code == 400

    delete = signer.callback(message(ISSUER_ID, "del", serial=serial, program=program["slug"]),
                             recipient_id=ISSUER_ID)
    assert client.post("/wallet/google/callback", json=delete).status_code == 200
    assert not saved()
    # The history the analytics count from: one install and one removal (the duplicate
    # save, the forged and the expired callbacks added none).
    with google_app.app_context():
        events = db.session.execute(select(WalletEvent.platform, WalletEvent.kind).where(
            WalletEvent.card_id == _card_id(serial)).order_by(WalletEvent.id)).all()
        db.session.rollback()
    assert [tuple(e) for e in events] == [("google", "installed"), ("google", "removed")]


def test_program_logo_is_served_at_googles_size(google_app: Flask,
                                                wallet_server: GoogleWalletTestServer) -> None:
    from PIL import Image

    api = admin_api(google_app)
    program = create_program(api)
    response = google_app.test_client().get(f"/wallet/google/logo/{program['slug']}.png")
    assert response.status_code == 200
    assert response.content_type == "image/png"
    with Image.open(__import__("io").BytesIO(response.data)) as image:
        assert image.size == (660, 660)
    assert google_app.test_client().get("/wallet/google/logo/nope.png").status_code == 404


def _card_id(serial: str) -> int:
    from sqlalchemy import select

    from app.loyalty.models import Card

    return int(db.session.scalar(select(Card.id).where(Card.serial_number == serial)))


def test_rotating_barcode_is_computed_by_the_phone_and_used_once(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    import time

    from passes.barcode import totp_value

    api = admin_api(google_app)
    staff = api.as_(create_api_key(google_app, "staff"))
    program = create_program(api, google_rotating_barcode=True)
    serial = create_card(api, program, name="Ari")["serial_number"]
    api.post(f"/api/v1/cards/{serial}/earn", json={"points": 300})
    settle(google_app)

    rotating = wallet_server.objects[f"{ISSUER_ID}.{serial}"]["rotatingBarcode"]
    details = rotating["totpDetails"]
    assert rotating["valuePattern"] == f"PPT:{serial}:{{totp_value_0}}"
    period = int(details["periodMillis"]) // 1000

    def phone_code(at: float) -> str:  # what Google Wallet renders at time ``at``
        secret = bytes.fromhex(details["parameters"][0]["key"])
        value = totp_value(secret, int(at // period), details["parameters"][0]["valueLength"])
        return str(rotating["valuePattern"]).replace("{totp_value_0}", value)

    now = time.time()
    code = phone_code(now)
    assert staff.post("/api/v1/scans", json={"code": code}).status_code == 200
    redeemed = staff.post("/api/v1/redemptions", json={"code": code, "points": 100})
    assert redeemed.status_code == 201
    assert staff.post("/api/v1/scans", json={"code": code}).status_code == 409  # used
    assert staff.post("/api/v1/redemptions", json={"code": code, "points": 100}
                      ).status_code == 409
    assert staff.post("/api/v1/scans", json={"code": phone_code(now - 5 * period)}
                      ).status_code == 422  # too old
    assert staff.post("/api/v1/scans", json={"code": phone_code(now + period)}
                      ).status_code == 200  # the next value, within the skew window

    # A program without rotating barcodes refuses them.
    plain = create_program(api, slug="plain")
    other = create_card(api, plain, name="Budi")["serial_number"]
    from passes.barcode import rotating_pattern, totp_key

    secret = totp_key(google_app.config["REDEMPTION_CODE_KEY"], other)
    forged_rotating = rotating_pattern(other).replace(
        "{totp_value_0}", totp_value(secret, int(now // period)))
    assert staff.post("/api/v1/scans", json={"code": forged_rotating}).status_code == 422


@pytest.mark.parametrize("body", [
    "[" * 5000 + "]" * 5000, '{"signature": ' + "1" * 4301 + "}",
    '{"protocolVersion": "ECv2SigningOnly", "protocolVersion": "x"}',
], ids=["nested 5,000 deep", "4,301-digit integer", "duplicate key"])
def test_hostile_json_callbacks_are_a_400(google_app: Flask, body: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """The callback takes no key: RecursionError on a deep body was a 500 with a traceback."""
    response = google_app.test_client().post("/wallet/google/callback", data=body,
                                             content_type="application/json")
    assert response.status_code == 400
    assert response.json["type"] == "urn:pointpass:problem:malformed-json"
    assert not [r for r in caplog.records if r.levelno >= 40 or r.exc_info]


def _program_with_cards(app: Flask, *names: str) -> tuple[ApiClient, dict[str, Any],
                                                         list[str], str]:
    """A program with a card (and its Google object) for each of ``names``: the admin API
    client, the program, the cards' serials and the program's class id."""
    api = admin_api(app)
    program = create_program(api)
    serials = [create_card(api, program, name=name)["serial_number"] for name in names]
    settle(app)
    return api, program, serials, f"{ISSUER_ID}.{program['slug']}"


def _sweep_classes(app: Flask) -> None:
    with app.app_context():
        sync_classes()  # what the periodic sweep runs


def test_a_message_to_everyone_is_one_request_to_the_class(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    """A marketer's message to every card goes on the loyalty class, which every holder's
    pass shows: one request, not two per object (at Google's 20 a second, 400,000 objects
    took eleven hours)."""
    api, program, serials, class_id = _program_with_cards(google_app, "Ari", "Budi", "Citra")
    before = len(wallet_server.api_requests())
    response = api.post(f"/api/v1/programs/{program['id']}/updates",
                        json={"message": "Double points on Friday"})
    assert response.status_code == 202
    settle(google_app)
    sent = wallet_server.api_requests()[before:]
    assert [(r.operation, r.resource_id, r.status) for r in sent] == [
        ("addMessage", class_id, 200)]
    assert sent[0].body["message"]["messageType"] == "TEXT_AND_NOTIFY"
    [message] = wallet_server.classes[class_id]["messages"]
    assert (message["body"], message["id"]) == ("Double points on Friday",
                                                f"update-{response.json['id']}")
    progress = api.get(response.json["url"]).json
    # Every card is held by a wallet (a Google object), told through the class.
    assert (progress["status"], progress["cards_done"], progress["cards_with_wallet"]) == (
        "done", 3, 3)
    assert not any(wallet_server.objects[f"{ISSUER_ID}.{s}"].get("messages") for s in serials)

    # Once added it is not added again: another update, the sweep.
    api.post(f"/api/v1/programs/{program['id']}/updates", json={})
    settle(google_app)
    _sweep_classes(google_app)
    assert len(wallet_server.classes[class_id]["messages"]) == 1


def test_a_class_message_google_missed_is_sent_by_the_sweep(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    api, program, _, class_id = _program_with_cards(google_app, "Ari")
    wallet_server.fail("addMessage", class_id, 503, "backendError", times=None)
    first = api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "One"})
    second = api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "Two"})
    settle(google_app)
    assert not wallet_server.classes[class_id].get("messages")
    assert api.get(first.json["url"]).json["status"] == "done"  # Apple's side and the cards

    wallet_server.clear_failures()
    _sweep_classes(google_app)
    messages = wallet_server.classes[class_id]["messages"]
    assert [(m["body"], m["id"]) for m in messages] == [
        ("One", f"update-{first.json['id']}"), ("Two", f"update-{second.json['id']}")]
    _sweep_classes(google_app)
    assert len(wallet_server.classes[class_id]["messages"]) == 2


def test_a_new_class_does_not_get_the_programs_earlier_messages(
    google_app: Flask, wallet_server: GoogleWalletTestServer
) -> None:
    """A message sent before the class existed had no holder in Google Wallet to see it."""
    api = admin_api(google_app)
    program = create_program(api)
    api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "Nobody yet"})
    settle(google_app)
    create_card(api, program, name="Ari")
    settle(google_app)
    _sweep_classes(google_app)
    class_id = f"{ISSUER_ID}.{program['slug']}"
    assert not wallet_server.classes[class_id].get("messages")
    api.post(f"/api/v1/programs/{program['id']}/updates", json={"message": "Hello Ari"})
    settle(google_app)
    assert [m["body"] for m in wallet_server.classes[class_id]["messages"]] == ["Hello Ari"]
