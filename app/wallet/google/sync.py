"""The outbox's "google" channel: keeping Google Wallet in step with the points store.

Every card change reaches Google through this channel (``create_app`` registers
:data:`CHANNEL`), and nothing else calls Google: a new card's object is created by the
outbox too, and its save link is withheld until then. The program's loyalty class is
created or patched when its design changed, and the card's object is inserted or patched
with the new balance, tier, barcode and state. A balance change notifies the holder
while the card has had fewer than three notifications in 24 hours (Google's limit); after that
the update is silent. A marketer's message is added to the object, notifying if Google still
allows it.

Syncs of one card never overlap, on any number of workers: each runs in one transaction that
first takes the card's lock, then reads the card afresh, sends only if Google has an older
version, and records the version sent and any notification before the lock is released at
commit. So Google never gets an older version after a newer one, and the count of
notifications and the decision to send one are a single step.

On PostgreSQL the lock is a transaction-level advisory lock, not a row lock: it blocks only
other syncs of that card (postings and callbacks never wait for a Google call); a transaction
holds at most one and takes it before any other lock, so it cannot deadlock; and it dies with
its connection, so a killed worker leaves nothing behind. A sync waits for it at most
``LOCK_WAIT_SECONDS`` (the holder may be stuck behind a slow Google), then leaves its outbox
rows for a retry, which sends the newest version. On SQLite every writing transaction holds
the database's only write lock from ``BEGIN IMMEDIATE``, which already serializes syncs.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.sql.elements import ColumnElement

from app import dbutil, telemetry, timeutil
from app.extensions import db
from app.feedback import service as feedback
from app.loyalty import artwork, balances, branding, challenges, fanout
from app.loyalty.codes import redemption_code, short_code
from app.loyalty.models import Card, CardStatus, Program
from app.outbox.channels import Channel, Claimed, Delivery
from app.outbox.models import OutboxEntry, PassUpdate
from app.timeutil import utcnow
from app.wallet import events
from app.wallet.google.client import RETRYABLE_403_REASONS, GoogleWalletError
from app.wallet.google.models import (
    GoogleCallbackNonce,
    GoogleClassState,
    GoogleNotification,
    GoogleObjectState,
)
from app.wallet.google.setup import GoogleWallet, google_wallet
from app.wording import pass_wording
from passes.barcode import rotating_pattern, totp_key
from passes.google.callbacks import WalletCallback
from passes.google.payloads import (
    LoyaltyClassContent,
    LoyaltyObjectContent,
    ObjectState,
    TextModule,
    loyalty_class_body,
    loyalty_object_body,
    loyalty_object_patch_body,
)

log = logging.getLogger("pointpass.google.sync")
CHANNEL_NAME = "google"
NOTIFICATIONS_PER_DAY = 3
# How long a sync waits for another sync of the same card (or class) before leaving its
# outbox rows for later: longer than a sync takes, shorter than a job's patience.
LOCK_WAIT_SECONDS = 10.0
# First keys of the two-key advisory locks (the second is the card's or program's id).
_OBJECT_LOCK = 0x47573031  # "GW01"
_CLASS_LOCK = 0x47573032  # "GW02"
_LOCK_NOT_AVAILABLE = "55P03"


class SyncBusy(Exception):
    """Another sync of the same card (or class) held its lock for ``LOCK_WAIT_SECONDS``."""


def _lock(namespace: int, ident: int) -> None:
    """Begin a transaction holding the sync lock ``(namespace, ident)`` until it ends.

    Commits what the session has first, so that nothing the new transaction reads predates
    the lock. Raises :class:`SyncBusy` (rolled back) if the lock
    stays taken for ``LOCK_WAIT_SECONDS``.
    """
    db.session.commit()
    if db.session.get_bind().dialect.name != "postgresql":
        return  # SQLite: BEGIN IMMEDIATE gives this transaction the only write lock
    previous = db.session.scalar(select(func.current_setting("lock_timeout")))
    db.session.execute(select(func.set_config(
        "lock_timeout", f"{int(LOCK_WAIT_SECONDS * 1000)}ms", True)))
    try:
        db.session.execute(select(func.pg_advisory_xact_lock(namespace, ident)))
    except OperationalError as exc:
        db.session.rollback()
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise SyncBusy(f"sync lock {namespace:#x}/{ident} is taken") from exc
        raise
    db.session.execute(select(func.set_config("lock_timeout", previous, True)))


def logo_url(wallet: GoogleWallet, program: Program) -> str:
    """The program's uploaded logo made square (content-addressed), else the generated one."""
    return (artwork.google_logo_url(program)
            or f"{wallet.base_url}/wallet/google/logo/{program.slug}.png")


