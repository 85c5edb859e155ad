"""The outbox's "apple" channel: pushing pass updates to the devices registered for changed
cards, through APNs.

Its audience is the cards some device registered; ``create_app`` registers :data:`CHANNEL`.
Wallet fetches every changed pass of a pass type after a single push to a device, so a batch
sends one push per distinct push token, however many of its cards changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import delete, select
from sqlalchemy.sql.elements import ColumnElement

from app import telemetry
from app.extensions import db
from app.loyalty.models import Card
from app.outbox.channels import Channel, Claimed, Delivery
from app.wallet.apple import fastpath, pacing, pass_files
from app.wallet.apple.apns import APNS_URL, APNsClient, Outcome, PushResult
from app.wallet.apple.models import Device, Registration
from app.wallet.apple.setup import AppleWallet, apple_wallet
from app.wallet.events import Platform, WalletEventKind
from app.wallet.events import record as record_event

log = logging.getLogger("pointpass.apple.push")

EXTENSION = "pointpass.apns"
# Cards per part of a delivery: their passes built and stored together (with pre-building),
# then their devices pushed.
PART = 200
_client_lock = threading.Lock()


def client_for(app: Flask, wallet: AppleWallet) -> APNsClient | None:
    """The process's APNs client, or ``None`` when pushes cannot go anywhere real.

    Development stand-in certificates cannot authenticate to Apple, so with them pushes are
    skipped (with a log line) unless ``POINTPASS_APNS_URL`` names another server, such as a
    local test server.
    """
    state = app.extensions.setdefault(EXTENSION, {})
    if "client" in state:
        return state["client"]  # type: ignore[no-any-return]
    with _client_lock:
        if "client" in state:
            return state["client"]  # type: ignore[no-any-return]
        url = app.config.get("APNS_URL")
        client = None
        if wallet.development_certificate and not url:
            log.warning("APNs pushes skipped: the Apple certificates are development "
                        "stand-ins, which Apple's servers refuse. Set POINTPASS_APNS_URL to "
                        "push to another server.")
        else:
            client = APNsClient(
                cert_path=wallet.cert_path,
                key_path=wallet.key_path,
                key_password=app.config.get("APPLE_KEY_PASSWORD") or None,
                topic=wallet.pass_type_id,
                url=url or APNS_URL,
                ca_file=app.config.get("APNS_CA_FILE") or None,
                max_concurrent_streams=int(app.config.get("APNS_MAX_STREAMS", 1000)),
                retries=int(app.config.get("APNS_RETRIES", 3)),
                backoff_base=float(app.config.get("APNS_BACKOFF_SECONDS", 0.2)),
            )
        state["client"] = client
        return client


def deliver(rows: list[Claimed], outcome: Delivery) -> None:
    """Push every device registered for the cards in ``rows`` (one push per token)."""
    wallet = apple_wallet()
    if wallet is None:
        return  # Apple Wallet is off: nothing to tell
    client = client_for(current_app._get_current_object(), wallet)  # type: ignore[attr-defined]
    card_rows: dict[int, list[Claimed]] = defaultdict(list)
    for row in rows:
        card_rows[row.card_id].append(row)
    targets = db.session.execute(
        select(Device.push_token, Registration.card_id, Device.listed_through,
               Card.change_stamp)
        .join(Registration, Registration.device_id == Device.id)
        .join(Card, Card.id == Registration.card_id)
        .where(Registration.card_id.in_(list(card_rows)), Registration.installed())
    ).all()
    db.session.rollback()
    cards_of: dict[str, set[int]] = defaultdict(set)
    current: dict[str, set[int]] = defaultdict(set)
    for token, card_id, listed_through, stamp in targets:
        # A device that asked for its changed serials since the card's change was told of
        # it: a push would tell it nothing new. (A drain that died between its pushes and
        # their bookkeeping leaves its rows to the next: the devices it pushed have asked
        # since, and are not pushed twice.)
        if listed_through is not None and listed_through > stamp:
            current[token].add(card_id)
        else:
            cards_of[token].add(card_id)
    told_already = [cards for token, cards in current.items() if token not in cards_of]
    if told_already:
        telemetry.APNS_PUSHES[("skipped", "already-current")].inc(len(told_already))
    for cards in told_already:
        for update_id in _updates(cards, card_rows):
            outcome.skip(update_id, "already-current")

    if client is None:  # development stand-ins and no POINTPASS_APNS_URL (logged once)
        if cards_of:
            telemetry.APNS_PUSHES[("skipped", "not-configured")].inc(len(cards_of))
        for cards in cards_of.values():
            for update_id in _updates(cards, card_rows):
                outcome.skip(update_id, "apns-not-configured")
        return
    if not cards_of:
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    prebuild = pacing.prebuild_enabled(app)
    tokens_of: dict[int, list[str]] = defaultdict(list)
    for token, cards in cards_of.items():
        for card_id in cards:
            tokens_of[card_id].append(token)
    pacer = pacing.pacer_for(app, lambda: _sample(app, wallet, next(iter(tokens_of)), prebuild))
    # In parts of cards: a part's passes are built (with pre-building) just before its
    # pushes, so the store holds them when the fetches come and the worker holds one part's
    # bytes. A card's rows are finished as soon as all its devices are pushed (after each
    # slice of pushes), so a worker killed mid-batch pushes again at most the slice it was
    # sending, not the whole batch.
    cards = sorted(tokens_of)
    unpushed = {card_id: len(tokens) for card_id, tokens in tokens_of.items()}
    pushed: set[str] = set()
    started = time.monotonic()
    for start in range(0, len(cards), PART):
        part_cards = [c for c in cards[start:start + PART] if unpushed[c]]
        if prebuild and part_cards:
            pass_files.prebuild(part_cards, wallet)
        tokens = list(dict.fromkeys(t for c in part_cards for t in tokens_of[c]
                                    if t not in pushed))
        pushed.update(tokens)
        for pushes in (pacer.slices(tokens) if pacer is not None else [tokens]):
            told = Delivery()  # this slice's outcome
            done = []
            for result in client.push_many(pushes):
                _record(result, cards_of[result.token], card_rows, outcome, told)
                for card_id in cards_of[result.token]:  # a device fetches all its passes
                    unpushed[card_id] -= 1
                    if not unpushed[card_id]:
                        done.append(card_id)
            outcome.finish([r for c in done for r in card_rows[c]], told)
    if pacer is not None:
        pacer.observe(len(pushed), time.monotonic() - started)
    db.session.commit()


def _record(result: PushResult, cards: set[int], card_rows: dict[int, list[Claimed]],
            batch: Delivery, told: Delivery) -> None:
    """Count a push's outcome for its cards' updates in ``told``; a retry marks the rows of
    all its cards in ``batch``."""
    telemetry.count_push(result.outcome, result.status, result.reason)
    updates = _updates(cards, card_rows)
    if result.outcome is Outcome.DELIVERED:
        for update_id in updates:
            told.devices_pushed[update_id] += 1
        return
    if result.outcome is Outcome.RETRY_EXHAUSTED:
        # Not a failure yet: the outbox tries again, and counts one if it gives up.
        batch.retry.update(r.id for c in cards for r in card_rows[c])
        return
    for update_id in updates:
        told.failures[update_id] += 1
    if result.outcome in (Outcome.UNREGISTERED, Outcome.BAD_TOKEN):
        forget_token(result)


def _updates(cards: set[int], card_rows: dict[int, list[Claimed]]) -> set[int]:
    """The updates the rows of ``cards`` belong to."""
    return {r.update_id for c in cards for r in card_rows[c] if r.update_id is not None}


def _sample(app: Flask, wallet: AppleWallet, card_id: int, prebuild: bool) -> pacing.Sample:
    """What pacing ``auto`` times (:mod:`app.wallet.apple.pacing`), on card ``card_id``: a
    device's two requests answered from the pass store when deliveries pre-build and the fast
    path answers them, else the card's pass built and signed as a fetch would."""
    if prebuild:
        serve = _serve_one(app, wallet, card_id)
        if serve is not None:
            return pacing.Sample.serve(serve)
    return pacing.Sample.build(lambda: _build_sample(wallet, card_id))


