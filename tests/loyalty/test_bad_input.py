"""Bad input gets a 4xx RFC 9457 problem response and writes nothing."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.loyalty.models import Card, LedgerEntry, Member, Program, Reward

BIG = 10**30

# (description, role, method, path template, body, extra headers, expected status)
CASES = [
    ("no auth", None, "POST", "/api/v1/cards/{serial}/earn", {"points": 5}, {}, 401),
    ("bad key", "bogus", "POST", "/api/v1/cards/{serial}/earn", {"points": 5}, {}, 401),
    ("wrong role: staff earns", "staff", "POST", "/api/v1/cards/{serial}/earn",
     {"points": 5}, {}, 403),
    ("wrong role: pos adjusts", "pos", "POST", "/api/v1/cards/{serial}/adjust",
     {"points": 5, "reason": "x"}, {}, 403),
    ("wrong role: pos creates program", "pos", "POST", "/api/v1/programs", {"name": "X"}, {}, 403),
    ("unknown serial", "pos", "POST", "/api/v1/cards/NOPE/earn", {"points": 5}, {}, 404),
    ("unknown program", "admin", "POST", "/api/v1/programs/999/members", {"name": "A"}, {}, 404),
    ("points as string", "pos", "POST", "/api/v1/cards/{serial}/earn", {"points": "5"}, {}, 422),
    ("points as float", "pos", "POST", "/api/v1/cards/{serial}/earn", {"points": 5.5}, {}, 422),
    ("points as bool", "pos", "POST", "/api/v1/cards/{serial}/earn", {"points": True}, {}, 422),
    ("negative earn", "pos", "POST", "/api/v1/cards/{serial}/earn", {"points": -5}, {}, 422),
    ("zero earn", "pos", "POST", "/api/v1/cards/{serial}/earn", {"points": 0}, {}, 422),
    ("huge points", "pos", "POST", "/api/v1/cards/{serial}/earn", {"points": BIG}, {}, 422),
    ("huge amount", "pos", "POST", "/api/v1/cards/{serial}/earn",
     {"amount": BIG, "currency": "IDR"}, {}, 422),
    ("amount without currency", "pos", "POST", "/api/v1/cards/{serial}/earn",
     {"amount": 5000}, {}, 422),
    ("points and amount", "pos", "POST", "/api/v1/cards/{serial}/earn",
     {"points": 1, "amount": 5000, "currency": "IDR"}, {}, 422),
    ("unknown currency", "pos", "POST", "/api/v1/cards/{serial}/earn",
     {"amount": 5000, "currency": "EUR"}, {}, 422),
    ("unknown field", "pos", "POST", "/api/v1/cards/{serial}/earn",
     {"points": 5, "bonus": 1000}, {}, 422),
    ("empty body", "pos", "POST", "/api/v1/cards/{serial}/earn", {}, {}, 422),
    ("body is a list", "pos", "POST", "/api/v1/cards/{serial}/earn", [1, 2], {}, 422),
    ("idempotency key too long", "pos", "POST", "/api/v1/cards/{serial}/earn", {"points": 5},
     {"Idempotency-Key": "k" * 129}, 422),
    ("adjust without reason", "admin", "POST", "/api/v1/cards/{serial}/adjust",
     {"points": 5}, {}, 422),
    ("adjust zero", "admin", "POST", "/api/v1/cards/{serial}/adjust",
     {"points": 0, "reason": "x"}, {}, 422),
    ("adjust huge", "admin", "POST", "/api/v1/cards/{serial}/adjust",
     {"points": -BIG, "reason": "x"}, {}, 422),
    ("overdraw", "admin", "POST", "/api/v1/cards/{serial}/adjust",
     {"points": -1, "reason": "x"}, {}, 409),
    ("member without name", "pos", "POST", "/api/v1/programs/{program}/members",
     {"email": "a@b.co"}, {}, 422),
    ("member bad email", "pos", "POST", "/api/v1/programs/{program}/members",
     {"name": "A", "email": "not-an-email"}, {}, 422),
    ("member bad language", "pos", "POST", "/api/v1/programs/{program}/members",
     {"name": "A", "language": "fr"}, {}, 422),
    ("member name too long", "pos", "POST", "/api/v1/programs/{program}/members",
     {"name": "A" * 121}, {}, 422),
    ("program bad colour", "admin", "POST", "/api/v1/programs",
     {"name": "X", "background_color": "red"}, {}, 422),
    ("program nested tier bad", "admin", "POST", "/api/v1/programs",
     {"name": "X", "tiers": [{"name": "T", "threshold": -1}]}, {}, 422),
    ("reward cost zero", "marketer", "POST", "/api/v1/programs/{program}/rewards",
     {"name": "R", "points_cost": 0}, {}, 422),
    # PostgreSQL cannot store NUL characters in text: a field holding one is refused.
    ("NUL in a name", "pos", "POST", "/api/v1/programs/{program}/members",
     {"name": "Siti\x00"}, {}, 422),
    ("NUL in a nested name", "admin", "POST", "/api/v1/programs",
     {"name": "X", "tiers": [{"name": "T\x00", "threshold": 0}]}, {}, 422),
    ("NUL in a key", "pos", "POST", "/api/v1/cards/{serial}/earn", {"points": 5, "\x00": 1},
     {}, 422),
    # Invisible and direction-changing characters: U+202E made a name read backwards.
    ("RLO in a name", "pos", "POST", "/api/v1/programs/{program}/members",
     {"name": "\u202eitiS"}, {}, 422),
    ("zero-width space in an email", "pos", "POST", "/api/v1/programs/{program}/members",
     {"name": "Siti", "email": "siti@exam\u200bple.com"}, {}, 422),
    ("isolate in a program name", "admin", "POST", "/api/v1/programs",
     {"name": "\u2067Kopi\u2069"}, {}, 422),
    ("BOM in a reward name", "marketer", "POST", "/api/v1/programs/{program}/rewards",
     {"name": "\ufeffCoffee", "points_cost": 5}, {}, 422),
    ("word joiner in a design", "marketer", "PATCH", "/api/v1/programs/{program}",
     {"points_label": "Po\u2060ints"}, {}, 422),
    ("RLM in an earn reference", "pos", "POST", "/api/v1/cards/{serial}/earn",
     {"points": 5, "reference": "r\u200f"}, {}, 422),
    ("reward active as 0", "marketer", "POST", "/api/v1/programs/{program}/rewards",
     {"name": "R", "points_cost": 5, "active": 0}, {}, 422),
    ("member consent as 1", "pos", "POST", "/api/v1/programs/{program}/members",
     {"name": "A", "consent_terms": 1}, {}, 422),
    ("reward unknown field", "marketer", "POST", "/api/v1/programs/{program}/rewards",
     {"name": "R", "points_cost": 5, "price": 1}, {}, 422),
    ("tier negative threshold", "admin", "POST", "/api/v1/programs/{program}/tiers",
     {"name": "T", "threshold": -5}, {}, 422),
    ("tier threshold taken", "admin", "POST", "/api/v1/programs/{program}/tiers",
     {"name": "T", "threshold": 500}, {}, 409),
    ("tier by marketer", "marketer", "POST", "/api/v1/programs/{program}/tiers",
     {"name": "T", "threshold": 50}, {}, 403),
    ("location off the globe", "marketer", "POST", "/api/v1/programs/{program}/locations",
     {"name": "L", "latitude": 91, "longitude": 0}, {}, 422),
    ("location without name", "marketer", "POST", "/api/v1/programs/{program}/locations",
     {"latitude": 1, "longitude": 1}, {}, 422),
    ("design with nothing", "marketer", "PATCH", "/api/v1/programs/{program}", {}, {}, 422),
    ("design bad colour", "marketer", "PATCH", "/api/v1/programs/{program}",
     {"background_color": "blue"}, {}, 422),
    ("design by pos", "pos", "PATCH", "/api/v1/programs/{program}", {"name": "X"}, {}, 403),
    ("void without reason", "admin", "POST", "/api/v1/cards/{serial}/void", {}, {}, 422),
    ("void unknown card", "admin", "POST", "/api/v1/cards/NOPE/void", {"reason": "x"}, {}, 404),
    ("void by pos", "pos", "POST", "/api/v1/cards/{serial}/void", {"reason": "x"}, {}, 403),
    # Ids past the database's integer range name nothing (they were a 500 on SQLite).
    ("program id past int32", "admin", "POST", f"/api/v1/programs/{2**31}/members",
     {"name": "A"}, {}, 404),
    ("program id past int64", "admin", "PATCH", f"/api/v1/programs/{BIG}", {"name": "X"}, {}, 404),
    ("update id past int64", "marketer", "GET", f"/api/v1/updates/{BIG}", None, {}, 404),
    ("redemption id past int64", "admin", "POST", f"/api/v1/redemptions/{BIG}/reverse", {},
     {}, 404),
    ("program id zero", "admin", "POST", "/api/v1/programs/0/rewards",
     {"name": "R", "points_cost": 5}, {}, 404),
]


def _counts(app: Any) -> dict[str, int]:
    with app.app_context():
        counts = {m.__tablename__: db.session.scalar(select(func.count()).select_from(m))
                  for m in (Program, Reward, Member, Card, LedgerEntry)}
        counts["balance"] = db.session.scalar(select(func.coalesce(func.sum(Card.balance), 0)))
        db.session.rollback()
        return counts


@pytest.mark.parametrize(("role", "method", "path", "body", "headers", "status"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_problem_and_writes_nothing(
    app: Any, api: Any, keys: dict[str, str], program: dict[str, Any], card: dict[str, Any],
    role: str | None, method: str, path: str, body: Any, headers: dict[str, str], status: int,
) -> None:
    before = _counts(app)
    key = keys.get(role, role) if role else None
    url = path.format(serial=card["serial_number"], program=program["id"])
    response = api.as_(key).request(method, url, json=body, headers=headers)

    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    problem = response.json
    assert problem["status"] == status
    assert problem["title"]
    assert problem["type"]
    assert problem["instance"] == url
    if status == 422 and problem["type"].endswith(":validation"):
        assert problem["errors"], "validation problems name the fields at fault"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert _counts(app) == before


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [("{not json", "application/json", 400), ('{"points": ', "application/json", 400),
     (b"\xef\x48\xef", "application/json", 400), ("x" * 100_000, "application/json", 413)],
    ids=["malformed JSON", "truncated JSON", "not UTF-8", "oversized body"],
)
def test_unparseable_bodies(app: Any, api: Any, card: dict[str, Any], data: str | bytes,
                            content_type: str, status: int) -> None:
    before = _counts(app)
    response = api.client.post(
        f"/api/v1/cards/{card['serial_number']}/adjust", data=data,
        headers={"Authorization": f"Bearer {api.key}", "Content-Type": content_type},
    )
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    assert response.json["status"] == status
    if status == 400:  # said plainly, not Werkzeug's "the browser (or proxy) sent ..."
        assert response.json["type"] == "urn:pointpass:problem:malformed-json"
        assert response.json["detail"].startswith("The request body is not valid JSON")
    assert _counts(app) == before


def test_a_whole_number_written_with_a_fraction_is_that_number(
        api: Any, keys: dict[str, str], card: dict[str, Any]) -> None:
    """JSON has one number type: 5.0 is the integer 5 (as JSON Schema's ``integer``)."""
    response = api.as_(keys["pos"]).post(f"/api/v1/cards/{card['serial_number']}/earn",
                                         json={"points": 5.0})
    assert response.status_code == 201, response.json
    assert response.json["entry"]["points"] == 5


def test_unknown_route_and_method_are_problems(app: Any, api: Any) -> None:
    missing = api.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.content_type == "application/problem+json"
    wrong_method = api.request("DELETE", "/api/v1/programs")
    assert wrong_method.status_code == 405
    assert wrong_method.json["status"] == 405


@pytest.mark.parametrize(("method", "url", "form", "where"), [
    ("GET", "/api/v1/cards/AB%00CD", None, "URL path"),
    ("POST", "/api/v1/cards/AB%00CD/earn", None, "URL path"),
    ("GET", "/api/v1/programs?cursor=%00", None, "query string"),
    ("GET", "/passkit/v1/devices/d%00/registrations/pass.dev.pointpass.loyalty", None,
     "URL path"),
    ("POST", "/join/kopi-test", {"name": "Siti\x00"}, "form"),
], ids=["api path", "api path, POST", "query", "PassKit path", "join form"])
def test_nul_characters_outside_json_are_a_400(app: Any, api: Any, program: dict[str, Any],
                                               method: str, url: str,
                                               form: dict[str, str] | None, where: str) -> None:
    """PostgreSQL refuses NUL even in a lookup: on PostgreSQL these were 500s."""
    before = _counts(app)
    response = api.client.open(url, method=method, data=form,
                               headers={"Authorization": f"Bearer {api.key}"})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == "urn:pointpass:problem:nul-character"
    assert where in response.json["detail"]
    assert _counts(app) == before


def test_an_invisible_character_is_named_with_its_field(api: Any,
                                                        program: dict[str, Any]) -> None:
    tiers = [{"name": "Gold", "threshold": 0}, {"name": "T\u202e", "threshold": 5}]
    response = api.post("/api/v1/programs", json={"name": "Kopi\u200b", "tiers": tiers})
    assert response.status_code == 422
    assert sorted(response.json["errors"], key=lambda e: e["field"]) == [
        {"location": "json", "field": "name", "message":
         "Must not contain invisible or direction-changing characters (U+200B found)."},
        {"location": "json", "field": "tiers.1.name", "message":
         "Must not contain invisible or direction-changing characters (U+202E found)."}]


def test_a_nul_in_json_names_the_field(api: Any, program: dict[str, Any]) -> None:
    tiers = [{"name": "Gold", "threshold": 0}, {"name": "T\x00", "threshold": 5}]
    response = api.post("/api/v1/programs", json={"name": "X", "tiers": tiers})
    assert response.status_code == 422
    assert response.json["errors"] == [{"location": "json", "field": "tiers.1.name",
                                        "message": "Must not contain NUL (U+0000) characters."}]


# Bodies for operations whose rules span fields; the OpenAPI document states those rules
# (InputSchema.openapi_rules) and must agree with what the service refuses.
CROSS_FIELD = [
    ("EarnIn", "POST", "/api/v1/cards/{serial}/earn", "pos", [
        {"points": 5}, {"amount": 5000, "currency": "IDR"}, {"points": 5, "amount": 5000,
                                                           "currency": "IDR"},
        {"amount": 5000}, {"currency": "IDR"}, {"points": 5, "currency": "IDR"}, {},
        {"points": 5, "reference": "till 4\u202e"}]),
    ("AdjustIn", "POST", "/api/v1/cards/{serial}/adjust", "admin", [
        {"points": 5, "reason": "x"}, {"points": 0, "reason": "x"}, {"points": -1, "reason": "x"}
    ]),
    ("RedeemIn", "POST", "/api/v1/redemptions", "staff", [
        {"code": "PP1:X:0:AAAAAAAAAAAAAAAAAAAAAAAA", "points": 1},
        {"scan_id": "x", "code": "y", "points": 1}, {"code": "y"}, {"points": 1},
        {"scan_id": "x", "reward_id": 1, "points": 1}]),
    ("DesignIn", "PATCH", "/api/v1/programs/{program}", "admin", [
        {}, {"name": "Kopi"}, {"texts": {"th": {"terms": "x"}}}, {"texts": {"th": None}},
        {"texts": {"fr": {"terms": "x"}}}, {"texts": {"th": {}}},
        {"texts": {"th": {"description": "a\u200bb"}}}]),
    # Text fields state their pattern: no NUL, no invisible or direction-changing characters.
    ("MemberIn", "POST", "/api/v1/programs/{program}/members", "pos", [
        {"name": "Siti"}, {"name": "\u202eitiS"}, {"name": "Si\u200bti"}, {"name": "Si\x00ti"},
        {"name": "ศิริ"}, {"name": "Siti", "email": "siti@exam\u2060ple.com"},
        {"name": "Siti", "referral_code": "AB\ufeffCD"}]),
    ("VoidIn", "POST", "/api/v1/cards/{serial}/void", "admin", [
        {"reason": "lost\u2066"}, {"reason": "lost"}]),
]


@pytest.mark.parametrize(("component", "method", "path", "role", "bodies"), CROSS_FIELD,
                         ids=[case[0] for case in CROSS_FIELD])
def test_the_openapi_document_states_the_rules_that_span_fields(
        app: Any, api: Any, keys: dict[str, str], program: dict[str, Any],
        card: dict[str, Any], component: str, method: str, path: str, role: str,
        bodies: list[dict[str, Any]]) -> None:
    import jsonschema_rs

    # The component with the others beside it, for the schemas it refers to.
    components = api.get("/api/openapi.json").json["components"]
    schema = {"$ref": f"#/components/schemas/{component}", "components": components}
    validator = jsonschema_rs.Draft202012Validator(schema)
    url = path.format(serial=card["serial_number"], program=program["id"])
    for body in bodies:
        response = api.as_(keys[role]).request(method, url, json=body)
        refused = (response.status_code == 422
                   and response.json["type"] == "urn:pointpass:problem:validation")
        assert validator.is_valid(body) == (not refused), (body, response.json)


# Hostile JSON (issue 12, defect 4): each was a 500 with a traceback, or worse, was read.
DEEP = "[" * 5000 + "]" * 5000  # 10 KB
HOSTILE_JSON = {
    "nested 5,000 deep": ('{{"{field}": {deep}}}', "nested more than 64 levels deep"),
    "nested 65 deep": ('{{"{field}": {deep65}}}', "nested more than 64 levels deep"),
    "4,301-digit integer": ('{{"{field}": {digits}}}', "has more than 4300 digits"),
    "duplicate key": ('{{"{field}": {value}, "{field}": {value}}}',
                      "appears more than once in an object"),
    "NaN": ('{{"{field}": NaN}}', "NaN is not a JSON value"),
    # A 500 in the database driver, which cannot encode it.
    "unpaired surrogate": ('{{"{field}": ["\\ud800"]}}', "holds an unpaired surrogate"),
}
# (role, path, the field a hostile body fills, a valid value for it)
JSON_ENDPOINTS = {
    "earn": ("pos", "/api/v1/cards/{serial}/earn", "points", "1"),
    "scan": ("staff", "/api/v1/scans", "code", '"PP1:X:0:AAAAAAAAAAAAAAAAAAAAAAAA"'),
    "PassKit log (no key)": (None, "/passkit/v1/log", "logs", '["x"]'),
}


def _hostile(kind: str, field: str, value: str) -> str:
    template = HOSTILE_JSON[kind][0]
    return template.format(field=field, value=value, deep=DEEP,
                           deep65="[" * 64 + "]" * 64, digits="1" * 4301)


def _no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize("kind", list(HOSTILE_JSON))
@pytest.mark.parametrize("endpoint", list(JSON_ENDPOINTS))
def test_hostile_json_is_a_400_that_says_why(
        app: Any, api: Any, keys: dict[str, str], card: dict[str, Any],
        caplog: pytest.LogCaptureFixture, endpoint: str, kind: str) -> None:
    role, path, field, value = JSON_ENDPOINTS[endpoint]
    url = path.format(serial=card["serial_number"])
    before = _counts(app)
    headers = {"Authorization": f"Bearer {keys[role]}"} if role else {}
    response = api.client.post(url, data=_hostile(kind, field, value), headers=headers,
                               content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == "urn:pointpass:problem:malformed-json"
    assert response.json["detail"].startswith("The request body is not valid JSON (")
    assert HOSTILE_JSON[kind][1] in response.json["detail"]
    _no_error_logged(caplog)
    assert _counts(app) == before


def test_a_duplicate_key_credits_nothing(app: Any, api: Any, keys: dict[str, str],
                                         card: dict[str, Any]) -> None:
    """``{"points": 1, "points": 1000000}`` was credited 1,000,000 ("last one wins")."""
    response = api.client.post(
        f"/api/v1/cards/{card['serial_number']}/earn", data='{"points":1,"points":1000000}',
        headers={"Authorization": f"Bearer {keys['pos']}"}, content_type="application/json")
    assert response.status_code == 400
    assert response.json["detail"] == ('The request body is not valid JSON (the key "points" '
                                       'appears more than once in an object).')
    assert api.get(f"/api/v1/cards/{card['serial_number']}").json["balance"] == 0


def test_json_nested_64_deep_is_still_read(api: Any) -> None:
    """The depth bound is 64 levels: 64 are read (and refused by the schema, not the parser)."""
    body = '{"logs": ' + "[" * 63 + "]" * 63 + "}"
    response = api.client.post("/passkit/v1/log", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["type"] == "urn:pointpass:problem:bad-logs"


def test_hostile_json_to_the_staff_page_is_a_400(app: Any, keys: dict[str, str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from tests.redemption.test_staff_pages import Staff

    staff = Staff(app.test_client(), keys["staff"])
    for kind in HOSTILE_JSON:
        response = staff.client.post("/staff/scan", data=_hostile(kind, "code", '"x"'),
                                     content_type="application/json",
                                     headers={"X-CSRFToken": staff.token})
        assert response.status_code == 400, (kind, response.get_data(as_text=True))
        assert response.json["type"] == "urn:pointpass:problem:malformed-json"
        assert HOSTILE_JSON[kind][1] in response.json["detail"]
    _no_error_logged(caplog)


def test_the_openapi_document_states_the_code_and_serial_formats(
        app: Any, api: Any, keys: dict[str, str], card: dict[str, Any]) -> None:
    """Text outside the documented code format is refused (422) before the database is asked;
    a genuine code in any of the forms the format allows is read. A serial outside its
    format names no card."""
    import jsonschema_rs

    from app.loyalty.codes import redemption_code
    from app.loyalty.ledger import get_card

    document = api.get("/api/openapi.json").json
    scan_in = jsonschema_rs.Draft202012Validator(document["components"]["schemas"]["ScanIn"])
    with app.app_context():
        genuine = redemption_code(get_card(card["serial_number"]))
    forged = genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB")
    staff = api.as_(keys["staff"])
    for code in [genuine, genuine.lower(), f" {genuine}\n", forged, "hello", "PP1:X:0:AAA",
                 genuine + "\u202e", "\u200b" + genuine, "PPT:" + card["serial_number"] + ":1234"]:
        response = staff.post("/api/v1/scans", json={"code": code})
        if code.strip().upper() == genuine:
            assert scan_in.is_valid({"code": code}) and response.status_code == 200, code
        else:  # refused: as not a code (format) or not genuine (signature)
            assert response.status_code == 422, (code, response.json)
            assert response.json["type"].endswith((":invalid-code", ":validation"))
            if not scan_in.is_valid({"code": code}):
                continue
            assert code == forged

    serial = document["paths"]["/api/v1/cards/{serial}"]["get"]["parameters"]
    pattern = next(p for p in serial if p["name"] == "serial")["schema"]["pattern"]
    assert re.fullmatch(pattern, card["serial_number"])
    assert api.get(f"/api/v1/cards/{card['serial_number']}").status_code == 200
    lower = card["serial_number"].lower()
    assert not re.fullmatch(pattern, lower)
    assert api.get(f"/api/v1/cards/{lower}").status_code == 404