def class_content(wallet: GoogleWallet, program: Program, *,
                  public_base: str | None = None) -> LoyaltyClassContent:
    """The program's class. ``program`` may be an unsaved copy (the console's design preview);
    ``public_base`` replaces the scheme and host of its URLs (a preview on a server Google
    cannot reach, whose own URLs the class would refuse)."""
    def public(url: str | None) -> str | None:
        return url if url is None or public_base is None else public_base + urlsplit(url).path

    return LoyaltyClassContent(
        issuer_id=wallet.issuer_id,
        program_slug=program.slug,
        issuer_name=program.organization_name[:100],
        program_name=program.name[:100],
        logo_url=public(logo_url(wallet, program)) or "",
        background_color=program.background_color,
        callback_url=public(f"{wallet.base_url}/wallet/google/callback"),
        hero_image_url=public(artwork.public_url(program, "strip")),
        wording=pass_wording(),
    )


def object_state(card: Card) -> ObjectState:
    """``EXPIRED`` for the card of an erased member, ``INACTIVE`` for a voided one."""
    if card.erased_at is not None:
        return "EXPIRED"
    return "INACTIVE" if card.status is CardStatus.VOIDED else "ACTIVE"


def object_content(wallet: GoogleWallet, card: Card, notify: bool) -> LoyaltyObjectContent:
    program = card.program
    rotating = program.google_rotating_barcode
    modules = []
    if card.message:
        modules.append(TextModule(id="message", header=program.name[:100], body=card.message))
    pending, expiring = balances.pass_lines(balances.summary(card.id, timeutil.now()))
    return LoyaltyObjectContent(
        issuer_id=wallet.issuer_id,
        serial=card.serial_number,
        class_id=wallet.class_id(program.slug),
        balance=card.balance,
        barcode_value=rotating_pattern(card.serial_number) if rotating
        else redemption_code(card),
        rotating_totp_secret=totp_key(current_app.config["REDEMPTION_CODE_KEY"],
                                      card.serial_number) if rotating else None,
        barcode_alternate_text=short_code(card),
        account_id=card.serial_number,
        account_name=card.member.name[:100],
        points_label=branding.localized_points_label(program),
        tier=card.tier.name if card.tier else None,
        state=object_state(card),
        text_modules=modules,
        pending=pending,
        expiring=expiring,
        badges=challenges.pass_badges(card),
        feedback=feedback.pass_link(card),
        notify=notify,
        wording=pass_wording(),
    )


def _patch_body(card: Card, content: LoyaltyObjectContent) -> dict[str, object]:
    """The PATCH for the card's object. An erased member's also replaces the name (with the
    pseudonym) and removes the messages added to the object (they may name the member)."""
    body = loyalty_object_patch_body(content)
    if card.erased_at is not None:
        body["accountName"] = loyalty_object_body(content).get("accountName")
        body["messages"] = []
    return body


def ensure_class(wallet: GoogleWallet, program: Program) -> None:
    """Create or patch the program's class if Google has an older design (or none).

    Under the class's lock, so two syncs never send two designs out of order."""
    state = db.session.get(GoogleClassState, program.id)
    if state is not None and state.synced_design_version >= program.design_version:
        return
    program_id = program.id
    _lock(_CLASS_LOCK, program_id)
    program = db.session.get(Program, program_id, populate_existing=True)
    state = db.session.get(GoogleClassState, program_id, populate_existing=True)
    if program is None or (state is not None
                           and state.synced_design_version >= program.design_version):
        db.session.commit()
        return
    design_version = program.design_version
    body = loyalty_class_body(class_content(wallet, program))
    values: dict[str, object] = {"synced_design_version": design_version, "synced_at": utcnow()}
    if state is None:
        wallet.client().upsert_class(body)
        # A new class: the program's earlier messages to everyone had no holder here to see.
        values["messages_through"] = fanout.last_update(program_id)
    else:  # Google has the class: one PATCH
        wallet.client().patch_class(body)
    dbutil.upsert(GoogleClassState, {"program_id": program.id}, values)
    db.session.commit()