def _serve_one(app: Flask, wallet: AppleWallet,
               card_id: int) -> Callable[[], list[Any]] | None:
    """The requests a device of card ``card_id`` makes after its push (the list of changed
    serials, then the pass), answered by the fast path in process from the pass pre-built
    here (the delivery finds it stored); ``None`` when the fast path leaves them to the views
    (SQLite, ``POINTPASS_PASSKIT_FAST_PATH=0``)."""
    fast = app.extensions.get(fastpath.EXTENSION)
    if fast is None or not fast.enabled:
        return None
    row = db.session.execute(
        select(Card.serial_number, Card.authentication_token, Device.library_identifier)
        .join(Registration, Registration.card_id == Card.id)
        .join(Device, Device.id == Registration.device_id)
        .where(Card.id == card_id, Registration.installed()).limit(1)).first()
    db.session.rollback()
    if row is None:
        return None
    serial, token, device = row
    pass_files.prebuild([card_id], wallet)
    pass_type = wallet.pass_type_id
    # Not recorded as the device's list: it asked nothing, and must still be pushed.
    listed = (f"{fastpath.PREFIX}devices/{device}/registrations/{pass_type}",
              {"REQUEST_METHOD": "GET", "QUERY_STRING": "passesUpdatedSince=0",
               fastpath.UNRECORDED: True})
    fetched = (f"{fastpath.PREFIX}passes/{pass_type}/{serial}",
               {"REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": f"ApplePass {token}"})

    def requests() -> list[Any]:
        return [fast.answer(path, dict(environ)) for path, environ in (listed, fetched)]

    return requests if None not in requests() else None


