"""Program scopes of API keys: a key limited to program A (``pointpass create-key --program``)
finds none of program B's objects. Every API operation on B's objects answers 404 exactly as
for an object that does not exist and changes nothing; lists show only A's; operations on the
whole service (making programs, keys, the outbox) are refused (403 ``needs-every-program``);
the same calls work with a key that reaches every program, and with the limited key on A.

The operations come from the OpenAPI document: a new operation with a path parameter is
called by :func:`test_another_programs_objects_are_not_found` as soon as it exists, and one
whose parameter or body this file does not know fails the test until it is classified here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.accounts import service as accounts
from app.audit import AuditEvent
from app.auth import keys as api_keys
from app.cli.cli import cli
from app.extensions import db
from app.loyalty.models import Reward
from app.webhooks.models import WebhookDelivery, WebhookEvent
from passes.barcode import make_code
from tests.factories import ApiClient, card_code, create_card, create_program, settle
from tests.images import image_bytes
from tests.redemption.test_staff_pages import Staff

ROLES = ("admin", "marketer", "staff", "pos")
LOGO = image_bytes((400, 200))

#: Values for path parameters that name nothing at all: what "does not exist" answers.
MISSING = {"program_id": 999_999, "serial": "NOSUCHCARD0", "rule_id": 999_998,
           "update_id": 999_997, "redemption_id": 999_996, "device_id": 999_995,
           "member_id": 999_994, "location_id": 999_993, "kind": "logo",
           "campaign_id": 999_992, "reward_id": 999_991, "tier_id": 999_990,
           "challenge_id": 999_989, "webhook_id": 999_988, "delivery_id": 999_987,
           "loyalty_member_id": 999_986}

#: Operations on the whole service rather than on one program's objects.
WHOLE_SERVICE = {
    ("POST", "/api/v1/programs"),
    ("GET", "/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{key_id}"),
    ("GET", "/api/v1/admin/outbox"),
    ("POST", "/api/v1/admin/outbox/retry"),
    ("GET", "/api/v1/accounts"),
    ("POST", "/api/v1/accounts"),
    ("PATCH", "/api/v1/accounts/{account_id}"),
    ("POST", "/api/v1/accounts/{account_id}/reset-link"),
    ("POST", "/api/v1/accounts/{account_id}/invitation"),
    ("POST", "/api/v1/accounts/{account_id}/sign-out-everywhere"),
}
#: Lists, filtered to the caller's programs (checked by test_lists_show_only_reachable_ones).
LISTS = {("GET", "/api/v1/programs"), ("GET", "/api/v1/devices"), ("GET", "/api/v1/staff"),
         ("GET", "/api/v1/audit"), ("GET", "/api/v1/webhooks")}
#: Operations without a path parameter whose body names another program's object, and what
#: an unknown one answers there.
BY_BODY = {("POST", "/api/v1/scans"): 404, ("POST", "/api/v1/redemptions"): 404,
           ("POST", "/api/v1/devices"): 422, ("POST", "/api/v1/staff"): 422,
           ("POST", "/api/v1/webhooks"): 422}
#: The object such a body names (by the name of its field): a location unless said here.
BY_BODY_NAMES = {("POST", "/api/v1/webhooks"): "program_id"}

# A public address (no name to resolve), disabled: the scope tests send nothing anywhere.
WEBHOOK = {"url": "https://93.184.215.14/hook", "events": ["card.voided"], "enabled": False}
CAMPAIGN = {"name": "Rainy season", "messages": {"en": {"lock_screen": "Hot drinks 2x"}},
            "holdout_percent": 10}

Request = dict[str, Any]  # keyword arguments of ApiClient.request: json, data, headers


def _json(body: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Request]:
    return lambda objects: {"json": body(objects)}


def _offered(objects: dict[str, Any]) -> list[int]:
    """The ids of the program's unretired rewards now (a reorder must name them all)."""
    with objects["app"].app_context():
        ids = db.session.scalars(select(Reward.id).where(
            Reward.program_id == objects["program_id"], Reward.retired_at.is_(None))).all()
        db.session.rollback()
    return list(ids)