def add_class_messages(wallet: GoogleWallet, program: Program) -> int:
    """Add to the program's class the messages to every card (a marketer's update with no
    segment) that it lacks, oldest first: one request each, however many cards, where
    adding them object by object took two requests per card at Google's 20 a second. Each
    notifies (``TEXT_AND_NOTIFY``; Google drops what its three a day per pass do not allow).
    Under the class's lock; returns how many were added."""
    state = db.session.get(GoogleClassState, program.id)
    if state is None or not fanout.messages_to_everyone(program.id, state.messages_through):
        db.session.rollback()
        return 0
    program_id, header = program.id, program.name[:100]
    class_id = wallet.class_id(program.slug)
    added = 0
    while True:
        _lock(_CLASS_LOCK, program_id)
        state = db.session.get(GoogleClassState, program_id, populate_existing=True)
        pending = fanout.messages_to_everyone(program_id, state.messages_through) if state else []
        if state is None or not pending:
            db.session.commit()
            return added
        update_id, message = pending[0]
        wallet.client().add_message(class_id, {"id": f"update-{update_id}", "header": header,
                                               "body": message},
                                    notify=True, kind="loyaltyClass")
        state.messages_through = update_id
        db.session.commit()
        added += 1


def _may_notify(card_id: int) -> bool:
    since = utcnow() - timedelta(hours=24)
    sent = db.session.scalar(select(func.count(GoogleNotification.id)).where(
        GoogleNotification.card_id == card_id, GoogleNotification.sent_at > since)) or 0
    return sent < NOTIFICATIONS_PER_DAY


def _may_have_reached_google(exc: Exception) -> bool:
    """Whether a failed call may still have been carried out (no answer, or a 5xx)."""
    status = getattr(exc, "status", None)
    return status is not None and (status == 0 or status >= 500)


def _end_after_failure(card_id: int, exc: Exception, notified: bool) -> None:
    """End the sync's transaction after a failed call: count the notification it decided on
    if Google may have sent it (one too many counted is safe, one too few is not)."""
    if notified and _may_have_reached_google(exc):
        db.session.add(GoogleNotification(card_id=card_id))
        db.session.commit()
    else:
        db.session.rollback()


def sync_card(wallet: GoogleWallet, card: Card, message: str | None = None) -> bool:
    """Insert or patch the card's object (and class) on Google; add ``message`` if given.
    ``False`` when Google already had this version and there was no message to add.

    Holds the card's sync lock while it reads, sends and records (see the module's
    docstring): sends nothing if Google already has this version of the card (and there is
    no message), never an older one, and notifies only within Google's daily limit.
    Raises :class:`SyncBusy` if another sync of the card kept the lock too long, and
    ``GoogleWalletError`` or ``OSError`` if Google failed; nothing is recorded then but a
    notification Google may have sent.
    """
    ensure_class(wallet, card.program)
    card_id = card.id
    _lock(_OBJECT_LOCK, card_id)
    fresh = db.session.get(Card, card_id, populate_existing=True)
    if fresh is None:
        db.session.commit()
        return False
    card = fresh
    state = db.session.get(GoogleObjectState, card_id, populate_existing=True)
    if state is not None and state.synced_version >= card.version and not message:
        db.session.commit()
        return False  # another sync already sent this version (or a newer one)
    balance_changed = state is not None and state.synced_balance != card.balance
    # The lock reserves the slot: no other sync of the card counts before this one records
    # its notification or lets it go. (Nothing is written before the call: an inserted row
    # would hold a key-share lock on the card's row, and postings would wait for Google.)
    notify = balance_changed and _may_notify(card_id)
    content = object_content(wallet, card, notify)
    version, balance = card.version, card.balance
    client = wallet.client()
    try:
        if state is None:
            client.insert_object(loyalty_object_body(content))
        else:
            client.sync_object(loyalty_object_body(content), _patch_body(card, content))
    except Exception as exc:
        _end_after_failure(card_id, exc, notify)
        raise
    dbutil.upsert(GoogleObjectState, {"card_id": card_id},
            {"synced_version": version, "synced_balance": balance, "synced_at": utcnow()})
    if notify:
        db.session.add(GoogleNotification(card_id=card_id))
    db.session.commit()
    if message:
        header = card.program.name[:100]
        object_id = wallet.object_id(card.serial_number)
        _lock(_OBJECT_LOCK, card_id)
        notify_message = _may_notify(card_id)
        try:
            client.add_message(object_id, {"header": header, "body": message},
                               notify=notify_message)
        except Exception as exc:
            _end_after_failure(card_id, exc, notify_message)
            raise
        if notify_message:  # counted even if Google said quotaExceeded and it went as TEXT
            db.session.add(GoogleNotification(card_id=card_id))
        db.session.commit()
    return True