def _build_sample(wallet: AppleWallet, card_id: int) -> bytes:
    """Build and sign (not store) the pass of card ``card_id`` as a fetch would."""
    card = db.session.get(Card, card_id)
    assert card is not None
    data = pass_files.build(card, wallet)
    db.session.rollback()
    return data


def forget_token(result: PushResult) -> None:
    """Drop the registrations of a token APNs says is dead (not committed).

    After a 410, a device that registered again after Apple's timestamp keeps its
    registrations: its token was given anew and is live.
    """
    devices = select(Device.id).where(Device.push_token == result.token)
    if result.outcome is Outcome.UNREGISTERED and result.timestamp_ms is not None:
        gone_at = datetime.fromtimestamp(result.timestamp_ms / 1000, UTC)
        devices = devices.where(Device.registered_at < gone_at)
    ids = list(db.session.scalars(devices))
    if ids:
        # The passes on a dead device are gone from its wallet: the analytics count them
        # as removed (app.wallet.events).
        for device_id, card_ids in _installed_cards(ids).items():
            record_event(card_ids, Platform.APPLE, WalletEventKind.REMOVED, device_id=device_id)
        db.session.execute(delete(Registration).where(Registration.device_id.in_(ids)))
        db.session.execute(delete(Device).where(Device.id.in_(ids)))
        log.info("APNs said %s for a token: removed %d device(s)", result.outcome.value,
                 len(ids))


def _installed_cards(device_ids: list[int]) -> dict[int, list[int]]:
    cards: dict[int, list[int]] = {}
    for device_id, card_id in db.session.execute(
            select(Registration.device_id, Registration.card_id).where(
                Registration.device_id.in_(device_ids), Registration.installed())):
        cards.setdefault(device_id, []).append(card_id)
    return cards


def audience(card_id: ColumnElement[int], new_cards: bool) -> ColumnElement[bool]:
    """The changed cards a device registered (a new card has none yet)."""
    return select(Registration.id).where(Registration.card_id == card_id,
                                         Registration.installed()).exists()


def enabled() -> bool:
    """Whether Apple Wallet is configured."""
    return apple_wallet() is not None


CHANNEL = Channel("apple", audience=audience, deliver=deliver, enabled=enabled,
                  max_batch=pacing.max_batch)