def _keyed(body: dict[str, Any]) -> Callable[[dict[str, Any]], Request]:
    return lambda objects: {"json": body, "headers": {"Idempotency-Key": uuid.uuid4().hex}}


#: A valid request body of each operation that takes one (so that a refusal is the scope's,
#: not the body's), from the objects of the program it is sent to.
BODIES: dict[tuple[str, str], Callable[[dict[str, Any]], Request]] = {
    ("PATCH", "/api/v1/programs/{program_id}"): _json(lambda o: {"terms": "New terms"}),
    ("POST", "/api/v1/programs/{program_id}/rewards"):
        _json(lambda o: {"name": "Cake", "points_cost": 300}),
    ("POST", "/api/v1/programs/{program_id}/tiers"):
        _json(lambda o: {"name": "Gold", "threshold": 5000}),
    ("POST", "/api/v1/programs/{program_id}/locations"):
        _json(lambda o: {"name": "Siam", "latitude": 13.74, "longitude": 100.53}),
    ("POST", "/api/v1/programs/{program_id}/members"): _json(lambda o: {"name": "Budi"}),
    ("POST", "/api/v1/cards/{serial}/earn"): _keyed({"points": 5}),
    ("POST", "/api/v1/cards/{serial}/void"): _json(lambda o: {"reason": "lost"}),
    ("POST", "/api/v1/cards/{serial}/adjust"): _keyed({"points": 5, "reason": "goodwill"}),
    ("POST", "/api/v1/cards/{serial}/refunds"):
        _keyed({"reference": "receipt-1", "amount": 100_000_000, "currency": "IDR"}),
    ("POST", "/api/v1/programs/{program_id}/rules"):
        _json(lambda o: {"kind": "bonus", "name": "Extra", "points": 3}),
    ("PATCH", "/api/v1/programs/{program_id}/rules/{rule_id}"):
        _json(lambda o: {"name": "Renamed"}),
    ("POST", "/api/v1/programs/{program_id}/rules/preview"):
        _json(lambda o: {"amount": 100_000_000, "currency": "IDR"}),
    ("PUT", "/api/v1/programs/{program_id}/images/{kind}"):
        lambda o: {"data": LOGO, "headers": {"Content-Type": "image/png"}},
    ("POST", "/api/v1/programs/{program_id}/updates"): _json(lambda o: {"message": "Hello"}),
    ("POST", "/api/v1/redemptions/{redemption_id}/reverse"):
        _json(lambda o: {"reason": "wrong cake"}),
    ("PATCH", "/api/v1/staff/{member_id}"): _json(lambda o: {"name": "Renamed"}),
    ("POST", "/api/v1/programs/{program_id}/segments/count"): _json(lambda o: {}),
    ("PATCH", "/api/v1/programs/{program_id}/locations/{location_id}"):
        _json(lambda o: {"name": "Renamed"}),
    ("POST", "/api/v1/programs/{program_id}/campaigns"): _json(lambda o: CAMPAIGN),
    ("PATCH", "/api/v1/programs/{program_id}/campaigns/{campaign_id}"):
        _json(lambda o: {"name": "Renamed"}),
    ("PATCH", "/api/v1/programs/{program_id}/rewards/{reward_id}"):
        _json(lambda o: {"name": "Renamed"}),
    ("PUT", "/api/v1/programs/{program_id}/rewards/order"):
        _json(lambda o: {"reward_ids": list(reversed(_offered(o)))}),
    ("PATCH", "/api/v1/programs/{program_id}/tiers/{tier_id}"):
        _json(lambda o: {"name": "Renamed"}),
    ("POST", "/api/v1/programs/{program_id}/design/preview"):
        _json(lambda o: {"background_color": "#102030"}),
    ("POST", "/api/v1/members/{loyalty_member_id}/consents"):
        _json(lambda o: {"kind": "marketing", "granted": False}),
    ("POST", "/api/v1/programs/{program_id}/challenges"):
        _json(lambda o: {"kind": "visits", "name": "5 visits", "target": 5}),
    ("PATCH", "/api/v1/programs/{program_id}/challenges/{challenge_id}"):
        _json(lambda o: {"name": "Renamed", "target": 6}),
    ("POST", "/api/v1/scans"): _json(lambda o: {"code": o["code"]}),
    ("POST", "/api/v1/redemptions"):
        _json(lambda o: {"code": o["code"], "reward_id": o["reward_id"]}),
    ("POST", "/api/v1/devices"): _json(lambda o: {"location_id": o["location_id"]}),
    ("POST", "/api/v1/staff"):
        _json(lambda o: {"name": "Ana", "pin": "2468", "location_ids": [o["location_id"]]}),
    ("POST", "/api/v1/webhooks"): _json(lambda o: {"program_id": o["program_id"], **WEBHOOK}),
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): _json(lambda o: {"description": "Renamed"}),
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # as the OpenAPI document has it: /api/v1/cards/{serial}
    params: tuple[str, ...]
    has_body: bool

    def url(self, objects: dict[str, Any]) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: str(objects[m.group(1)]), self.path)

    def call(self, api: ApiClient, objects: dict[str, Any]) -> Any:
        request = BODIES[self.method, self.path](objects) if self.has_body else {}
        return api.request(self.method, self.url(objects), **request)

    @property
    def last(self) -> bool:
        """Whether the operation takes something away that others need (run it last)."""
        return self.method == "DELETE" or self.path.endswith(("/void", "/reverse"))


