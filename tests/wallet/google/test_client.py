"""The REST client against the local Google Wallet server: convergence, retries, fallbacks,
token reuse and rate limiting."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from app.wallet.google.client import (
    GoogleWalletClient,
    GoogleWalletError,
    LocalRateLimiter,
    RedisRateLimiter,
)
from passes.google.payloads import (
    loyalty_class_body,
    loyalty_object_body,
    loyalty_object_patch_body,
)
from tests.clock import FakeClock
from tests.google_server import GoogleWalletTestServer
from tests.wallet.google.conftest import ISSUER_ID, class_content, object_content

OBJECT_ID = f"{ISSUER_ID}.CARD1"
CLASS_ID = f"{ISSUER_ID}.kopi-test"


@pytest.fixture
def klass(google_client: GoogleWalletClient) -> dict[str, Any]:
    body = loyalty_class_body(class_content())
    google_client.upsert_class(body)
    return body


def operations(server: GoogleWalletTestServer) -> list[tuple[str, int]]:
    return [(r.operation, r.status) for r in server.api_requests()]


def test_upsert_class_inserts_then_patches(google_client: GoogleWalletClient,
                                           wallet_server: GoogleWalletTestServer) -> None:
    google_client.upsert_class(loyalty_class_body(class_content()))
    renamed = google_client.upsert_class(
        loyalty_class_body(class_content(program_name="Kopi Club")))
    assert renamed["programName"] == "Kopi Club"
    assert wallet_server.classes[CLASS_ID]["programName"] == "Kopi Club"
    assert operations(wallet_server) == [("insert", 200), ("insert", 409), ("patch", 200)]
    assert google_client.get_class(CLASS_ID)["programName"] == "Kopi Club"  # type: ignore[index]


def test_insert_existing_object_gets_then_patches(klass: dict[str, Any],
                                                  google_client: GoogleWalletClient,
                                                  wallet_server: GoogleWalletTestServer) -> None:
    google_client.insert_object(loyalty_object_body(object_content()))
    result = google_client.insert_object(loyalty_object_body(object_content(balance=999)))
    assert result["loyaltyPoints"]["balance"] == {"int": 999}
    assert wallet_server.objects[OBJECT_ID]["loyaltyPoints"]["balance"] == {"int": 999}
    ops = operations(wallet_server)[1:]
    assert ops == [("insert", 200), ("insert", 409), ("get", 200), ("patch", 200)]
    patch = wallet_server.api_requests("patch")[0].body
    assert set(patch) == {"loyaltyPoints", "notifyPreference"}  # only what differs
    # The same insert again: nothing differs, so nothing is patched.
    google_client.insert_object(loyalty_object_body(object_content(balance=999)))
    assert operations(wallet_server)[-2:] == [("insert", 409), ("get", 200)]
    assert google_client.stats()["unchanged"] == 1


def test_patch_of_missing_object_inserts_full_body(klass: dict[str, Any],
                                                   google_client: GoogleWalletClient,
                                                   wallet_server: GoogleWalletTestServer) -> None:
    content = object_content(balance=40)
    full = loyalty_object_body(content)
    result = google_client.patch_object(OBJECT_ID, loyalty_object_patch_body(content),
                                 full_body=lambda: full)
    assert result["loyaltyPoints"]["balance"] == {"int": 40}
    assert wallet_server.objects[OBJECT_ID]["textModulesData"] == full["textModulesData"]
    assert operations(wallet_server)[1:] == [("patch", 404), ("insert", 200)]
    assert google_client.stats()["missing_inserted"] == 1


def test_patch_of_missing_object_without_full_body_raises(
        klass: dict[str, Any], google_client: GoogleWalletClient) -> None:
    with pytest.raises(GoogleWalletError) as caught:
        google_client.patch_object(OBJECT_ID, {"state": "INACTIVE"})
    assert (caught.value.status, caught.value.reason) == (404, "resourceNotFound")


def test_sync_object(klass: dict[str, Any], google_client: GoogleWalletClient,
                     wallet_server: GoogleWalletTestServer) -> None:
    first = object_content()
    google_client.sync_object(loyalty_object_body(first), loyalty_object_patch_body(first))
    second = object_content(balance=300, notify=True)
    google_client.sync_object(loyalty_object_body(second), loyalty_object_patch_body(second, first))
    assert wallet_server.objects[OBJECT_ID]["loyaltyPoints"]["balance"] == {"int": 300}
    assert operations(wallet_server)[1:] == [("patch", 404), ("insert", 200), ("patch", 200)]
    assert wallet_server.api_requests("patch")[-1].body["notifyPreference"] == "NOTIFY_ON_UPDATE"


def test_429_is_retried_then_succeeds(klass: dict[str, Any], google_client: GoogleWalletClient,
                                      wallet_server: GoogleWalletTestServer) -> None:
    wallet_server.fail("insert", OBJECT_ID, 429, "rateLimitExceeded", times=2)
    google_client.insert_object(loyalty_object_body(object_content()))
    assert OBJECT_ID in wallet_server.objects
    assert operations(wallet_server)[1:] == [("insert", 429), ("insert", 429), ("insert", 200)]
    assert google_client.stats()["retried"] == 2


def test_retries_back_off_exponentially_and_honour_retry_after(
        klass: dict[str, Any], make_google_client: Callable[..., GoogleWalletClient],
        wallet_server: GoogleWalletTestServer) -> None:
    clock = FakeClock()
    google_client = make_google_client(backoff_base=0.5, backoff_max=30.0, sleep=clock.sleep)
    wallet_server.fail("get", OBJECT_ID, 503, "backendError", times=4)
    assert google_client.get_object(OBJECT_ID) is None  # then a 404: it does not exist
    # Jittered: each wait is between half and all of 0.5, 1, 2, 4 s.
    assert len(clock.slept) == 4
    for slept, full in zip(clock.slept, [0.5, 1.0, 2.0, 4.0], strict=True):
        assert full / 2 <= slept <= full
    assert [s for op, s in operations(wallet_server) if op == "get"] == [503] * 4 + [404]


@pytest.mark.parametrize(("status", "reason"), [(500, "backendError"), (503, "backendError"),
                                                (403, "rateLimitExceeded")])
def test_transient_errors_are_retried(status: int, reason: str, klass: dict[str, Any],
                                      google_client: GoogleWalletClient,
                                      wallet_server: GoogleWalletTestServer) -> None:
    google_client.insert_object(loyalty_object_body(object_content()))
    wallet_server.fail("get", OBJECT_ID, status, reason, times=1)
    assert google_client.get_object(OBJECT_ID) is not None
    assert [s for op, s in operations(wallet_server) if op == "get"] == [status, 200]


def test_retries_are_bounded(klass: dict[str, Any],
                             make_google_client: Callable[..., GoogleWalletClient],
                             wallet_server: GoogleWalletTestServer) -> None:
    google_client = make_google_client(retries=2)
    wallet_server.fail("get", OBJECT_ID, 503, "backendError", times=None)
    with pytest.raises(GoogleWalletError) as caught:
        google_client.get_object(OBJECT_ID)
    assert (caught.value.status, caught.value.reason) == (503, "backendError")
    assert len(wallet_server.api_requests("get")) == 3


@pytest.mark.parametrize(("status", "reason"), [(400, "invalidArgument"),
                                                (403, "permissionDenied"),
                                                (404, "resourceNotFound")])
def test_other_4xx_are_not_retried(status: int, reason: str, klass: dict[str, Any],
                                   google_client: GoogleWalletClient,
                                   wallet_server: GoogleWalletTestServer) -> None:
    wallet_server.fail("patch", OBJECT_ID, status, reason, times=None)
    with pytest.raises(GoogleWalletError) as caught:
        google_client.patch_object(OBJECT_ID, {"state": "ACTIVE"})
    assert (caught.value.status, caught.value.reason) == (status, reason)
    assert len(wallet_server.api_requests("patch")) == 1


def test_add_message_falls_back_to_text_on_quota(klass: dict[str, Any],
                                                 google_client: GoogleWalletClient,
                                                 wallet_server: GoogleWalletTestServer) -> None:
    google_client.insert_object(loyalty_object_body(object_content()))
    message = {"header": "Double points", "body": "This weekend only", "id": "promo-1"}
    wallet_server.fail("addMessage", OBJECT_ID, 403, "quotaExceeded", times=1)
    result = google_client.add_message(OBJECT_ID, message, notify=True)
    assert result["messages"][-1]["messageType"] == "TEXT"
    sent = [r.body["message"]["messageType"] for r in wallet_server.api_requests("addMessage")]
    assert sent == ["TEXT_AND_NOTIFY", "TEXT"]
    assert google_client.stats()["notify_fallback"] == 1


def test_add_message_real_quota(klass: dict[str, Any], google_client: GoogleWalletClient,
                                wallet_server: GoogleWalletTestServer) -> None:
    google_client.insert_object(loyalty_object_body(object_content()))
    for i in range(4):
        google_client.add_message(OBJECT_ID, {"header": "Hi", "body": f"#{i}"}, notify=True)
    types = [m["messageType"] for m in wallet_server.iter_messages(OBJECT_ID)]
    assert types == ["TEXT_AND_NOTIFY"] * 3 + ["TEXT"]
    assert wallet_server.notifications(OBJECT_ID) == 3
    # Without notify there is no fallback to make; other 403s are not swallowed.
    wallet_server.fail("addMessage", OBJECT_ID, 403, "quotaExceeded", times=1)
    with pytest.raises(GoogleWalletError, match="quotaExceeded"):
        google_client.add_message(OBJECT_ID, {"header": "Hi", "body": "plain"}, notify=False)


def test_token_is_exchanged_once_and_reused(klass: dict[str, Any],
                                            google_client: GoogleWalletClient,
                                            wallet_server: GoogleWalletTestServer) -> None:
    for balance in range(5):
        google_client.sync_object(loyalty_object_body(object_content(balance=balance)),
                           {"loyaltyPoints": {"balance": {"int": balance}}})
    assert wallet_server.token_requests == 1
    assert all(r.authorized for r in wallet_server.api_requests())


def test_revoked_token_is_refreshed_once(klass: dict[str, Any], google_client: GoogleWalletClient,
                                         wallet_server: GoogleWalletTestServer) -> None:
    wallet_server.revoke_tokens()
    assert google_client.get_class(CLASS_ID) is not None
    assert wallet_server.token_requests == 2
    assert [s for _, s in operations(wallet_server)][-2:] == [401, 200]


def test_secrets_are_not_logged(klass: dict[str, Any], google_client: GoogleWalletClient,
                                wallet_server: GoogleWalletTestServer,
                                service_account_info: dict[str, str],
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wallet_server.fail("get", None, 503, "backendError", times=1)
    wallet_server.fail("patch", None, 400, "invalidArgument", times=1)
    google_client.get_class(CLASS_ID)
    with pytest.raises(GoogleWalletError):
        google_client.patch_object(OBJECT_ID, {"state": "ACTIVE"})
    text = caplog.text
    key_body = service_account_info["private_key"].splitlines()[1]
    assert key_body not in text
    assert "ya29.test-" not in text
    assert "Bearer" not in text


def test_local_rate_limiter_spaces_requests() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(rate=5, period=0.2, guard=0.0, clock=clock, sleep=clock.sleep)
    granted = []
    for _ in range(11):
        limiter.acquire()
        granted.append(clock.now())
    assert granted[:5] == [granted[0]] * 5  # the first five at once
    assert clock.slept  # then it waited instead of sending
    # Never more than five in any 0.2 s: the sixth grant after any one is 0.2 s later or more.
    assert all(later - first >= 0.2 - 1e-9
               for first, later in zip(granted, granted[5:], strict=False))
    assert granted[-1] - granted[0] < 0.41  # and not slower than that


@pytest.mark.redis
def test_redis_rate_limiter_across_clients(
    klass: dict[str, Any],
    make_google_client: Callable[..., GoogleWalletClient],
    wallet_server: GoogleWalletTestServer,
    redis_client: redis.Redis,
    limiter_key: str,
) -> None:
    clients = [make_google_client(RedisRateLimiter(redis_client, limiter_key, rate=20))
               for _ in range(2)]
    for c in clients:  # exchange tokens first so only API calls compete
        c.get_class(CLASS_ID)
    redis_client.delete(limiter_key)  # a fresh window for the race below
    before = len(wallet_server.api_requests())
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(clients))

    def work(c: GoogleWalletClient) -> None:
        try:
            barrier.wait()
            for _ in range(25):
                c.get_class(CLASS_ID)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(wallet_server.api_requests("get")) == 52
    # Counted from the race on: the limiter's window started afresh there.
    assert wallet_server.max_in_window(1.0, since=before) <= 20
    assert wallet_server.max_in_window(1.0, since=before) >= 15  # a limit, not a crawl
