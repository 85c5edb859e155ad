"""The APNs client against a real HTTP/2 + TLS server (tests/apns_server.py), no mocks."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from app.wallet.apple.apns import (
    APNsClient,
    APNsClientClosed,
    APNsCredentialsError,
    Outcome,
    PushResult,
)
from passes.devcerts import DEFAULT_PASS_TYPE_ID
from tests.apns_server import APNsTestServer
from tests.clock import FakeClock
from tests.processes import wait_until
from tests.wallet.apple.conftest import APNS_KEY_PASSWORD

Tokens = Callable[..., list[str]]
MakeAPNsClient = Callable[..., APNsClient]


def by_token(results: list[PushResult]) -> dict[str, PushResult]:
    return {r.token: r for r in results}


def test_delivered_pushes_carry_topic_path_and_empty_body(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    pushed = tokens(3)
    results = apns_client.push_many(pushed)

    assert [r.token for r in results] == pushed
    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert {(r.status, r.reason, r.timestamp_ms, r.attempts) for r in results} == {
        (200, None, None, 1)
    }
    requests = sorted(apns_server.requests, key=lambda r: r.token)
    assert [r.token for r in requests] == pushed
    for request in requests:
        assert request.method == "POST"
        assert request.path == f"/3/device/{request.token}"
        assert request.topic == DEFAULT_PASS_TYPE_ID
        assert request.headers[":scheme"] == "https"
        assert request.headers[":authority"] == apns_server.url.removeprefix("https://")
        assert request.body == b"{}"
        assert request.status == 200


def test_unregistered_gives_the_timestamp(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    gone, fine = tokens(2)
    apns_server.respond(gone, 410, "Unregistered", timestamp_ms=1_700_000_000_123)

    results = by_token(apns_client.push_many([gone, fine]))

    assert results[gone] == PushResult(
        gone, Outcome.UNREGISTERED, 410, "Unregistered", 1_700_000_000_123, 1
    )
    assert results[fine].outcome is Outcome.DELIVERED


def test_unregistered_default_timestamp_is_now_in_ms(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    (gone,) = tokens(1)
    apns_server.respond(gone, 410, "Unregistered")
    before = int(time.time() * 1000)
    (result,) = apns_client.push_many([gone])
    assert result.timestamp_ms is not None
    assert before - 1000 <= result.timestamp_ms <= int(time.time() * 1000) + 1000


@pytest.mark.parametrize("reason", ["BadDeviceToken", "DeviceTokenNotForTopic"])
def test_bad_token_reasons_give_bad_token(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens, reason: str
) -> None:
    (bad,) = tokens(1)
    apns_server.respond(bad, 400, reason)
    (result,) = apns_client.push_many([bad])
    assert result == PushResult(bad, Outcome.BAD_TOKEN, 400, reason, None, 1)
    assert len(apns_server.requests_for(bad)) == 1  # not retried


def test_token_that_is_not_hex_is_never_sent(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    (good,) = tokens(1)
    results = by_token(apns_client.push_many(["../../etc/passwd", "", good]))
    assert results["../../etc/passwd"].outcome is Outcome.BAD_TOKEN
    assert results["../../etc/passwd"].attempts == 0
    assert results[""].outcome is Outcome.BAD_TOKEN
    assert results[good].outcome is Outcome.DELIVERED
    assert [r.token for r in apns_server.requests] == [good]


def test_too_many_requests_twice_then_delivered(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    (busy,) = tokens(1)
    apns_server.respond(busy, 429, "TooManyRequests", times=2)

    (result,) = apns_client.push_many([busy])

    assert result == PushResult(busy, Outcome.DELIVERED, 200, None, None, 3)
    assert [r.status for r in apns_server.requests_for(busy)] == [429, 429, 200]


@pytest.mark.parametrize(("status", "reason"), [(503, "ServiceUnavailable"), (500, None)])
def test_permanent_server_error_exhausts_retries(
    make_apns_client: MakeAPNsClient,
    apns_server: APNsTestServer,
    tokens: Tokens,
    status: int,
    reason: str | None,
) -> None:
    apns_client = make_apns_client(retries=2)
    (down,) = tokens(1)
    apns_server.respond(down, status, reason)

    (result,) = apns_client.push_many([down])

    assert result.outcome is Outcome.RETRY_EXHAUSTED
    assert result.status == status
    assert result.attempts == 3  # the first try and two retries
    assert len(apns_server.requests_for(down)) == 3
    if reason:
        assert result.reason == reason


def test_retries_back_off_exponentially(
    make_apns_client: MakeAPNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    jitters: list[tuple[float, float]] = []

    def jitter(low: float, high: float) -> float:
        jitters.append((low, high))
        return high  # the longest wait each time

    apns_client = make_apns_client(retries=4, backoff_base=0.004, backoff_max=0.02,
                                   jitter=jitter)
    (down,) = tokens(1)
    apns_server.respond(down, 503, "ServiceUnavailable")

    (result,) = apns_client.push_many([down])

    assert (result.outcome, result.attempts) == (Outcome.RETRY_EXHAUSTED, 5)
    assert len(apns_server.requests_for(down)) == 5
    # Equal jitter: each wait is half of 4, 8, 16, then the cap of 20 ms, plus a random part
    # of up to the other half.
    assert jitters == [(0, 0.002), (0, 0.004), (0, 0.008), (0, 0.01)]


@pytest.mark.parametrize(
    ("status", "reason"), [(403, "BadCertificate"), (413, "PayloadTooLarge"), (400, "BadTopic")]
)
def test_other_client_errors_fail_without_retry(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens, status: int, reason: str
) -> None:
    (token,) = tokens(1)
    apns_server.respond(token, status, reason)
    (result,) = apns_client.push_many([token])
    assert result == PushResult(token, Outcome.FAILED, status, reason, None, 1)
    assert len(apns_server.requests_for(token)) == 1


def test_topic_not_in_the_certificate_is_refused(
    make_apns_client: MakeAPNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    apns_client = make_apns_client(topic="pass.com.example.someone-else")
    (token,) = tokens(1)
    (result,) = apns_client.push_many([token])
    assert (result.outcome, result.status, result.reason) == (
        Outcome.FAILED,
        400,
        "TopicDisallowed",
    )


def test_duplicates_are_pushed_once(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    a, b = tokens(2)
    results = apns_client.push_many([a, b, a, a, b])
    assert [r.token for r in results] == [a, b]
    assert sorted(r.token for r in apns_server.requests) == [a, b]


def test_client_certificate_from_another_ca_is_refused_by_tls(
    make_apns_client: MakeAPNsClient,
    apns_tls: dict[str, Path],
    apns_server: APNsTestServer,
    tokens: Tokens,
) -> None:
    apns_client = make_apns_client(
        cert_path=apns_tls["stranger_cert"], key_path=apns_tls["stranger_key"], key_password=None
    )
    results = apns_client.push_many(tokens(3))

    # A refused certificate is not something a retry fixes: FAILED at the first attempt.
    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert {r.attempts for r in results} == {1}
    assert all(r.status is None and r.reason and "SSL" in r.reason for r in results)
    assert apns_server.tls_failures >= 1
    assert apns_server.connections == 0  # no TLS session was established
    assert apns_server.requests == []


def test_server_certificate_from_an_unknown_ca_is_refused(
    make_apns_client: MakeAPNsClient, apns_tls: dict[str, Path], tokens: Tokens
) -> None:
    apns_client = make_apns_client(ca_file=apns_tls["wwdr"])  # trusts the wrong CA for the server
    (result,) = apns_client.push_many(tokens(1))
    assert result.outcome is Outcome.FAILED
    assert result.reason and "SSLCertVerificationError" in result.reason


def test_unreachable_server_exhausts_retries(make_apns_client: MakeAPNsClient,
                                            tokens: Tokens) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed
    apns_client = make_apns_client(url=f"https://127.0.0.1:{port}", retries=2)
    results = apns_client.push_many(tokens(2))
    assert {(r.outcome, r.attempts, r.status) for r in results} == {
        (Outcome.RETRY_EXHAUSTED, 3, None)
    }
    assert all("ConnectionRefusedError" in (r.reason or "") for r in results)


def test_connection_is_reused_across_calls(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    apns_client.push_many(tokens(50))
    apns_client.push_many(tokens(50, prefix=1))
    assert apns_server.connections == 1
    assert {r.connection_id for r in apns_server.requests} == {1}
    assert len(apns_server.requests) == 100


def test_many_streams_are_in_flight_at_once(
    make_apns_client: MakeAPNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    apns_client = make_apns_client(max_concurrent_streams=64)
    results = apns_client.push_many(tokens(2000))
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert 1 < apns_server.max_concurrent_streams_seen <= 64
    assert apns_server.connections == 1


def test_server_setting_caps_concurrent_streams(
    make_server: Callable[..., APNsTestServer], make_apns_client: MakeAPNsClient, tokens: Tokens
) -> None:
    server = make_server(max_concurrent_streams=5)
    apns_client = make_apns_client(url=server.url, max_concurrent_streams=500)
    results = apns_client.push_many(tokens(300))
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert 1 < server.max_concurrent_streams_seen <= 5


def test_counters_add_up(apns_client: APNsClient, apns_server: APNsTestServer,
                         tokens: Tokens) -> None:
    gone, bad, busy, down, refused, *fine = tokens(10)
    apns_server.respond(gone, 410, "Unregistered")
    apns_server.respond(bad, 400, "BadDeviceToken")
    apns_server.respond(busy, 429, "TooManyRequests", times=1)
    apns_server.respond(down, 503, "ServiceUnavailable")
    apns_server.respond(refused, 403, "Forbidden")

    apns_client.push_many([gone, bad, busy, down, refused, *fine])
    apns_client.push_many(fine[:2])

    assert apns_client.counters == {
        "delivered": 1 + len(fine) + 2,
        "unregistered": 1,
        "bad_token": 1,
        "retry_exhausted": 1,
        "failed": 1,
    }


def test_non_delivered_outcomes_are_logged_once_each(
    apns_client: APNsClient,
    apns_server: APNsTestServer,
    tokens: Tokens,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone, bad, fine = tokens(3)
    apns_server.respond(gone, 410, "Unregistered")
    apns_server.respond(bad, 400, "BadDeviceToken")
    with caplog.at_level(logging.INFO, logger="pointpass.apns"):
        apns_client.push_many([gone, bad, fine])
    lines = [r for r in caplog.records if r.name == "pointpass.apns"]
    assert len(lines) == 2
    assert {r.levelno for r in lines} == {logging.INFO, logging.WARNING}
    assert "outcome=unregistered" in caplog.text
    assert "outcome=bad_token" in caplog.text
    assert gone not in caplog.text  # tokens are shortened


def test_key_password_never_appears_in_logs_errors_or_repr(
    make_apns_client: MakeAPNsClient,
    apns_tls: dict[str, Path],
    apns_server: APNsTestServer,
    tokens: Tokens,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    apns_client = make_apns_client(retries=1)
    apns_server.respond(tokens(1)[0], 503, "ServiceUnavailable")
    apns_server.respond(tokens(2)[1], 410, "Unregistered")
    apns_client.push_many(tokens(3))
    texts = [repr(apns_client), str(apns_client.__dict__)]

    wrong = APNS_KEY_PASSWORD[::-1]
    with pytest.raises(APNsCredentialsError) as excinfo:
        make_apns_client(key_password=wrong)
    texts += [str(excinfo.value), repr(excinfo.value)]
    texts += traceback.format_exception(excinfo.value)
    with pytest.raises(APNsCredentialsError) as missing:
        make_apns_client(key_password=None)  # the key is encrypted
    texts += [str(missing.value), *traceback.format_exception(missing.value)]
    assert "does not decrypt" in str(excinfo.value)
    assert "no key password" in str(missing.value)

    for secret in (APNS_KEY_PASSWORD, wrong):
        assert secret not in caplog.text
        for text in texts:
            assert secret not in text
    key_pem = apns_tls["pass_key"].read_text().splitlines()[1]
    assert key_pem not in caplog.text


def test_reconnects_after_the_server_closes_the_connection(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    first = apns_client.push_many(tokens(20))
    apns_server.close_connections(goaway=True)
    wait_until(lambda: apns_server.open_connections == 0, "the server to close", timeout=5)
    second = apns_client.push_many(tokens(20, prefix=1))
    apns_server.close_connections(goaway=False)  # abruptly, no GOAWAY
    third = apns_client.push_many(tokens(20, prefix=2))

    for results in (first, second, third):
        assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert apns_server.connections == 3
    assert len({r.connection_id for r in apns_server.requests}) == 3


def test_goaway_with_streams_in_flight_loses_no_push(
    make_server: Callable[..., APNsTestServer], make_apns_client: MakeAPNsClient, tokens: Tokens
) -> None:
    server = make_server(latency=0.05)  # keep streams in flight for a while
    apns_client = make_apns_client(url=server.url)
    pushed = tokens(300)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(apns_client.push_many, pushed)
        wait_until(lambda: server.requests, "the first pushes to arrive", timeout=5)
        server.close_connections(goaway=True)
        results = future.result(timeout=10)

    assert [r.token for r in results] == pushed
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert server.connections >= 2
    assert {r.token for r in server.requests if r.status == 200} >= set(pushed)


def _clocked_client(make_apns_client: MakeAPNsClient,
                    **options: Any) -> tuple[FakeClock, APNsClient]:
    """A client whose watchdog looks every 10 ms at a fake clock that only the test moves."""
    clock = FakeClock()
    return clock, make_apns_client(clock=clock, watch_interval=0.01, **options)


def _push_while_time_passes(apns_client: APNsClient, clock: FakeClock, tokens: list[str],
                            step: float) -> list[PushResult]:
    """Push ``tokens`` while the client's clock moves on by ``step`` every 10 ms."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(apns_client.push_many, tokens)
        while not future.done():
            clock.advance(step)
            time.sleep(0.01)
        return future.result()


