"""The routes the OpenAPI document does not cover never answer 5xx, whatever they are sent.

Pass downloads, the PassKit web service, the Google callback, the join and card pages, the
staff pages and static files get generated path segments (random text, and real serials,
tokens, slugs and pass type ids), headers (Authorization schemes, dates, languages,
cookies), query strings and bodies (JSON of any shape, forms, raw bytes). Every answer must
be below 500. CSRF is off in this app so that posted forms reach the form handling.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import ApiClient, create_api_key, create_card, create_program, make_app

# Raise for a deeper search: POINTPASS_FUZZ_EXAMPLES=5000 ./scripts/test.sh tests/test_route_fuzz.py
EXAMPLES = int(os.environ.get("POINTPASS_FUZZ_EXAMPLES", "300"))

ROUTES = [
    ("GET", "/wallet/apple/{0}/{1}.pkpass"), ("GET", "/card/{0}/{1}"), ("GET", "/join/{0}"),
    ("POST", "/join/{0}"), ("POST", "/wallet/google/callback"),
    ("GET", "/wallet/google/logo/{0}.png"), ("POST", "/passkit/v1/log"),
    ("GET", "/passkit/v1/passes/{0}/{1}"),
    ("POST", "/passkit/v1/devices/{0}/registrations/{1}/{2}"),
    ("DELETE", "/passkit/v1/devices/{0}/registrations/{1}/{2}"),
    ("GET", "/passkit/v1/devices/{0}/registrations/{1}"),
    ("GET", "/staff/login"), ("POST", "/staff/login"), ("POST", "/staff/logout"),
    ("POST", "/staff/redeem"), ("POST", "/staff/scan"), ("POST", "/staff/earn"),
    ("POST", "/staff/undo"), ("GET", "/staff"), ("GET", "/"),
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/static/{0}"), ("GET", "/metrics"),
]
FORM_FIELDS = ["name", "email", "phone", "language", "referral_code", "consent_terms",
               "consent_marketing", "birthday", "key", "code", "scan_id", "reward_id", "amount",
               "points", "locale", "entry_id"]


@pytest.fixture
def fuzz_app(database: Any, tmp_path: Path) -> Iterator[Any]:
    yield from make_app(database, tmp_path, WTF_CSRF_ENABLED=False,
                        STAFF_RATE_LIMIT="1000000/minute", JOIN_RATE_LIMIT="1000000/minute",
                        METRICS_TOKEN="fuzz-metrics-token")


def test_no_route_answers_a_server_error(fuzz_app: Any) -> None:
    admin = create_api_key(fuzz_app, "admin", "fuzz admin")
    staff = create_api_key(fuzz_app, "staff", "fuzz staff")
    api = ApiClient(fuzz_app.test_client(), admin)
    program = create_program(api)
    card = create_card(api, program)
    serial = card["serial_number"]
    token = card["apple_pass_url"].rsplit("/", 1)[-1].removesuffix(".pkpass")
    with fuzz_app.app_context():
        from app.wallet.apple.setup import apple_wallet

        wallet = apple_wallet()
        assert wallet is not None
        known = [serial, token, program["slug"], wallet.pass_type_id]

    text = st.text(max_size=40)
    header_text = text.filter(lambda value: "\n" not in value and "\r" not in value)
    segment = st.one_of(text.filter(lambda value: "/" not in value and value not in (".", "..")),
                        st.sampled_from(known))
    headers = st.fixed_dictionaries({}, optional={
        "Authorization": st.one_of(header_text, st.sampled_from(
            [f"ApplePass {token}", f"Bearer {staff}", "ApplePass ", "Bearer"])),
        "If-Modified-Since": st.one_of(header_text, st.just("Tue, 24 Nov 2026 10:00:00 GMT")),
        "Accept-Language": header_text,
        "Accept": st.sampled_from(["text/html", "application/json", "*/*", "image/png"]),
        "Cookie": st.one_of(header_text.map(lambda v: f"lang={v}"),
                            header_text.map(lambda v: f"session={v}")),
    })
    json_value = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(text, children, max_size=3), max_leaves=8)
    body = st.one_of(
        st.none(),
        st.tuples(st.just("json"), st.one_of(json_value, st.fixed_dictionaries({}, optional={
            "pushToken": text, "logs": st.lists(text), "code": text, "scan_id": text,
            "reward_id": st.integers(), "points": st.integers(), "signature": text,
            "intermediateSigningKey": json_value, "protocolVersion": text,
            "signedMessage": text}))),
        st.tuples(st.just("form"), st.dictionaries(st.sampled_from(FORM_FIELDS), text,
                                                   max_size=6)),
        st.tuples(st.just("raw"), st.binary(max_size=80)),
    )
    query = st.dictionaries(st.sampled_from(["lang", "passesUpdatedSince", "next"]), text,
                            max_size=2)
    client = fuzz_app.test_client()

    @given(st.sampled_from(ROUTES), st.lists(segment, min_size=3, max_size=3), headers, body,
           query)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def answers_below_500(route: tuple[str, str], parts: list[str], header: dict[str, str],
                          sent: tuple[str, Any] | None, args: dict[str, str]) -> None:
        method, template = route
        path = template.format(*[p.replace("?", "").replace("#", "") for p in parts])
        options: dict[str, Any] = {"headers": header, "query_string": args}
        if sent is not None:
            kind, value = sent
            if kind == "json":
                options["json"] = value
            else:
                options["data"] = value
                if kind == "raw":
                    options["content_type"] = "application/octet-stream"
        response = client.open(path, method=method, **options)
        assert response.status_code < 500, (method, path, response.get_data(as_text=True))

    answers_below_500()
