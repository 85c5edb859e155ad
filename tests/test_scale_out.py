"""Scale-out: nginx in front of two gunicorn instances, two ``pointpass worker`` processes, one
PostgreSQL cluster, one Redis and the APNs test server, all started from ``deploy/``.

A bounded mixed load goes through nginx (enrolments, earns whose ``Idempotency-Key`` is sent
twice, one after the other and at the same time, scans, redemptions, a marketer update); then:

* every card's balance equals the sum of its ledger entries and what the clients were told;
* every idempotency key was applied once;
* pushes: no change is lost (the outbox drains empty) and no device is pushed more often than
  its card changed. A drain sends one push per device for all the changes it leased
  (``app/outbox/drain.py``), so changes close together may share a push: under load the test
  asserts ``1 <= pushes <= changes`` per device; a marketer update on a quiet system pushes
  each device exactly once;
* a rate limit of N per minute lets N requests through in total, whichever instance answers;
* ``/readyz`` through nginx answers 503 while the cluster is stopped and 200 once it is back.

The test skips only when nginx is missing and ``POINTPASS_REQUIRE_SCALE_OUT`` is not set
(``.ci/run`` sets it; ``scripts/services.sh`` installs nginx).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import threading
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from redis import Redis
from rq import Queue

from tests.apns_server import APNsTestServer
from tests.factories import DEV_CERTS, PROGRAM, REDIS_URL, apns_settings, apple_settings
from tests.processes import BIN, wait_until
from tests.scaleout import (
    ENV_FILE,
    NGINX_SITE,
    WEB_UNIT,
    WORKER_UNIT,
    PostgresCluster,
    env_file,
    exec_start,
    free_port,
    nginx_binary,
    nginx_conf,
    postgres_bin,
    procfile,
    render_site,
    stop_process,
    tail,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RATE_LIMIT = 6  # POINTPASS_DEVICE_LOG_RATE_LIMIT for the test: per client address per minute
REWARD_COST = 100
THREADS = 4
CARDS_PER_THREAD = 2
ROUNDS = 5


@dataclass
class Stack:
    url: str  # nginx
    web_urls: list[str]  # the gunicorn instances, bypassing nginx
    cluster: PostgresCluster
    apns: APNsTestServer
    keys: dict[str, str]
    runtime: Path
    logs: list[Path] = field(default_factory=list)

    def logs_tail(self) -> str:
        return "\n".join(tail(path) for path in self.logs)

    def db(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.cluster.url, autocommit=True)


def _require_nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        reason = ("nginx is not installed (Debian package `nginx`; scripts/services.sh installs "
                  "it when run as root)")
        if os.environ.get("POINTPASS_REQUIRE_SCALE_OUT"):
            pytest.fail(f"{reason}, and POINTPASS_REQUIRE_SCALE_OUT is set")
        pytest.skip(reason)
    return binary


def _session(key: str | None = None) -> requests.Session:
    session = requests.Session()
    if key:
        session.headers["Authorization"] = f"Bearer {key}"
    return session


def _run(argv: list[str], env: dict[str, str]) -> str:
    """Run a command to its end; its standard output (its error output if it fails)."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def _create_key(env: dict[str, str], role: str) -> str:
    out = _run([str(BIN / "pointpass"), "create-key", "--role", role, "--name",
                f"scale-out {role}"], env)
    return out.strip().splitlines()[-1]


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _wait(stack_logs: Callable[[], str], condition: Callable[[], Any], what: str,
          timeout: float = 30) -> None:
    try:
        wait_until(condition, what, timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{stack_logs()}") from None


@pytest.fixture(scope="module")
def stack(apns_certs: dict[str, Path]) -> Iterator[Stack]:
    """The deployment, shared by this module's tests (the last one stops and restarts the
    database)."""
    nginx = _require_nginx()
    pg_bin = postgres_bin()
    assert pg_bin is not None, "initdb and pg_ctl not found under /usr/lib/postgresql/*/bin"
    cluster = PostgresCluster(pg_bin)
    workdir = cluster.root / "deploy"
    runtime = workdir / "run"  # stands for /run
    workdir.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    queue = f"pointpass-scale-{uuid.uuid4().hex[:8]}"
    apns = APNsTestServer(apns_certs["cert"], apns_certs["key"], DEV_CERTS["wwdr"])

    def start(name: str, argv: list[str], env: dict[str, str]) -> None:
        log = workdir / f"{name}.log"
        logs.append(log)
        with log.open("wb") as out:
            processes.append(subprocess.Popen(argv, env=env, cwd=workdir, stdout=out,
                                              stderr=subprocess.STDOUT,
                                              start_new_session=True))

    try:
        cluster.init().start()
        apns.start()
        shared = env_file()  # what every web instance and worker reads
        overrides = {
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": cluster.url,
            "REDIS_URL": REDIS_URL,
            "RQ_QUEUE": queue,
            "BASE_URL": "https://loyalty.test",
            "INSTANCE_PATH": str(workdir / "instance"),
            "OUTBOX_SWEEP_SECONDS": "0.5",
            "DEVICE_LOG_RATE_LIMIT": f"{RATE_LIMIT}/minute",
            **{name: str(value) for name, value in apple_settings().items()},
            **{name: str(value) for name, value in apns_settings(apns, apns_certs).items()},
        }
        environ = {k: v for k, v in os.environ.items() if not k.startswith("POINTPASS_")}
        env = {**environ, **shared, **{f"POINTPASS_{k}": v for k, v in overrides.items()}}
        assert env["POINTPASS_ENV"] == "production"
        # pointpass db upgrade, once, before any instance starts
        _run(procfile("release"), env)
        web_ports = [free_port(), free_port()]
        for port in web_ports:
            (runtime / f"pointpass-web-{port}").mkdir(parents=True)  # RuntimeDirectory=
            start(f"web-{port}", exec_start(WEB_UNIT, str(port), runtime), env)
        for number in ("1", "2"):
            start(f"worker-{number}", exec_start(WORKER_UNIT, number, runtime), env)
        listen = free_port()
        conf = nginx_conf(render_site(web_ports, listen), workdir)
        logs += [workdir / "nginx-error.log"]
        start("nginx", [nginx, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"], env)
        with ThreadPoolExecutor(4) as pool:
            keys = dict(zip(("admin", "pos", "staff", "marketer"), pool.map(
                lambda role: _create_key(env, role), ("admin", "pos", "staff", "marketer")),
                strict=True))
        stack = Stack(f"http://127.0.0.1:{listen}",
                      [f"http://127.0.0.1:{port}" for port in web_ports],
                      cluster, apns, keys, runtime, logs)
        for url in [stack.url, *stack.web_urls]:
            _wait(stack.logs_tail, lambda url=url: _ready(url), f"{url}/readyz to answer 200",
                  60)
        yield stack
    finally:
        # All at once: each takes a second or two to shut down.
        with ThreadPoolExecutor(max(len(processes), 1)) as pool:
            list(pool.map(stop_process, processes))
        cluster.remove()
        apns.stop()
        Queue(queue, connection=Redis.from_url(REDIS_URL)).delete(delete_jobs=True)


@dataclass
class CardState:
    serial: str
    pass_url: str  # path of the .pkpass
    token: str = ""  # the APNs push token of the phone holding it
    version_at_registration: int = 0
    balance: int = 0  # what the answers said, for the card's thread
    earn_keys: list[str] = field(default_factory=list)


class Load:
    """The mixed load: each thread enrols its cards, adds each to a phone, then earns
    (retrying every key), scans and redeems."""

    def __init__(self, stack: Stack, program: dict[str, Any]) -> None:
        self.stack = stack
        self.program = program
        self.cards: list[CardState] = []
        self.lock = threading.Lock()

    def path(self, url: str) -> str:
        return re.sub(r"^https?://[^/]+", "", url)

    def pass_json(self, session: requests.Session, card: CardState) -> dict[str, Any]:
        response = session.get(self.stack.url + card.pass_url, timeout=30)
        assert response.status_code == 200, response.text
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            return json.loads(archive.read("pass.json"))  # type: ignore[no-any-return]

    def enrol(self, name: str) -> CardState:
        pos = _session(self.stack.keys["pos"])
        response = pos.post(f"{self.stack.url}/api/v1/programs/{self.program['id']}/members",
                            json={"name": name}, timeout=30)
        assert response.status_code == 201, response.text
        card = CardState(response.json()["card"]["serial_number"],
                         self.path(response.json()["card"]["apple_pass_url"]))
        document = self.pass_json(requests.Session(), card)
        card.token = secrets.token_hex(32)
        response = requests.post(
            f"{self.stack.url}/passkit/v1/devices/{uuid.uuid4().hex}/registrations/"
            f"{document['passTypeIdentifier']}/{card.serial}", json={"pushToken": card.token},
            headers={"Authorization": f"ApplePass {document['authenticationToken']}"},
            timeout=30)
        assert response.status_code == 201, response.text
        with self.stack.db() as conn:
            row = conn.execute("SELECT version FROM cards WHERE serial_number = %s",
                               (card.serial,)).fetchone()
        assert row is not None
        card.version_at_registration = int(row[0])
        with self.lock:
            self.cards.append(card)
        return card

    def earn(self, card: CardState, points: int, parallel: bool) -> None:
        """Earn with one key sent twice: in turn, or both at once."""
        key = uuid.uuid4().hex
        card.earn_keys.append(key)

        def send(_: int) -> requests.Response:
            return _session(self.stack.keys["pos"]).post(
                f"{self.stack.url}/api/v1/cards/{card.serial}/earn", json={"points": points},
                headers={"Idempotency-Key": key}, timeout=30)

        if parallel:
            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(send, (1, 2)))
        else:
            answers = [send(1), send(2)]
        assert [answer.status_code for answer in answers] == [201, 201], answers[0].text
        assert answers[0].json() == answers[1].json()
        assert sorted(answer.headers.get("Idempotent-Replayed", "") for answer in answers) == [
            "", "true"]
        card.balance += points

    def scan_and_redeem(self, card: CardState, staff: requests.Session) -> None:
        code = self.pass_json(staff, card)["barcodes"][0]["message"]
        response = staff.post(f"{self.stack.url}/api/v1/scans", json={"code": code},
                              timeout=30)
        assert response.status_code == 200, response.text
        scanned = response.json()
        assert scanned["card"]["balance"] == card.balance
        if card.balance < REWARD_COST:
            return
        reward = self.program["rewards"][0]["id"]
        response = staff.post(f"{self.stack.url}/api/v1/redemptions",
                              json={"scan_id": scanned["scan_id"], "reward_id": reward},
                              headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=30)
        assert response.status_code == 201, response.text
        card.balance -= REWARD_COST
        assert response.json()["balance"] == card.balance

    def thread(self, number: int) -> None:
        staff = _session(self.stack.keys["staff"])
        mine = [self.enrol(f"Member {number}-{i}") for i in range(CARDS_PER_THREAD)]
        for round_ in range(ROUNDS):
            for index, card in enumerate(mine):
                self.earn(card, 40 + 10 * index + round_, parallel=(round_ + index) % 2 == 1)
                self.scan_and_redeem(card, staff)

    def run(self, during: Callable[[], None]) -> None:
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(self.thread, number) for number in range(THREADS)]
            try:
                during()
            finally:  # a failed thread's error first: it explains why ``during`` failed
                for future in futures:
                    future.result()


def _update(stack: Stack, program: dict[str, Any], message: str) -> str:
    marketer = _session(stack.keys["marketer"])
    response = marketer.post(f"{stack.url}/api/v1/programs/{program['id']}/updates",
                             json={"message": message}, timeout=30)
    assert response.status_code == 202, response.text
    return stack.url + re.sub(r"^https?://[^/]+", "", response.json()["url"])


def _settled(stack: Stack, update_urls: list[str]) -> Callable[[], bool]:
    marketer = _session(stack.keys["marketer"])

    def check() -> bool:
        if any(marketer.get(url, timeout=30).json()["status"] != "done" for url in update_urls):
            return False
        with stack.db() as conn:
            row = conn.execute("SELECT count(*) FROM pass_outbox").fetchone()
        return row is not None and row[0] == 0

    return check


def _rate_limited_total(urls: list[str], requests_: int, address: str | None) -> int:
    """POST ``/passkit/v1/log`` ``requests_`` times, in turn to each of ``urls``; how many
    were let through (200; the others must be 429)."""
    headers = {"X-Forwarded-For": address} if address else {}
    statuses = [requests.post(f"{urls[i % len(urls)]}/passkit/v1/log",
                              json={"logs": [f"scale-out {i}"]}, headers=headers,
                              timeout=30).status_code for i in range(requests_)]
    assert set(statuses) <= {200, 429}, statuses
    return statuses.count(200)


def test_two_instances_behind_nginx_keep_the_data_right(stack: Stack) -> None:
    admin = _session(stack.keys["admin"])
    response = admin.post(f"{stack.url}/api/v1/programs", json={
        **PROGRAM, "tiers": [{"name": "Member", "threshold": 0}]}, timeout=30)
    assert response.status_code == 201, response.text
    program = response.json()

    load = Load(stack, program)
    updates: list[str] = []

    def marketer_update() -> None:  # once every card is on a phone, while the earns go on
        wait_until(lambda: len(load.cards) == THREADS * CARDS_PER_THREAD, "the enrolments")
        updates.append(_update(stack, program, "Double points today"))

    load.run(during=marketer_update)
    _wait(stack.logs_tail, _settled(stack, updates), "the outbox to drain and the update to end",
          60)

    cards = {card.serial: card for card in load.cards}
    progress = _session(stack.keys["marketer"]).get(updates[0], timeout=30).json()
    assert (progress["cards_total"], progress["cards_done"]) == (len(cards), len(cards))
    with stack.db() as conn:
        ledger = {serial: (balance, total, version) for serial, balance, total, version in
                  conn.execute("SELECT c.serial_number, c.balance, COALESCE(SUM(l.points), 0), "
                               "c.version FROM cards c LEFT JOIN ledger_entries l "
                               "ON l.card_id = c.id GROUP BY c.id").fetchall()}
        applied = Counter(key for (key,) in conn.execute(
            "SELECT idempotency_key FROM ledger_entries WHERE points > 0 "
            "AND idempotency_key IS NOT NULL").fetchall())
    # Ledger sums equal balances, and both equal what the answers said.
    assert {serial: (balance, total) for serial, (balance, total, _) in ledger.items()} == {
        serial: (card.balance, card.balance) for serial, card in cards.items()}
    # Every key sent (each twice) was applied exactly once.
    sent = [key for card in cards.values() for key in card.earn_keys]
    assert len(sent) == THREADS * CARDS_PER_THREAD * ROUNDS
    assert applied == Counter(sent)

    # Each device: pushed at least once (the outbox is empty: every change was delivered),
    # never more often than its card changed (its earns, redemptions and the update).
    for serial, card in cards.items():
        changes = ledger[serial][2] - card.version_at_registration
        pushes = len(stack.apns.requests_for(card.token))
        assert changes >= ROUNDS + 1 and 1 <= pushes <= changes, (serial, changes, pushes)

    # A marketer update on a quiet system: every device exactly once.
    stack.apns.reset()
    updates = [_update(stack, program, "See you this weekend")]
    _wait(stack.logs_tail, _settled(stack, updates), "the second update to end", 60)
    progress = _session(stack.keys["marketer"]).get(updates[0], timeout=30).json()
    assert (progress["cards_total"], progress["cards_done"], progress["devices_pushed"],
            progress["failures"]) == (len(cards), len(cards), len(cards), 0), progress
    assert Counter(request.token for request in stack.apns.requests) == Counter(
        {card.token: 1 for card in cards.values()})

    # One limit for all instances: through nginx, and alternating between the instances.
    assert _rate_limited_total([stack.url], 3 * RATE_LIMIT, None) == RATE_LIMIT
    assert _rate_limited_total(stack.web_urls, 3 * RATE_LIMIT, "198.51.100.7") == RATE_LIMIT


def test_the_deployment_files_agree(stack: Stack, apns_certs: dict[str, Path],
                                    tmp_path: Path) -> None:
    """Settings the files must share, what each instance keeps to itself, and the nginx site
    as written (TLS, HTTP/2) passes ``nginx -t`` once its certificate paths are filled in."""
    site = NGINX_SITE.read_text()
    placeholders = re.findall(r"ssl_certificate(?:_key)? (\S*CHANGE-ME\S*);", site)
    assert len(placeholders) == 2, placeholders
    for placeholder, real in zip(placeholders, (apns_certs["cert"], apns_certs["key"]),
                                 strict=True):
        site = site.replace(placeholder, str(real))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/site.conf; }}\n")
    checked = subprocess.run([_require_nginx(), "-t", "-c", str(tmp_path / "nginx.conf")],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr

    shared = env_file(ENV_FILE)
    assert shared["POINTPASS_TRUSTED_PROXIES"] == "1"  # nginx is the one proxy
    size = re.search(r"client_max_body_size (\d+)k;", NGINX_SITE.read_text())
    assert size and int(size.group(1)) * 1024 == int(shared["POINTPASS_MAX_CONTENT_LENGTH"])
    too_big = requests.post(f"{stack.url}/api/v1/programs", data=b"x" * (65536 + 1),
                            headers={"Content-Type": "application/json"}, timeout=30)
    assert too_big.status_code == 413
    masters, workers = set(), set()
    for url in stack.web_urls:  # each instance: its own pid file and control socket
        instance = stack.runtime / f"pointpass-web-{url.rsplit(':', 1)[1]}"
        masters.add(int((instance / "gunicorn.pid").read_text()))
        shown = json.loads(_run([str(BIN / "gunicornc"), "-s", str(instance / "gunicorn.ctl"),
                                 "-c", "show workers", "-j"], dict(os.environ)))
        assert shown["count"] == 2  # --workers 2 in the unit
        workers |= {worker["pid"] for worker in shown["workers"]}
    assert (len(masters), len(workers)) == (2, 4)  # two instances, each answering for its own


def test_readyz_through_nginx_follows_the_database(stack: Stack) -> None:
    def readyz() -> int:
        return requests.get(f"{stack.url}/readyz", timeout=30).status_code

    def every_instance(status: int) -> Callable[[], bool]:
        # Four answers in a row: round robin asked both instances twice.
        return lambda: all(readyz() == status for _ in range(4))

    stack.cluster.stop("fast")
    _wait(stack.logs_tail, every_instance(503), "/readyz to answer 503")
    body = requests.get(f"{stack.url}/readyz", timeout=30).json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"].startswith("unreachable"), body
    assert body["checks"]["redis"] == "ok", body
    stack.cluster.start()
    _wait(stack.logs_tail, every_instance(200), "/readyz to answer 200 again")