def _watched(clock: FakeClock, looks: int = 3) -> None:
    """Wait until the client's watchdog has read ``clock`` a few more times."""
    reads = clock.reads
    wait_until(lambda: clock.reads >= reads + looks, "the APNs watchdog to look at the clock")


def test_a_silent_server_is_given_up_after_the_request_timeout(
    make_server: Callable[..., APNsTestServer], make_apns_client: MakeAPNsClient, tokens: Tokens
) -> None:
    server = make_server(latency=30)  # accepts requests, never answers in time
    clock, apns_client = _clocked_client(make_apns_client, url=server.url,
                                         request_timeout=5.0, retries=1)
    (result,) = _push_while_time_passes(apns_client, clock, tokens(1), 0.5)
    assert (result.outcome, result.status, result.attempts) == (Outcome.RETRY_EXHAUSTED, None, 2)
    assert result.reason and "TimeoutError" in result.reason
    assert server.connections == 2


def test_an_idle_connection_is_not_mistaken_for_a_silent_one(
    make_apns_client: MakeAPNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    clock, apns_client = _clocked_client(make_apns_client, request_timeout=0.2)
    apns_client.push_many(tokens(1))
    clock.advance(10)  # idle for much longer than the request timeout
    _watched(clock)
    (result,) = apns_client.push_many(tokens(1, prefix=1))
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 1)
    assert apns_server.connections == 1
    assert apns_server.pings == 0  # idle_ping (60 s) had not come


