"""Google Wallet save/delete callbacks: genuine ones verify, anything else is refused."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from passes.google.callbacks import (
    CallbackError,
    RootKeyCache,
    WalletCallback,
    length_value,
    parse_root_keys,
    verify_callback,
)
from tests.google_callbacks import DAY_MS, CallbackSigner, message, now_ms
from tests.google_server import GoogleWalletTestServer
from tests.wallet.google.conftest import ISSUER_ID


@pytest.fixture(scope="module")
def signer() -> CallbackSigner:
    return CallbackSigner()


def test_length_value() -> None:
    assert length_value("ab", "") == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"
    assert length_value("ไทย")[:4] == (9).to_bytes(4, "little")  # bytes, not characters


@pytest.mark.parametrize("event_type", ["save", "del"])
def test_genuine_callback_verifies(signer: CallbackSigner, event_type: str) -> None:
    sent = message(ISSUER_ID, event_type, nonce="n-1")
    body = signer.callback(sent, recipient_id=ISSUER_ID)
    for form in (body, json.dumps(body), json.dumps(body).encode()):
        event = verify_callback(form, signer.keys_json(), recipient_id=ISSUER_ID)
        assert isinstance(event, WalletCallback)
        assert event.event_type == event_type
        assert event.class_id == f"{ISSUER_ID}.kopi-test"
        assert event.object_id == f"{ISSUER_ID}.CARD1"
        assert event.nonce == "n-1"
        assert event.expires_at_ms == int(sent["expTimeMillis"])
        assert event.expires_at.tzinfo is not None


def rejected(body: Any, keys: Any, **kwargs: Any) -> str:
    with pytest.raises(CallbackError) as caught:
        verify_callback(body, keys, **{"recipient_id": ISSUER_ID, **kwargs})
    return caught.value.reason


def test_tampered_message_is_rejected(signer: CallbackSigner) -> None:
    body = signer.callback(message(ISSUER_ID, "save"), recipient_id=ISSUER_ID)
    body["signedMessage"] = body["signedMessage"].replace('"save"', '"del"')
    assert "message signature does not verify" in rejected(body, signer.keys_json())


def test_tampered_intermediate_key_is_rejected(signer: CallbackSigner) -> None:
    body = signer.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)
    forged = json.loads(body["intermediateSigningKey"]["signedKey"])
    forged["keyExpiration"] = str(now_ms() + 365 * DAY_MS)
    body["intermediateSigningKey"]["signedKey"] = json.dumps(forged)
    assert "not signed by a trusted root key" in rejected(body, signer.keys_json())


def test_expired_message_is_rejected(signer: CallbackSigner) -> None:
    body = signer.callback(message(ISSUER_ID, expires_ms=now_ms() - 1000),
                           recipient_id=ISSUER_ID)
    assert rejected(body, signer.keys_json()) == "the message has expired"


def test_expired_intermediate_key_is_rejected() -> None:
    stale = CallbackSigner(intermediate_expires_ms=now_ms() - 1000)
    body = stale.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)
    assert rejected(body, stale.keys_json()) == "the intermediate signing key has expired"


def test_unknown_root_is_rejected(signer: CallbackSigner) -> None:
    body = signer.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)
    stranger = CallbackSigner()
    assert "not signed by a trusted root key" in rejected(body, stranger.keys_json())


def test_expired_root_key_is_not_trusted() -> None:
    old = CallbackSigner(root_expires_ms=now_ms() - 1000)
    body = old.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)
    assert "no non-expired" in rejected(body, old.keys_json())


def test_root_key_of_another_protocol_is_not_trusted(signer: CallbackSigner) -> None:
    body = signer.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)
    assert "no non-expired" in rejected(body, signer.keys_json(protocol_version="ECv2"))


def test_wrong_sender_is_rejected(signer: CallbackSigner) -> None:
    body = signer.callback(message(ISSUER_ID), recipient_id=ISSUER_ID, sender_id="SomeoneElse")
    assert "not signed by a trusted root key" in rejected(body, signer.keys_json())
    # ... and a verifier expecting another sender refuses Google's own callbacks.
    genuine = signer.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)
    assert "not signed" in rejected(genuine, signer.keys_json(), sender_id="GooglePayWallet")


def test_wrong_recipient_is_rejected(signer: CallbackSigner) -> None:
    other_issuer = "3388000000099999999"
    body = signer.callback(message(other_issuer), recipient_id=other_issuer)
    assert "message signature does not verify" in rejected(body, signer.keys_json())
    # Signed for us but naming another issuer's object:
    body = signer.callback(message(other_issuer), recipient_id=ISSUER_ID)
    assert "belongs to another issuer" in rejected(body, signer.keys_json())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda b: b.update(protocolVersion="ECv2"), "unsupported protocolVersion"),
        (lambda b: b.pop("intermediateSigningKey"), "intermediateSigningKey is missing"),
        (lambda b: b["intermediateSigningKey"].update(signatures=[]), "signatures is missing"),
        (lambda b: b.update(signature="%%%"), "not valid base64"),
        (lambda b: b.pop("signedMessage"), "signedMessage is missing"),
    ],
)
def test_malformed_envelopes_are_rejected(signer: CallbackSigner, change: Any,
                                          reason: str) -> None:
    body = signer.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)
    change(body)
    assert reason in rejected(body, signer.keys_json())


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"eventType": "update"}, "eventType"),
        ({"nonce": ""}, "nonce"),
        ({"objectId": "CARD1"}, "objectId"),
        ({"expTimeMillis": "soon"}, "expTimeMillis"),
    ],
)
def test_malformed_messages_are_rejected(signer: CallbackSigner, fields: dict[str, Any],
                                         reason: str) -> None:
    body = signer.callback({**message(ISSUER_ID), **fields}, recipient_id=ISSUER_ID)
    assert reason in rejected(body, signer.keys_json())
    assert rejected("not json", signer.keys_json()) == "the callback body is not valid JSON"


def test_parse_root_keys_skips_unusable_keys(signer: CallbackSigner) -> None:
    document = signer.keys_json()
    document["keys"] += [
        {"keyValue": "AAAA", "protocolVersion": "ECv2SigningOnly", "keyExpiration": "1"},
        {"keyValue": document["keys"][0]["keyValue"], "protocolVersion": "ECv2SigningOnly"},
        {"keyValue": document["keys"][0]["keyValue"], "protocolVersion": "ECv1"},
    ]
    keys = parse_root_keys(json.dumps(document))
    assert len(keys) == 1 and keys[0].expires_at_ms == signer.root_expires_ms


def test_root_key_cache_fetches_once_and_refreshes(
    signer: CallbackSigner, wallet_server: GoogleWalletTestServer
) -> None:
    wallet_server.root_keys = signer.keys_json()
    clock = [1_000_000.0]
    cache = RootKeyCache(wallet_server.keys_url, max_age=600, clock=lambda: clock[0],
                         min_refetch_interval=60)
    body = signer.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)

    def verify_many() -> None:
        for _ in range(5):
            cache.verify(body, recipient_id=ISSUER_ID)

    threads = [threading.Thread(target=verify_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wallet_server.key_fetches == 1

    clock[0] += 601  # past max_age
    cache.verify(body, recipient_id=ISSUER_ID)
    assert wallet_server.key_fetches == 2

    wallet_server.root_keys_max_age = 30  # Cache-Control shortens the lifetime
    cache.keys(force=True)
    clock[0] += 31
    cache.keys()
    assert wallet_server.key_fetches == 4


def test_root_key_cache_follows_rotation(wallet_server: GoogleWalletTestServer) -> None:
    old, new = CallbackSigner(), CallbackSigner()
    wallet_server.root_keys = old.keys_json()
    clock = [1_000_000.0]
    cache = RootKeyCache(wallet_server.keys_url, clock=lambda: clock[0], min_refetch_interval=60)
    cache.verify(old.callback(message(ISSUER_ID), recipient_id=ISSUER_ID),
                 recipient_id=ISSUER_ID)
    wallet_server.root_keys = new.keys_json()
    rotated = new.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)
    with pytest.raises(CallbackError):  # fetched moments ago: no refetch storm
        cache.verify(rotated, recipient_id=ISSUER_ID)
    clock[0] += 61
    assert cache.verify(rotated, recipient_id=ISSUER_ID).event_type == "save"
    assert wallet_server.key_fetches == 2


def test_root_key_cache_keeps_valid_keys_when_google_is_down(
    signer: CallbackSigner, wallet_server: GoogleWalletTestServer, free_port: Any
) -> None:
    wallet_server.root_keys = signer.keys_json()
    clock = [1_000_000.0]
    cache = RootKeyCache(wallet_server.keys_url, max_age=10, clock=lambda: clock[0], timeout=2)
    body = signer.callback(message(ISSUER_ID), recipient_id=ISSUER_ID)
    cache.verify(body, recipient_id=ISSUER_ID)
    cache.url = f"http://127.0.0.1:{free_port()}/keys"  # nothing listens there
    clock[0] += 11
    assert cache.verify(body, recipient_id=ISSUER_ID).event_type == "save"

    empty = RootKeyCache(f"http://127.0.0.1:{free_port()}/keys", timeout=2)
    with pytest.raises(CallbackError, match="no non-expired"):
        empty.verify(body, recipient_id=ISSUER_ID)