def operations(api: ApiClient) -> list[Operation]:
    """The API operations that need a key, from the OpenAPI document."""
    spec = api.get("/api/openapi.json").json
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            if not operation.get("security"):
                continue  # public: no key, no scope
            params = tuple(p["name"] for p in operation.get("parameters", [])
                           if p["in"] == "path")
            found.append(Operation(method.upper(), path, params, "requestBody" in operation))
    return found


@dataclass
class World:
    app: Flask
    unlimited: dict[str, ApiClient]  # role: a client with a key that reaches every program
    scoped: dict[str, ApiClient]  # role: a client with a key limited to program A
    a: dict[str, Any]  # program A's objects, by path parameter name (and a few more)
    b: dict[str, Any]  # program B's


def _furnish(app: Flask, api: ApiClient, slug: str) -> dict[str, Any]:
    """A program with a card that earned and redeemed, a location, a rule, a logo, a pass
    update, a till device and a staff member: one object of each kind the API names."""
    program = create_program(api, name=f"Kopi {slug}", slug=slug)
    pid = program["id"]
    card = create_card(api, program)
    serial = card["serial_number"]
    member_id = api.get(f"/api/v1/programs/{pid}/members").json["members"][0]["id"]
    assert api.post(f"/api/v1/cards/{serial}/earn", json={
        "amount": 500_000_000, "currency": "IDR", "reference": "receipt-1"}).status_code == 201
    location = api.post(f"/api/v1/programs/{pid}/locations", json={
        "name": "Sukhumvit", "latitude": 13.73, "longitude": 100.56})
    rule = api.post(f"/api/v1/programs/{pid}/rules", json={
        "kind": "bonus", "name": "Weekend", "points": 5, "conditions": {"days_of_week": [6]}})
    logo = api.request("PUT", f"/api/v1/programs/{pid}/images/logo", data=LOGO,
                       headers={"Content-Type": "image/png"})
    update = api.post(f"/api/v1/programs/{pid}/updates", json={"message": "Welcome"})
    reward_id = program["rewards"][0]["id"]
    redemption = api.post("/api/v1/redemptions", json={
        "code": card_code(app, serial), "reward_id": reward_id})
    location_id = location.json["id"]
    device = api.post("/api/v1/devices", json={"location_id": location_id})
    staff = api.post("/api/v1/staff", json={"name": "Nok", "pin": "1357",
                                            "location_ids": [location_id]})
    tier = api.post(f"/api/v1/programs/{pid}/tiers", json={"name": "Gold", "threshold": 900})
    campaign = api.post(f"/api/v1/programs/{pid}/campaigns", json=CAMPAIGN)
    challenge = api.post(f"/api/v1/programs/{pid}/challenges", json={
        "kind": "locations", "name": "3 shops", "target": 3, "bonus_points": 20})
    webhook = api.post("/api/v1/webhooks", json={"program_id": pid, **WEBHOOK})
    for made in (location, rule, logo, update, redemption, device, staff, tier, campaign,
                 challenge, webhook):
        assert made.status_code in (200, 201, 202), made.json
    with app.app_context():  # a delivery of the (disabled) endpoint, to replay
        event = WebhookEvent(message_id=f"msg_{slug}", program_id=pid, type="card.voided",
                             body="{}")
        db.session.add(event)
        db.session.flush()
        delivery = WebhookDelivery(event_id=event.id, endpoint_id=webhook.json["id"],
                                   status="failed")
        db.session.add(delivery)
        db.session.commit()
        delivery_id = delivery.id
    return {"program_id": pid, "serial": serial, "rule_id": rule.json["id"], "kind": "logo",
            "update_id": update.json["id"], "redemption_id": redemption.json["id"],
            "device_id": device.json["id"], "member_id": staff.json["id"],
            "location_id": location_id, "reward_id": reward_id,
            "app": app, "tier_id": tier.json["id"],
            "campaign_id": campaign.json["id"], "challenge_id": challenge.json["id"],
            "webhook_id": webhook.json["id"], "delivery_id": delivery_id,
            "loyalty_member_id": member_id, "code": card_code(app, serial)}