def test_an_idle_connection_answers_pings_and_is_kept(
    make_apns_client: MakeAPNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    clock, apns_client = _clocked_client(make_apns_client, request_timeout=0.4, idle_ping=0.1)
    apns_client.push_many(tokens(1))
    for pings in range(1, 4):  # idle again and again: a PING each time, each answered
        clock.advance(0.3)
        wait_until(lambda pings=pings: apns_server.pings >= pings, f"PING {pings}")
        _watched(clock)  # the watchdog saw the answer
    (result,) = apns_client.push_many(tokens(1, prefix=1))
    # Delivered at once, on the connection the PINGs kept.
    assert (result.outcome, result.attempts, apns_server.connections) == (Outcome.DELIVERED, 1, 1)


def test_a_connection_a_nat_dropped_while_idle_is_replaced_before_the_next_push(
    make_apns_client: MakeAPNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    """With PINGs the dead connection is found while idle: the next push goes out at once
    on a new connection."""
    clock, apns_client = _clocked_client(make_apns_client, request_timeout=1.0, idle_ping=0.1)
    apns_client.push_many(tokens(1))
    apns_server.blackhole_connections()
    clock.advance(0.2)  # idle: a PING goes out, unanswered
    _watched(clock)
    clock.advance(1.5)  # the PING's time is up: the connection is aborted
    wait_until(lambda: apns_server.open_connections == 0, "the dead connection to be dropped")
    (result,) = apns_client.push_many(tokens(1, prefix=1))
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 1)
    assert apns_server.connections == 2


def test_without_pings_a_push_on_a_dropped_connection_waits_out_the_timeout(
    make_apns_client: MakeAPNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    clock, apns_client = _clocked_client(make_apns_client, request_timeout=1.0, idle_ping=3600)
    apns_client.push_many(tokens(1))
    apns_server.blackhole_connections()
    clock.advance(2.0)  # idle, but not for an hour: no PING
    _watched(clock)
    assert apns_server.open_connections == 1
    (result,) = _push_while_time_passes(apns_client, clock, tokens(1, prefix=1), 0.25)
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 2)
    assert result.token == tokens(1, prefix=1)[0]
    assert apns_server.connections == 2
    assert apns_server.pings == 0


def test_a_connection_that_runs_out_of_stream_ids_is_replaced(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    apns_client.push_many(tokens(1))
    # Pretend about a billion pushes went through: two stream ids are left on the connection.
    engine = apns_client._engine
    assert engine is not None and engine.conn is not None
    engine.conn.h2.highest_outbound_stream_id = 2**31 - 5

    results = apns_client.push_many(tokens(10, prefix=1))

    assert {(r.outcome, r.attempts) for r in results} == {(Outcome.DELIVERED, 1)}
    assert apns_server.connections == 2
    # The spent one is closed once drained.
    wait_until(lambda: apns_server.open_connections == 1, "the spent connection to close", 5)


def _assert_delivered_on_one_connection(batches: list[list[PushResult]], size: int,
                                        apns_client: APNsClient,
                                        apns_server: APNsTestServer) -> None:
    """Every batch of ``size`` pushes was delivered, all over one connection."""
    assert [len(b) for b in batches] == [size] * len(batches)
    assert all(r.outcome is Outcome.DELIVERED for b in batches for r in b)
    assert apns_server.connections == 1
    assert apns_client.counters["delivered"] == size * len(batches)


def test_calls_from_many_threads_share_the_connection(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda p: apns_client.push_many(tokens(200, prefix=p)), range(8)))
    _assert_delivered_on_one_connection(batches, 200, apns_client, apns_server)


def test_async_api_and_concurrent_calls_share_the_connection(
    apns_client: APNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    async def main() -> list[list[PushResult]]:
        return await asyncio.gather(*(apns_client.apush_many(tokens(100, prefix=p))
                                      for p in range(5)))

    _assert_delivered_on_one_connection(asyncio.run(main()), 100, apns_client, apns_server)


def test_closed_client_refuses_to_push(
    make_apns_client: MakeAPNsClient, apns_server: APNsTestServer, tokens: Tokens
) -> None:
    with make_apns_client() as apns_client:
        apns_client.push_many(tokens(1))
    wait_until(lambda: apns_server.open_connections == 0, "close() to hang up", timeout=5)
    with pytest.raises(APNsClientClosed):
        apns_client.push_many(tokens(1))
    assert apns_client.push_many([]) == []


def test_a_string_is_not_a_list_of_tokens(apns_client: APNsClient, tokens: Tokens) -> None:
    with pytest.raises(TypeError):
        apns_client.push_many(tokens(1)[0])


# -- the test server's own checks, with a bare h2 client -------------------------------------


def raw_request(
    server: APNsTestServer,
    tls: dict[str, Path],
    headers: list[tuple[str, str]],
    body: bytes,
) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(tls["server_ca"]))
    context.load_cert_chain(str(tls["pass_cert"]), str(tls["pass_key"]), APNS_KEY_PASSWORD)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, headers, end_stream=not body)
        if body:
            conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, data = 0, b""
        while True:
            chunk = sock.recv(65536)
            assert chunk, "server closed the connection"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    return status, data
            sock.sendall(conn.data_to_send())


