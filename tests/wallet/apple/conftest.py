"""Fixtures for the APNs client tests: TLS material, a local APNs server, client factories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.wallet.apple.apns import APNsClient
from passes.devcerts import DEFAULT_PASS_TYPE_ID, create_ca_and_leaf, write_chain, write_dev_certs
from tests.apns_server import APNsTestServer, write_server_certificate
from tests.factories import closing_maker

APNS_KEY_PASSWORD = "apns-key-pw 9c41e0 do not log"


@pytest.fixture(scope="session")
def apns_tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths: ``wwdr`` (client CA), ``pass_cert``/``pass_key`` (key encrypted with
    ``APNS_KEY_PASSWORD``), ``server_ca``/``server_cert``/``server_key``, and
    ``stranger_cert``/``stranger_key``: a Pass Type ID certificate from an unrelated CA."""
    root = tmp_path_factory.mktemp("apns-tls")
    client_tls = write_dev_certs(root / "client", key_password=APNS_KEY_PASSWORD)
    server = write_server_certificate(root / "server")
    stranger = write_chain(root / "stranger", create_ca_and_leaf(ca_common_name="Some Other CA"))
    return {
        "wwdr": client_tls["wwdr"],
        "pass_cert": client_tls["pass_cert"],
        "pass_key": client_tls["pass_key"],
        "server_ca": server["ca"],
        "server_cert": server["cert"],
        "server_key": server["key"],
        "stranger_cert": stranger["pass_cert"],
        "stranger_key": stranger["pass_key"],
    }


@pytest.fixture
def make_server(apns_tls: dict[str, Path]) -> Iterator[Callable[..., APNsTestServer]]:
    """Start test servers (keyword arguments go to APNsTestServer); all stop afterwards."""

    def start(**options: Any) -> APNsTestServer:
        return APNsTestServer(apns_tls["server_cert"], apns_tls["server_key"], apns_tls["wwdr"],
                              **options).start()

    yield from closing_maker(start, APNsTestServer.stop)


@pytest.fixture
def apns_server(make_server: Callable[..., APNsTestServer]) -> APNsTestServer:
    return make_server()


@pytest.fixture
def make_apns_client(
    apns_tls: dict[str, Path], apns_server: APNsTestServer
) -> Iterator[Callable[..., APNsClient]]:
    """Build clients for ``apns_server`` (fast backoff); keyword arguments override."""
    defaults: dict[str, Any] = {
        "url": apns_server.url,
        "cert_path": apns_tls["pass_cert"],
        "key_path": apns_tls["pass_key"],
        "key_password": APNS_KEY_PASSWORD,
        "ca_file": apns_tls["server_ca"],
        "topic": DEFAULT_PASS_TYPE_ID,
        "backoff_base": 0.002,
        "backoff_max": 0.02,
        "request_timeout": 5.0,
    }
    yield from closing_maker(lambda **options: APNsClient(**{**defaults, **options}),
                             APNsClient.close)


@pytest.fixture
def apns_client(make_apns_client: Callable[..., APNsClient]) -> APNsClient:
    return make_apns_client()


@pytest.fixture
def tokens() -> Callable[[int], list[str]]:
    """``tokens(n)``: n distinct 64-hex-digit device tokens."""

    def make(n: int, prefix: int = 0) -> list[str]:
        return [f"{prefix:08x}{i:056x}" for i in range(n)]

    return make