@pytest.fixture
def world(app: Flask, api: ApiClient, keys: dict[str, str]) -> World:
    a = _furnish(app, api, "kopi-a")
    b = _furnish(app, api, "kopi-b")
    with app.app_context():
        scoped = {role: api_keys.create(f"A's {role}", role, program_ids=[a["program_id"]])[1]
                  for role in ROLES}
    return World(app, {role: api.as_(keys[role]) for role in ROLES},
                 {role: api.as_(scoped[role]) for role in ROLES}, a, b)


def database_state(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but API keys, whose last use a request may note)."""
    with app.app_context():
        state = {table.name: sorted(tuple(map(repr, row)) for row in
                                     db.session.execute(select(table)).all())
                 for table in db.metadata.sorted_tables if table.name != "api_keys"}
        db.session.rollback()
    return state


def missing_code(app: Flask) -> str:
    """A well-signed redemption code of a card that does not exist."""
    return make_code(app.config["REDEMPTION_CODE_KEY"], MISSING["serial"], 1)


def _same_problem(found: Any, missing: Any, values: dict[str, Any],
                  absent: dict[str, Any]) -> None:
    """``found`` (the answer about B's object) says exactly what ``missing`` (about no object)
    says, but for the object's own id in the text."""
    assert found.status_code == missing.status_code
    assert found.content_type == missing.content_type == "application/problem+json"
    assert set(found.json) == set(missing.json)

    def plain(body: dict[str, Any], names: dict[str, Any]) -> dict[str, Any]:
        text = body.get("detail", "")
        for value in names.values():
            text = re.sub(rf"\b{re.escape(str(value))}\b", "X", text)
        return {**body, "detail": text, "instance": None, "request_id": None}

    assert plain(found.json, values) == plain(missing.json, absent)


def test_every_operation_is_classified(api: ApiClient) -> None:
    """A new operation fails here until this file knows its path parameters and its body (and
    so calls it in the tests below)."""
    for op in operations(api):
        unknown = [p for p in op.params if p not in MISSING and (op.method, op.path)
                   not in WHOLE_SERVICE]
        assert not unknown, f"{op.method} {op.path}: classify {unknown} in {__file__}"
        if not op.params:
            assert (op.method, op.path) in WHOLE_SERVICE | LISTS | set(BY_BODY), (
                f"{op.method} {op.path}: which program's objects does it reach? Classify it "
                f"in {__file__}")
        if op.has_body and (op.method, op.path) not in WHOLE_SERVICE:
            assert (op.method, op.path) in BODIES, f"{op.method} {op.path}: add a body"


def test_another_programs_objects_are_not_found(world: World) -> None:
    ops = [op for op in operations(world.scoped["admin"])
           if (op.method, op.path) not in WHOLE_SERVICE | LISTS]
    assert len(ops) >= 25
    settle(world.app)  # the set-up's background jobs may still be writing
    before = database_state(world.app)
    for op in ops:
        reached = []
        for role in ROLES:
            answer = op.call(world.scoped[role], world.b)
            if answer.status_code == 403:  # the role may not do it at all
                assert not answer.json["type"].endswith(":needs-every-program")
                continue
            reached.append(role)
            by_body = (op.method, op.path) in BY_BODY
            expected = BY_BODY.get((op.method, op.path), 404)
            assert answer.status_code == expected, (role, op, answer.json)
            if by_body and expected == 404:  # a card's code: one of a card that is not
                absent = {"code": missing_code(world.app)}
                nothing = op.call(world.scoped[role], {**world.b, **absent})
                _same_problem(answer, nothing, {"serial": world.b["serial"]},
                              {"serial": MISSING["serial"]})
                continue
            named = ((BY_BODY_NAMES.get((op.method, op.path), "location_id"),) if by_body
                     else tuple(p for p in op.params if p != "kind"))
            absent = {name: MISSING[name] for name in named}
            nothing = op.call(world.scoped[role], {**world.b, **absent})
            _same_problem(answer, nothing, {name: world.b[name] for name in named}, absent)
        assert reached, f"no role may call {op.method} {op.path}?"
    assert database_state(world.app) == before


def test_the_same_calls_work_on_reachable_programs(world: World) -> None:
    """The limited key on A's objects, and a key of every program on B's, get past the scope:
    a success, or a refusal of the domain's own (a voided card, a spent code)."""
    ops = sorted((op for op in operations(world.scoped["admin"])
                  if (op.method, op.path) not in WHOLE_SERVICE | LISTS),
                 key=lambda op: op.last)
    for clients, objects in ((world.scoped, world.a), (world.unlimited, world.b)):
        for op in ops:
            answers = [op.call(clients[role], objects) for role in ROLES]
            allowed = [a for a in answers if a.status_code != 403]
            assert allowed, op
            for answer in allowed:
                assert answer.status_code < 300 or answer.status_code in (409, 410), (
                    op, answer.status_code, answer.get_data(as_text=True)[:300])


def test_lists_show_only_reachable_ones(world: World) -> None:
    scoped, unlimited = world.scoped["admin"], world.unlimited["admin"]
    a, b = world.a["program_id"], world.b["program_id"]
    assert [p["id"] for p in scoped.get("/api/v1/programs").json["programs"]] == [a]
    assert [p["id"] for p in unlimited.get("/api/v1/programs").json["programs"]] == [a, b]
    for role in ("marketer", "staff", "pos"):
        listed = world.scoped[role].get("/api/v1/programs").json["programs"]
        assert [p["id"] for p in listed] == [a]
    assert [d["id"] for d in scoped.get("/api/v1/devices").json["devices"]] == [
        world.a["device_id"]]
    assert len(unlimited.get("/api/v1/devices").json["devices"]) == 2
    assert [m["id"] for m in scoped.get("/api/v1/staff").json["staff"]] == [
        world.a["member_id"]]
    assert len(unlimited.get("/api/v1/staff").json["staff"]) == 2
    # The audit trail: only A's events (those of no program, such as keys, are nobody's).
    seen = {e["program_id"] for e in scoped.get("/api/v1/audit?limit=200").json["events"]}
    assert seen == {a}
    assert {e["program_id"] for e in unlimited.get("/api/v1/audit?limit=200").json["events"]} \
        >= {a, b, None}
    assert scoped.get(f"/api/v1/audit?program_id={b}").status_code == 404
    assert [w["program_id"] for w in scoped.get("/api/v1/webhooks").json["webhooks"]] == [a]
    assert [w["program_id"] for w in unlimited.get("/api/v1/webhooks").json["webhooks"]] == [
        a, b]
    assert scoped.get(f"/api/v1/webhooks?program_id={b}").json["webhooks"] == []


def test_a_staff_member_of_both_programs_is_out_of_a_limited_keys_reach(world: World) -> None:
    """Who also works for B is B's too: changing their PIN or deactivating them would change
    B's till, and their locations would tell B's ids."""
    unlimited, scoped = world.unlimited["admin"], world.scoped["admin"]
    both = unlimited.post("/api/v1/staff", json={
        "name": "Both", "pin": "9753", "location_ids": [world.a["location_id"],
                                                        world.b["location_id"]]})
    assert both.status_code == 201
    member = both.json["id"]
    assert member not in [m["id"] for m in scoped.get("/api/v1/staff").json["staff"]]
    answer = scoped.request("PATCH", f"/api/v1/staff/{member}", json={"active": False})
    assert answer.status_code == 404
    assert unlimited.request("PATCH", f"/api/v1/staff/{member}",
                             json={"active": False}).status_code == 200


def test_whole_service_operations_need_a_key_of_every_program(world: World) -> None:
    scoped, unlimited = world.scoped["admin"], world.unlimited["admin"]
    program = {"name": "Kopi C", "slug": "kopi-c", "currency": "IDR", "earn_points": 1,
               "earn_amount": 1000}
    key_id = api_key_id(world.app, "A's pos")
    with world.app.app_context():
        account_id = accounts.create("m@example.com", "marketer", password="long enough pass",
                                     program_ids=[world.a["program_id"]]).id
    templates: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/programs", {"json": program}),
        ("GET", "/api/v1/keys", {}),
        ("DELETE", "/api/v1/keys/{key_id}", {}),
        ("GET", "/api/v1/admin/outbox", {}),
        ("POST", "/api/v1/admin/outbox/retry", {"json": {}}),
        ("GET", "/api/v1/accounts", {}),
        ("POST", "/api/v1/accounts", {"json": {"email": "new@example.com", "role": "marketer",
                                                "program_ids": [world.a["program_id"]]}}),
        ("PATCH", "/api/v1/accounts/{account_id}", {"json": {"name": "Ana"}}),
        ("POST", "/api/v1/accounts/{account_id}/reset-link", {}),
        ("POST", "/api/v1/accounts/{account_id}/invitation", {}),
        ("POST", "/api/v1/accounts/{account_id}/sign-out-everywhere", {}),
    ]
    assert {(method, path) for method, path, _ in templates} == WHOLE_SERVICE
    calls = [(method, path.format(key_id=key_id, account_id=account_id), request)
             for method, path, request in templates]
    settle(world.app)  # the set-up's background jobs may still be writing
    before = database_state(world.app)
    for method, path, request in calls:
        refused = scoped.request(method, path, **request)
        assert refused.status_code == 403, (path, refused.json)
        assert refused.json["type"].endswith(":needs-every-program")
        assert refused.content_type == "application/problem+json"
    assert database_state(world.app) == before
    for method, path, request in calls:
        assert unlimited.request(method, path, **request).status_code in (200, 201, 204, 409), (
            method, path)