@pytest.mark.parametrize(
    ("method", "path", "topic", "body", "status", "reason"),
    [
        ("GET", "/3/device/ab12", DEFAULT_PASS_TYPE_ID, b"{}", 405, "MethodNotAllowed"),
        ("POST", "/2/device/ab12", DEFAULT_PASS_TYPE_ID, b"{}", 404, "BadPath"),
        ("POST", "/3/device/", DEFAULT_PASS_TYPE_ID, b"{}", 400, "MissingDeviceToken"),
        ("POST", "/3/device/xyz", DEFAULT_PASS_TYPE_ID, b"{}", 400, "BadDeviceToken"),
        ("POST", "/3/device/ab12", None, b"{}", 400, "MissingTopic"),
        ("POST", "/3/device/ab12", DEFAULT_PASS_TYPE_ID, b"", 400, "PayloadEmpty"),
        ("POST", "/3/device/ab12", DEFAULT_PASS_TYPE_ID, b"{nope", 400, "BadPayload"),
        ("POST", "/3/device/ab12", DEFAULT_PASS_TYPE_ID, b" " * 4097, 413, "PayloadTooLarge"),
    ],
)
def test_test_server_validates_like_apns(
    apns_server: APNsTestServer,
    apns_tls: dict[str, Path],
    method: str,
    path: str,
    topic: str | None,
    body: bytes,
    status: int,
    reason: str,
) -> None:
    headers = [(":method", method), (":scheme", "https"), (":authority", "x"), (":path", path)]
    if topic:
        headers.append(("apns-topic", topic))
    got_status, got_body = raw_request(apns_server, apns_tls, headers, body)
    assert (got_status, got_body) == (status, f'{{"reason": "{reason}"}}'.encode())
    assert apns_server.requests[-1].status == status
