"""The "Add to Google Wallet" link: a short RS256 JWT that verifies with the account's key."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import google.auth.crypt
import google.auth.exceptions
import google.auth.jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from passes.google.savelink import (
    SAVE_URL_PREFIX,
    SaveLinkError,
    save_jwt,
    save_url,
    signer_from_service_account,
)
from tests.wallet.google.conftest import ISSUER_ID

ORIGINS = ["https://pointpass.test", "https://shop.pointpass.test:8443/"]


def public_pem(info: dict[str, str]) -> bytes:
    key = serialization.load_pem_private_key(info["private_key"].encode(), None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_save_url_verifies_and_has_the_claims(service_account_info: dict[str, str]) -> None:
    signer, email = signer_from_service_account(service_account_info)
    object_ids = [f"{ISSUER_ID}.CARD{i}" for i in range(3)]
    url = save_url(signer, service_account_email=email, object_ids=object_ids,
                   class_ids=[f"{ISSUER_ID}.kopi-test"], origins=ORIGINS, expires_in=600)
    assert url.startswith(SAVE_URL_PREFIX)
    assert len(url) < 1800
    token = url.removeprefix(SAVE_URL_PREFIX)

    claims = google.auth.jwt.decode(token, certs=public_pem(service_account_info))
    assert claims["iss"] == email == "wallet@pointpass-test.iam.gserviceaccount.com"
    assert claims["aud"] == "google"
    assert claims["typ"] == "savetowallet"
    assert abs(claims["iat"] - time.time()) < 5
    assert claims["origins"] == ["https://pointpass.test", "https://shop.pointpass.test:8443"]
    assert claims["payload"] == {
        "loyaltyObjects": [{"id": i} for i in object_ids],
        "loyaltyClasses": [{"id": f"{ISSUER_ID}.kopi-test"}],
    }
    header = json.loads(b64url(token.split(".")[0]))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": service_account_info["private_key_id"]}


def test_default_link_has_no_exp_and_still_verifies(
    service_account_info: dict[str, str],
) -> None:
    signer, email = signer_from_service_account(service_account_info)
    token = save_jwt(signer, service_account_email=email, object_ids=[f"{ISSUER_ID}.CARD1"],
                     origins=["https://pointpass.test"], issued_at=1_700_000_000)
    header_b64, claims_b64, signature_b64 = token.split(".")
    claims: dict[str, Any] = json.loads(b64url(claims_b64))
    assert "exp" not in claims and claims["iat"] == 1_700_000_000
    assert claims["payload"] == {"loyaltyObjects": [{"id": f"{ISSUER_ID}.CARD1"}]}
    key = serialization.load_pem_public_key(public_pem(service_account_info))
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(b64url(signature_b64), f"{header_b64}.{claims_b64}".encode(),
               padding.PKCS1v15(), hashes.SHA256())


def test_link_stays_short_for_long_ids(service_account_info: dict[str, str]) -> None:
    signer, email = signer_from_service_account(service_account_info)
    url = save_url(signer, service_account_email=email, object_ids=[f"{ISSUER_ID}.{'A' * 40}"],
                   origins=ORIGINS)
    assert len(url) < 900
    with pytest.raises(SaveLinkError, match="fewer objects"):
        save_url(signer, service_account_email=email,
                 object_ids=[f"{ISSUER_ID}.{'A' * 150}.{i}" for i in range(8)], origins=ORIGINS)


def test_a_different_key_does_not_verify(service_account_info: dict[str, str]) -> None:
    from passes.devcerts import google_service_account_info

    signer, email = signer_from_service_account(service_account_info)
    token = save_jwt(signer, service_account_email=email, object_ids=[f"{ISSUER_ID}.CARD1"],
                     origins=[], expires_in=60)
    with pytest.raises(google.auth.exceptions.GoogleAuthError):
        google.auth.jwt.decode(token, certs=public_pem(google_service_account_info()))


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"object_ids": []}, "at least one"),
        ({"object_ids": f"{ISSUER_ID}.CARD1"}, "sequence"),
        ({"object_ids": ["CARD1"]}, "not a '<issuer id>.<suffix>' id"),
        ({"object_ids": [f"{ISSUER_ID}.CARD 1"]}, "not a '<issuer id>.<suffix>' id"),
        ({"origins": ["pointpass.test"]}, "origin"),
        ({"origins": ["https://pointpass.test/path"]}, "origin"),
        ({"origins": "https://pointpass.test"}, "origins"),
        ({"service_account_email": "nobody"}, "service_account_email"),
        ({"expires_in": 0}, "expires_in"),
    ],
)
def test_bad_arguments_are_refused(arguments: dict[str, Any], problem: str,
                                   service_account_info: dict[str, str]) -> None:
    signer, email = signer_from_service_account(service_account_info)
    values: dict[str, Any] = {"service_account_email": email,
                              "object_ids": [f"{ISSUER_ID}.CARD1"], "origins": ORIGINS}
    values.update(arguments)
    with pytest.raises(SaveLinkError, match=problem):
        save_url(signer, **values)


def test_signer_needs_a_key_id(service_account_info: dict[str, str]) -> None:
    signer = google.auth.crypt.RSASigner.from_string(service_account_info["private_key"])
    with pytest.raises(SaveLinkError, match="key id"):
        save_url(signer, service_account_email="a@b.example", object_ids=[f"{ISSUER_ID}.C"],
                 origins=[])
