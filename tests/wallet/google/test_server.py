"""The test server answers like Google: its validator bites, its errors have Google's shape,
and its PATCH merges like Google's."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from app.wallet.google.client import GoogleWalletClient, GoogleWalletError
from passes.google.payloads import loyalty_class_body, loyalty_object_body
from tests.google_server import GoogleWalletTestServer, WalletSchema, merge_patch
from tests.wallet.google.conftest import ISSUER_ID, class_content, object_content

SCHEMA = WalletSchema()


@pytest.fixture
def seeded(google_client: GoogleWalletClient) -> dict[str, Any]:
    """A class and an object on the server; returns the object body."""
    google_client.upsert_class(loyalty_class_body(class_content()))
    body = loyalty_object_body(object_content())
    google_client.insert_object(body)
    return body


def test_required_fields_come_from_the_discovery_document() -> None:
    assert {"id", "issuerName", "reviewStatus", "programName", "programLogo"} <= \
        SCHEMA.required["LoyaltyClass"]
    assert {"id", "classId", "state"} <= SCHEMA.required["LoyaltyObject"]
    # Derived from "Required." in descriptions, not only from the explicit list:
    assert {"periodMillis", "startDateTime", "values"} <= SCHEMA.required["RotatingBarcodeValues"]


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda b: b.update(colour="red"), "colour: unknown field in LoyaltyObject"),
        (lambda b: b["loyaltyPoints"].update(value=3), "loyaltyPoints.value: unknown field"),
        (lambda b: b.pop("state"), "state: required in LoyaltyObject"),
        (lambda b: b.pop("classId"), "classId: required"),
        (lambda b: b.update(state="GONE"), "state: 'GONE' is not one of"),
        (lambda b: b["loyaltyPoints"].update(balance={"int": "many"}), "expected an integer"),
        (lambda b: b["loyaltyPoints"].update(balance={"int": 2**31}), "out of range for int32"),
        (lambda b: b["loyaltyPoints"].update(balance={"int": 1, "string": "1"}), "exactly one"),
        (lambda b: b["loyaltyPoints"].pop("balance"), "balance: required in LoyaltyPoints"),
        (lambda b: b.update(textModulesData={"id": "x"}), "textModulesData: expected an array"),
        (lambda b: b["barcode"].update(type="QR"), "barcode.type: 'QR' is not one of"),
        (lambda b: b.update(hasUsers="yes"), "hasUsers: expected true or false"),
        (lambda b: b.update(accountName=None), "null is only allowed in a PATCH"),
    ],
)
def test_invalid_object_bodies_are_refused(mutate: Any, problem: str,
                                           google_client: GoogleWalletClient,
                                           wallet_server: GoogleWalletTestServer) -> None:
    google_client.upsert_class(loyalty_class_body(class_content()))
    body = loyalty_object_body(object_content())
    mutate(body)
    with pytest.raises(GoogleWalletError) as caught:
        google_client.insert_object(body)
    assert caught.value.status == 400
    assert caught.value.reason == "invalidArgument"
    assert problem in caught.value.message
    inserts = [r for r in wallet_server.api_requests("insert") if r.resource_id == body.get("id")]
    assert len(inserts) == 1  # a 400 is never retried
    assert wallet_server.objects == {}


def test_invalid_class_bodies_are_refused(google_client: GoogleWalletClient) -> None:
    body = loyalty_class_body(class_content())
    del body["programLogo"]
    with pytest.raises(GoogleWalletError, match="programLogo: required in LoyaltyClass"):
        google_client.upsert_class(body)
    body = loyalty_class_body(class_content())
    body["programLogo"]["privateImageId"] = "abc"  # both sources: Google refuses
    with pytest.raises(GoogleWalletError, match="exactly one of sourceUri, privateImageId"):
        google_client.upsert_class(body)
    body = loyalty_class_body(class_content())
    body["reviewStatus"] = "APPROVED"  # only Google approves
    with pytest.raises(GoogleWalletError, match="DRAFT or UNDER_REVIEW"):
        google_client.upsert_class(body)


def test_int64_accepts_strings_and_numbers() -> None:
    klass = loyalty_class_body(class_content())
    assert SCHEMA.errors("LoyaltyClass", {**klass, "version": "12"}) == []
    assert SCHEMA.errors("LoyaltyClass", {**klass, "version": 12}) == []
    assert SCHEMA.errors("LoyaltyClass", {**klass, "redemptionIssuers": [ISSUER_ID, 7]}) == []
    assert SCHEMA.errors("LoyaltyClass", {**klass, "version": "1.5"}) == [
        "version: expected an integer (int64)"]
    assert SCHEMA.errors("LoyaltyClass", {**klass, "version": True}) == [
        "version: expected an integer (int64)"]


def test_ids_unknown_ids_and_classes(google_client: GoogleWalletClient,
                                     wallet_server: GoogleWalletTestServer) -> None:
    body = loyalty_object_body(object_content())
    with pytest.raises(GoogleWalletError) as caught:
        google_client.insert_object(body)  # its class does not exist yet
    assert (caught.value.status, caught.value.reason) == (404, "classNotFound")
    assert google_client.get_object(body["id"]) is None
    with pytest.raises(GoogleWalletError) as caught:
        google_client.get_object("not-an-id")
    assert (caught.value.status, caught.value.reason) == (400, "invalidResource")
    with pytest.raises(GoogleWalletError) as caught:
        google_client.get_object("1234.other-issuer")
    assert caught.value.status == 403


def test_error_bodies_have_googles_shape(seeded: dict[str, Any],
                                         wallet_server: GoogleWalletTestServer) -> None:
    response = requests.get(f"{wallet_server.api_url}/loyaltyObject/{seeded['id']}", timeout=5)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED"
    assert error["errors"][0]["reason"] == "authError"
    assert isinstance(error["message"], str)
    response = requests.get(f"{wallet_server.api_url}/loyaltyObject/{seeded['id']}",
                            headers={"Authorization": "Bearer forged"}, timeout=5)
    assert response.status_code == 401


def test_token_endpoint_checks_the_assertion(wallet_server: GoogleWalletTestServer) -> None:
    response = requests.post(wallet_server.token_url, timeout=5, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": "e30.e30.c2ln",
    })
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_patch_merges_like_google(google_client: GoogleWalletClient, seeded: dict[str, Any],
                                  wallet_server: GoogleWalletTestServer) -> None:
    google_client.patch_object(seeded["id"], {
        "loyaltyPoints": {"balance": {"int": 7}},
        "textModulesData": [{"id": "new", "header": "H", "body": "B"}],
        "accountName": None,
    })
    stored = wallet_server.objects[seeded["id"]]
    assert stored["loyaltyPoints"]["balance"] == {"int": 7}
    assert stored["loyaltyPoints"]["label"] == "Points"  # merged, not replaced
    assert stored["textModulesData"] == [{"id": "new", "header": "H", "body": "B"}]  # replaced
    assert "accountName" not in stored  # null deletes
    # A patch that leaves the object invalid is refused as a whole.
    with pytest.raises(GoogleWalletError, match="state: required"):
        google_client.patch_object(seeded["id"], {"state": None})
    assert wallet_server.objects[seeded["id"]]["state"] == "ACTIVE"


def test_merge_patch() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(target, {"a": {"c": [3]}, "d": None, "e": 2}) == {
        "a": {"b": 1, "c": [3]}, "e": 2}
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_requests_are_recorded(seeded: dict[str, Any],
                               wallet_server: GoogleWalletTestServer) -> None:
    inserts = wallet_server.api_requests("insert")
    assert [r.resource_id for r in inserts] == [f"{ISSUER_ID}.kopi-test", seeded["id"]]
    assert all(r.authorized for r in inserts)
    assert json.loads(json.dumps(inserts[1].body)) == seeded
    assert inserts[0].time <= inserts[1].time


def test_update_replaces_the_resource(seeded: dict[str, Any],
                                      wallet_server: GoogleWalletTestServer) -> None:
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_file(
        str(wallet_server.sa_file),  # type: ignore[attr-defined]
        scopes=["https://www.googleapis.com/auth/wallet_object.issuer"],
    )
    session = AuthorizedSession(credentials)
    url = f"{wallet_server.api_url}/loyaltyObject/{seeded['id']}"
    replacement = loyalty_object_body(object_content(tier=None, text_modules=(), links=()))
    response = session.put(url, json=replacement, timeout=5)
    assert response.status_code == 200, response.text
    stored = wallet_server.objects[seeded["id"]]
    assert "textModulesData" not in stored and "secondaryLoyaltyPoints" not in stored
    # An update is a whole resource: required fields are required.
    del replacement["state"]
    response = session.put(url, json=replacement, timeout=5)
    assert response.status_code == 400
    assert "state: required" in response.json()["error"]["message"]
    response = session.put(f"{wallet_server.api_url}/loyaltyObject/{ISSUER_ID}.NOPE",
                           json={**replacement, "id": f"{ISSUER_ID}.NOPE", "state": "ACTIVE"},
                           timeout=5)
    assert response.status_code == 404
    # A class update works the same way.
    klass = loyalty_class_body(class_content(program_name="Kopi Club"))
    response = session.put(f"{wallet_server.api_url}/loyaltyClass/{klass['id']}", json=klass,
                           timeout=5)
    assert response.status_code == 200
    assert wallet_server.classes[klass["id"]]["programName"] == "Kopi Club"
    session.close()