def api_key_id(app: Flask, name: str) -> int:
    with app.app_context():
        found = next(key.id for key in api_keys.all_keys() if key.name == name)
        db.session.rollback()
        return found


def test_keys_show_their_programs_and_their_audit_trail(world: World) -> None:
    listed = {k["name"]: k for k in world.unlimited["admin"].get("/api/v1/keys").json["keys"]}
    assert listed["A's marketer"]["program_ids"] == [world.a["program_id"]]
    assert listed["test marketer"]["program_ids"] is None
    key_id = listed["A's marketer"]["id"]
    assert world.unlimited["admin"].request(
        "DELETE", f"/api/v1/keys/{key_id}").status_code == 204
    assert world.scoped["marketer"].get("/api/v1/programs").status_code == 401
    events = audit_events(world.app, f"api_key:{key_id}")
    assert [e.action for e in events] == ["key.create", "key.revoke"]
    assert events[0].details == {"name": "A's marketer", "role": "marketer",
                                 "prefix": listed["A's marketer"]["prefix"],
                                 "program_ids": [world.a["program_id"]]}
    admin_id = listed["test admin"]["id"]
    assert events[1].actor == f"api_key:{admin_id}" and events[1].actor_name == "test admin"


def audit_events(app: Flask, target: str) -> list[AuditEvent]:
    with app.app_context():
        found = list(db.session.scalars(select(AuditEvent).where(AuditEvent.target == target)
                                        .order_by(AuditEvent.id)))
        db.session.expunge_all()
        return found