def deliver(rows: list[Claimed], outcome: Delivery) -> None:
    """The outbox's "google" channel: sync each changed card once."""
    wallet = google_wallet()
    if wallet is None or not wallet.sync_enabled:
        for update_id, cards in _cards_by_update(rows).items():
            outcome.skip(update_id, "google-not-configured", len(cards))
        return
    by_card: dict[int, list[Claimed]] = {}
    for row in rows:
        by_card.setdefault(row.card_id, []).append(row)
    messages = _update_messages({r.update_id for r in rows if r.update_id is not None})
    for card_id, card_rows in by_card.items():
        card = db.session.get(Card, card_id)
        if card is None:
            continue
        update_ids = {r.update_id for r in card_rows if r.update_id is not None}
        # The newest of the card's updates that has a message.
        message = next((messages[i] for i in sorted(update_ids, reverse=True) if i in messages),
                       None)
        try:
            telemetry.GOOGLE_SYNCS["sent" if sync_card(wallet, card, message) else "current"].inc()
        except SyncBusy:
            # Not a failure: a slow sync of this card holds its lock. Try again later.
            telemetry.GOOGLE_SYNCS["busy"].inc()
            outcome.retry.update(r.id for r in card_rows)
            log.info("Google sync of %s waits for another sync of it", card.serial_number)
        except GoogleWalletError as exc:
            db.session.rollback()
            telemetry.GOOGLE_SYNCS["retry" if _retryable(exc) else "refused"].inc()
            if _retryable(exc):  # a failure only if the outbox gives up on it
                outcome.retry.update(r.id for r in card_rows)
            else:
                for update_id in update_ids:
                    outcome.failures[update_id] += 1
                log.error("Google refused the object of %s: %s", card.serial_number, exc)
        except OSError as exc:
            db.session.rollback()
            telemetry.GOOGLE_SYNCS["unreachable"].inc()
            outcome.retry.update(r.id for r in card_rows)
            log.warning("Google unreachable for %s: %s", card.serial_number, exc)


def _update_messages(update_ids: set[int]) -> dict[int, str]:
    """The messages of these marketer updates (those that have one): one query per batch."""
    if not update_ids:
        return {}
    rows = db.session.execute(select(PassUpdate.id, PassUpdate.message).where(
        PassUpdate.id.in_(update_ids), PassUpdate.message.is_not(None)))
    return {update_id: message for update_id, message in rows}


def _cards_by_update(rows: list[Claimed]) -> dict[int, set[int]]:
    cards: dict[int, set[int]] = {}
    for row in rows:
        if row.update_id is not None:
            cards.setdefault(row.update_id, set()).add(row.card_id)
    return cards


def _retryable(exc: Exception) -> bool:
    status = getattr(exc, "status", 0)
    return status in (0, 429) or status >= 500 or (
        status == 403 and getattr(exc, "reason", None) in RETRYABLE_403_REASONS)


def audience(card_id: ColumnElement[int], new_cards: bool) -> ColumnElement[bool] | None:
    """Every new card (its object is to be created); of the others, those whose object
    Google has or is being sent.

    A card's object is created by the drain, not by the request that enrolled it, so a change
    may come while that drain is sending an older version. Its outbox row is deleted only
    after the object's state is committed, so a change sees one or the other (PostgreSQL
    reads both at the statement's snapshot) and is announced: the drain then sends the newer
    version.
    """
    if new_cards:
        return None
    synced = select(GoogleObjectState.card_id).where(GoogleObjectState.card_id == card_id)
    being_sent = select(OutboxEntry.id).where(OutboxEntry.card_id == card_id,
                                              OutboxEntry.channel == CHANNEL_NAME)
    return or_(synced.exists(), being_sent.exists())


def enabled() -> bool:
    """Whether Google Wallet is configured to sync (not only to make save links)."""
    wallet = google_wallet()
    return wallet is not None and wallet.sync_enabled


# The program-wide fields a Google object shows (everything else of a program's design lives
# on its loyalty class, patched once by :func:`program_changed`): the points label (and the
# texts that translate it), the barcode's kind, the tiers' names, the dates of pending and
# expiring points (in the program's time zone), and the header of a member's message.
OBJECT_FIELDS = frozenset({"points_label", "texts", "google_rotating_barcode", "tiers",
                           "time_zone", "name"})


def program_changed(program_id: int, fields: frozenset[str]) -> None:
    """A program change: one PATCH of the loyalty class, if its design is newer than
    Google's (objects are patched card by card only for :data:`OBJECT_FIELDS`), and the
    program's messages to every card the class lacks (:func:`add_class_messages`)."""
    wallet = google_wallet()
    program = db.session.get(Program, program_id)
    if wallet is None or not wallet.sync_enabled or program is None:
        return
    ensure_class(wallet, program)
    add_class_messages(wallet, program)


def sync_classes() -> None:
    """Patch every loyalty class whose design Google does not have yet, and add the
    messages to everyone it lacks (the periodic sweep: what failed when the change or the
    update was made is sent again)."""
    wallet = google_wallet()
    if wallet is None or not wallet.sync_enabled:
        return
    message_behind = fanout.any_message_to_everyone(GoogleClassState.program_id,
                                                    GoogleClassState.messages_through)
    behind = list(db.session.scalars(
        select(Program.id).join(GoogleClassState, GoogleClassState.program_id == Program.id)
        .where((GoogleClassState.synced_design_version < Program.design_version)
               | message_behind)))
    db.session.rollback()
    for program_id in behind:
        try:
            program_changed(program_id, frozenset())
        except (GoogleWalletError, OSError, SyncBusy) as exc:
            db.session.rollback()
            log.warning("Google class of program %d not patched yet: %s", program_id, exc)


CHANNEL = Channel(CHANNEL_NAME, audience=audience, deliver=deliver, enabled=enabled,
                  depends_on=OBJECT_FIELDS, program_changed=program_changed)


def object_synced(card: Card) -> bool:
    """Whether Google has the card's object (its save link may be shown)."""
    return db.session.get(GoogleObjectState, card.id) is not None


def record_callback(wallet: GoogleWallet, event: WalletCallback) -> bool:
    """Record a verified save/delete callback and commit; ``False`` if its nonce was seen
    (Google may deliver an event more than once)."""
    db.session.add(GoogleCallbackNonce(nonce=event.nonce))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return False
    prefix = f"{wallet.issuer_id}."
    serial = event.object_id.removeprefix(prefix)
    card_id = db.session.scalar(select(Card.id).where(Card.serial_number == serial))
    if event.object_id.startswith(prefix) and card_id is not None:
        state = db.session.get(GoogleObjectState, card_id)
        if state is not None:
            saved = event.event_type == "save"
            if state.saved != saved:  # a repeated save (or delete) changes nothing
                events.record([card_id], events.Platform.GOOGLE,
                              events.WalletEventKind.INSTALLED if saved
                              else events.WalletEventKind.REMOVED)
            state.saved = saved
            state.saved_changed_at = utcnow()
        log.info("Google Wallet %s of card %s", event.event_type, serial)
    else:
        log.warning("Google callback for an object we do not know: %s", event.object_id)
    db.session.commit()
    return True