@pytest.fixture
def two_programs(app: Flask, api: ApiClient) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    yield (create_program(api, name="Kopi A", slug="kopi-a"),
           create_program(api, name="Kopi B", slug="kopi-b"))


def test_create_key_with_programs_from_the_command_line(
        app: Flask, api: ApiClient, two_programs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    a, b = two_programs
    runner = app.test_cli_runner()
    made = runner.invoke(cli, ["create-key", "--role", "marketer", "--name", "Siam marketing",
                               "--program", "kopi-a"])
    assert made.exit_code == 0, made.output
    plaintext = made.stdout.strip().splitlines()[-1]
    assert plaintext.startswith("pp_")
    marketer = api.as_(plaintext)
    assert [p["id"] for p in marketer.get("/api/v1/programs").json["programs"]] == [a["id"]]
    assert marketer.get(f"/api/v1/programs/{b['id']}").status_code == 404
    assert marketer.get(f"/api/v1/programs/{a['id']}").status_code == 200

    both = runner.invoke(cli, ["create-key", "--role", "pos", "--name", "both tills",
                               "--program", "kopi-a", "--program", "kopi-b"])
    assert both.exit_code == 0, both.output
    everywhere = runner.invoke(cli, ["create-key", "--role", "admin", "--name", "ops"])
    assert everywhere.exit_code == 0
    unknown = runner.invoke(cli, ["create-key", "--role", "pos", "--name", "x",
                                  "--program", "nope"])
    assert unknown.exit_code != 0 and "nope" in unknown.output

    listed = runner.invoke(cli, ["list-keys"])
    assert listed.exit_code == 0
    header, *lines = listed.output.splitlines()
    column = header.index("PROGRAMS")  # the columns are aligned
    programs_of = {line[header.index("NAME"):]: line[column:].split()[0] for line in lines}
    assert programs_of["Siam marketing"] == "kopi-a"
    assert programs_of["both tills"] == "kopi-a,kopi-b"
    assert programs_of["ops"] == "*"
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "key.create").order_by(AuditEvent.id)).all()
        assert [(e.actor, e.details["name"]) for e in events[-3:]] == [
            ("cli", "Siam marketing"), ("cli", "both tills"), ("cli", "ops")]
        assert all(plaintext not in repr(e.details) for e in events)
        db.session.rollback()


def test_a_limited_staff_keys_till_session_finds_no_other_programs_card(
        world: World, keys: dict[str, str]) -> None:
    """Signed in at ``/staff`` with a key limited to A, another program's card is no card."""
    with world.app.app_context():
        key = api_keys.create("A's till", "staff", program_ids=[world.a["program_id"]])[1]
    till = Staff(world.app.test_client(), key)
    other = till.scan(world.b["code"])
    assert other.status_code == 404 and other.json["detail"] == "No card with this code."
    assert till.scan(world.a["code"]).status_code == 200
    everywhere = Staff(world.app.test_client(), keys["staff"])
    assert everywhere.scan(world.b["code"]).status_code == 200
