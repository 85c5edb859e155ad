"""A member's data rights (GDPR, Indonesia's UU PDP, Thailand's and Malaysia's PDPA): a copy
of everything held about them (:func:`export`), and erasure (:func:`erase`).

Erasure keeps the member's row as a pseudonymous record and the ledger's amounts (balances,
program totals and the analytics stay as they were) and removes the personal data, in one
transaction that first locks the member's card (a concurrent posting waits, then finds the
card voided):

* the member: name replaced by :data:`PSEUDONYM`; e-mail, phone and birthday removed; a new
  referral code (an old invitation link finds nobody); consents withdrawn (recorded, source
  ``erasure``); ``erased_at`` set;
* the card: voided (as ``app.loyalty.cards.void``), ``erased_at`` set, its message and the
  birthday month copied for segments removed, a new barcode secret; its pass URLs answer 410
  Gone from then on, and the outbox's Google channel sends its object as ``EXPIRED``;
* Apple: the card's device registrations deleted, and the devices (with their push tokens)
  that held no other card; the signed passes cached for the card deleted after commit;
* free text people wrote: the reasons, references and idempotency keys of the card's ledger
  entries, its feedback comments (its open invitations are closed), the free-text details of
  the audit records about the member or card; and anywhere in the program's free text (ledger
  reasons and references, feedback comments, audit details, marketers' messages and campaign
  texts) the member's name, e-mail address, phone number or birthday is replaced by
  ``[erased]``;
* the audit trail records ``member.erase`` with ids only.

A second erasure finds the member erased: :class:`app.errors.MemberErased` (410), and
nothing changes. The ``member.erased`` webhook goes out from :func:`_announce_erasure`.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Text, cast, delete, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from app import access, audit, timeutil
from app.audit import AuditEvent
from app.campaigns.models import Campaign, Recipient
from app.enrollment.service import new_referral_code
from app.errors import MemberErased, NotFound
from app.extensions import db
from app.feedback.models import FeedbackInvitation
from app.loyalty import balances, changes, consent
from app.loyalty.models import (
    Card,
    CardBadge,
    CardStatus,
    Challenge,
    ConsentKind,
    LedgerEntry,
    Member,
    PointLot,
    Program,
    ProgramLocation,
    Reward,
)
from app.outbox.models import PassUpdate
from app.redemption.models import Redemption
from app.timeutil import utcnow
from app.wallet import devices
from app.wallet.apple.models import Device, Registration
from app.wallet.apple.setup import apple_wallet
from app.wallet.events import WalletEvent
from app.wallet.google.models import GoogleNotification
from app.webhooks import emit as webhooks

log = logging.getLogger("pointpass.members.rights")

#: What an erased member is called from then on.
PSEUDONYM = "Erased member"
#: What replaces the member's data found in other free text.
REDACTED = "[erased]"
#: Keys of audit details that hold free text (a reason, a name typed by someone).
FREE_TEXT_KEYS = frozenset({"reason", "comment", "message", "name", "email", "phone",
                            "birthday", "note", "reference"})
#: Values shorter than this are not looked for inside other text (a two-letter name would be
#: found in every word): only where they are the whole text.
MIN_SEARCHED = 3
#: The sections of an export, in order.
SECTIONS = ("member", "consents", "card", "ledger", "lots", "redemptions", "badges",
            "feedback", "devices", "wallet_events", "google_notifications", "campaigns",
            "referrals", "audit")
EXPORT_FORMAT = "pointpass-member-export/1"


@dataclass(frozen=True)
class Erasure:
    """What an erasure did (ids and counts only: no personal data)."""

    member_id: int
    program_id: int
    serial_number: str | None
    erased_at: datetime
    devices_deleted: int
    registrations_deleted: int
    texts_scrubbed: int


# --- Finding the member -----------------------------------------------------------------------


def _member(member_id: int, *, lock: bool = False) -> tuple[Member, Card | None]:
    """The member (in the caller's programs) and their card; ``NotFound`` otherwise. With
    ``lock``, their rows are locked for the transaction (PostgreSQL; SQLite's transaction
    holds the database's write lock)."""
    query = select(Member).where(Member.id == member_id,
                                 access.current().where(Member.program_id))
    card_query = select(Card).where(Card.member_id == member_id)
    if lock:  # the card first, as a posting locks it
        db.session.execute(card_query.with_for_update())
        query = query.with_for_update()
    member = db.session.scalar(query)
    if member is None:
        raise NotFound(f"No member with id {member_id}.")
    return member, db.session.scalar(card_query)


def _check_not_erased(member: Member) -> None:
    if member.erased_at is not None:
        raise MemberErased(f"Member {member.id} was erased on "
                           f"{member.erased_at.date().isoformat()}.")


# --- Export -----------------------------------------------------------------------------------


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _row(obj: Any, columns: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in columns:
        value = getattr(obj, name)
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif hasattr(value, "value") and not isinstance(value, int | str | bool):
            value = value.value  # an enum
        out[name] = value
    return out


def export(member_id: int) -> dict[str, Any]:
    """Everything held about the member, as JSON-ready data (every section of
    :data:`SECTIONS`). ``NotFound`` outside the caller's programs; ``MemberErased`` (410) for
    an erased member, of whom nothing personal is left."""
    member, card = _member(member_id)
    _check_not_erased(member)
    program = db.session.get(Program, member.program_id)
    assert program is not None
    data: dict[str, Any] = {"format": EXPORT_FORMAT, "exported_at": utcnow().isoformat()}
    data["member"] = {
        **_row(member, ("id", "program_id", "name", "email", "phone", "language", "birthday",
                        "referral_code", "referred_by_id", "consent_terms",
                        "consent_marketing", "created_at")),
        "program_name": program.name,
    }
    data["consents"] = [_row(c, ("kind", "granted", "wording_version", "source", "at"))
                        for c in consent.history(member.id)]
    data["referrals"] = {
        "referred_by_member_id": member.referred_by_id,
        "referred_member_ids": list(db.session.scalars(
            select(Member.id).where(Member.referred_by_id == member.id).order_by(Member.id))),
    }
    for section in SECTIONS:
        data.setdefault(section, [] if section not in ("card", "devices") else None)
    if card is not None:
        _export_card(data, card)
    db.session.rollback()  # read only
    return {name: data[name] for name in ("format", "exported_at", *SECTIONS)}


def _export_card(data: dict[str, Any], card: Card) -> None:
    summary = balances.summary(card.id, timeutil.now())
    data["card"] = {
        **_row(card, ("serial_number", "status", "balance", "lifetime_points", "message",
                      "created_at", "updated_at", "last_visit_at", "expires_at")),
        "pending_points": summary.pending,
        "tier": card.tier.name if card.tier else None,
    }
    rows = db.session.execute(
        select(LedgerEntry, ProgramLocation.name).outerjoin(
            ProgramLocation, ProgramLocation.id == LedgerEntry.location_id)
        .where(LedgerEntry.card_id == card.id).order_by(LedgerEntry.id))
    data["ledger"] = [{**_row(entry, ("id", "kind", "points", "pending_points", "balance_after",
                                      "amount", "currency", "reference", "reason", "actor",
                                      "reverses_id", "purchase_id", "created_at")),
                       "location": location} for entry, location in rows]
    data["lots"] = [_row(lot, ("id", "points", "remaining", "pending", "available_at",
                               "expires_at", "created_at"))
                    for lot in db.session.scalars(select(PointLot).where(
                        PointLot.card_id == card.id).order_by(PointLot.id))]
    data["redemptions"] = [
        {**_row(r, ("id", "points", "created_at", "reversed_at")), "reward": reward,
         "location": location}
        for r, reward, location in db.session.execute(
            select(Redemption, Reward.name, ProgramLocation.name)
            .outerjoin(Reward, Reward.id == Redemption.reward_id)
            .outerjoin(ProgramLocation, ProgramLocation.id == Redemption.location_id)
            .where(Redemption.card_id == card.id).order_by(Redemption.id))]
    data["badges"] = [{"challenge": name, "earned_at": _iso(at)}
                      for name, at in db.session.execute(
                          select(Challenge.name, CardBadge.earned_at)
                          .join(CardBadge, CardBadge.challenge_id == Challenge.id)
                          .where(CardBadge.card_id == card.id).order_by(CardBadge.id))]
    data["feedback"] = [
        {**_row(f, ("created_at", "expires_at", "answered_at", "score", "comment",
                    "language")), "location": location}
        for f, location in db.session.execute(
            select(FeedbackInvitation, ProgramLocation.name)
            .outerjoin(ProgramLocation, ProgramLocation.id == FeedbackInvitation.location_id)
            .where(FeedbackInvitation.card_id == card.id).order_by(FeedbackInvitation.id))]
    found = devices.of_card(card)
    push_tokens = dict(db.session.execute(
        select(Device.id, Device.push_token).join(Registration, Registration.device_id
                                                  == Device.id)
        .where(Registration.card_id == card.id)).all())
    data["devices"] = {
        "apple": [{"device_id": d.device_id, "push_token": push_tokens.get(d.device_id),
                   "registered_at": _iso(d.registered_at), "removed_at": _iso(d.removed_at)}
                  for d in found.apple],
        "google": {"status": found.google.status.value,
                   "changed_at": _iso(found.google.changed_at),
                   "synced_at": _iso(found.google.synced_at)},
    }
    data["wallet_events"] = [_row(e, ("platform", "kind", "device_id", "at"))
                             for e in db.session.scalars(select(WalletEvent).where(
                                 WalletEvent.card_id == card.id).order_by(WalletEvent.id))]
    data["google_notifications"] = [_iso(at) for at in db.session.scalars(
        select(GoogleNotification.sent_at).where(GoogleNotification.card_id == card.id)
        .order_by(GoogleNotification.id))]
    data["campaigns"] = [
        {"campaign_id": campaign_id, "name": name, "held_out": held_out, "outcome": outcome,
         "done_at": _iso(done_at)}
        for campaign_id, name, held_out, outcome, done_at in db.session.execute(
            select(Recipient.campaign_id, Campaign.name, Recipient.held_out, Recipient.outcome,
                   Recipient.done_at).join(Campaign, Campaign.id == Recipient.campaign_id)
            .where(Recipient.card_id == card.id).order_by(Recipient.campaign_id))]
    data["audit"] = [_row(e, ("at", "actor", "action", "target", "details"))
                     for e in db.session.scalars(select(AuditEvent).where(
                         AuditEvent.program_id == card.program_id,
                         AuditEvent.target.in_(_targets(data["member"]["id"], card)))
                         .order_by(AuditEvent.id))]


def _targets(member_id: int, card: Card | None) -> list[str]:
    """How audit records name the member and their card."""
    return [f"member:{member_id}"] + ([f"card:{card.serial_number}"] if card else [])


# --- Consents ----------------------------------------------------------------------------------


def change_consent(member_id: int, kind: ConsentKind, granted: bool, *, source: str,
                   wording: str | None = None) -> Member:
    """Record a consent given or withdrawn (:func:`app.loyalty.consent.record`) and commit;
    audited ``member.consent``. ``NotFound`` / ``MemberErased`` as :func:`export`."""
    member, _card = _member(member_id, lock=True)
    _check_not_erased(member)
    row = consent.record(member, kind, granted, source=source, wording=wording)
    audit.record("member.consent", program_id=member.program_id, target=f"member:{member.id}",
                 details={"kind": kind.value, "granted": granted,
                          "wording_version": row.wording_version})
    db.session.commit()
    return member


# --- Erasure ----------------------------------------------------------------------------------


def erase(member_id: int) -> Erasure:
    """Erase the member's personal data (see the module's docstring) and commit, as one
    transaction: on any error nothing is written. ``NotFound`` outside the caller's programs;
    ``MemberErased`` (410) when already erased."""
    try:
        erasure = _erase(member_id)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    db.session.expire_all()
    _forget_cached_passes(erasure.serial_number)
    return erasure


def _erase(member_id: int) -> Erasure:
    member, card = _member(member_id, lock=True)
    _check_not_erased(member)
    now = utcnow()
    personal = _personal_values(member)
    program_id = member.program_id

    # Consents: withdrawn, as a record of the erasure (the history itself holds no personal
    # data: kinds, times, wording versions).
    for kind, given in ((ConsentKind.TERMS, member.consent_terms),
                        (ConsentKind.MARKETING, member.consent_marketing)):
        if given:
            consent.record(member, kind, False, source="erasure", at=now)
    db.session.flush()
    db.session.execute(update(Member).where(Member.id == member.id).values(
        name=PSEUDONYM, email=None, phone=None, birthday=None, consent_terms=False,
        consent_marketing=False, referral_code=_new_referral_code(program_id),
        erased_at=now).execution_options(synchronize_session=False))

    registrations = devices_deleted = 0
    if card is not None:
        registrations, devices_deleted = _erase_card(card, now)
    scrubbed = _scrub_program_texts(program_id, personal)
    scrubbed += _scrub_own_audit(program_id, _targets(member.id, card))

    erasure = Erasure(member_id=member.id, program_id=program_id,
                      serial_number=card.serial_number if card else None, erased_at=now,
                      devices_deleted=devices_deleted,
                      registrations_deleted=registrations, texts_scrubbed=scrubbed)
    audit.record("member.erase", program_id=program_id, target=f"member:{member.id}",
                 details={"card": erasure.serial_number,
                          "apple_devices_deleted": devices_deleted,
                          "texts_scrubbed": scrubbed})
    _announce_erasure(erasure)
    return erasure


def _announce_erasure(erasure: Erasure) -> None:
    """Emit the ``member.erased`` webhook, inside the erasure's transaction (after every
    change, before the commit), so its outbox row commits with the erasure or not at all. The
    webhook events written earlier about the card go first (their bodies hold the member's
    data); the new one carries ids only."""
    webhooks.member_erased(erasure.program_id, erasure.member_id,
                           serial_number=erasure.serial_number, erased_at=erasure.erased_at)


def _erase_card(card: Card, now: datetime) -> tuple[int, int]:
    """Void the card and remove what it held; returns (registrations, devices) deleted."""
    card_id = card.id
    db.session.execute(update(Card).where(Card.id == card_id).values(
        status=CardStatus.VOIDED, erased_at=now, message=None, member_birthday_month=None,
        barcode_secret=secrets.token_urlsafe(32), **changes.bump(now))
        .execution_options(synchronize_session=False))
    # Apple: the registrations, and the devices (push tokens) that held only this card.
    device_ids = list(db.session.scalars(select(Registration.device_id).where(
        Registration.card_id == card_id)))
    registrations = db.session.execute(delete(Registration).where(
        Registration.card_id == card_id)).rowcount or 0  # type: ignore[attr-defined]
    devices_deleted = 0
    if device_ids:
        still_used = select(Registration.id).where(Registration.device_id == Device.id)
        devices_deleted = db.session.execute(delete(Device).where(
            Device.id.in_(device_ids), ~still_used.exists())
            .execution_options(synchronize_session=False)).rowcount or 0  # type: ignore[attr-defined]
    # Free text people wrote on the card's entries (the amounts stay).
    db.session.execute(update(LedgerEntry).where(LedgerEntry.card_id == card_id).values(
        reason=None, reference=None, idempotency_key=None)
        .execution_options(synchronize_session=False))
    db.session.execute(update(FeedbackInvitation).where(
        FeedbackInvitation.card_id == card_id).values(comment=None)
        .execution_options(synchronize_session=False))
    db.session.execute(update(FeedbackInvitation).where(
        FeedbackInvitation.card_id == card_id, FeedbackInvitation.answered_at.is_(None),
        FeedbackInvitation.expires_at > now).values(expires_at=now)
        .execution_options(synchronize_session=False))
    # Google: the outbox's channel sends the object as EXPIRED (Apple has no one left).
    changes.announce([card_id])
    return registrations, devices_deleted


def _new_referral_code(program_id: int) -> str:
    while True:
        code = new_referral_code()
        if db.session.scalar(select(Member.id).where(Member.program_id == program_id,
                                                     Member.referral_code == code)) is None:
            return code


def _personal_values(member: Member) -> list[str]:
    values = [member.name, member.email, member.phone,
              member.birthday.isoformat() if member.birthday else None]
    return [v.strip() for v in values if v and v.strip()]


def _json_forms(value: str) -> set[str]:
    """``value`` as it is and as JSON writes it inside a string (non-ASCII escaped)."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}


def _redact(value: Any, pattern: re.Pattern[str], exact: set[str]) -> Any:
    if isinstance(value, str):
        if value.strip().lower() in exact:
            return REDACTED
        return pattern.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: _redact(v, pattern, exact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, pattern, exact) for v in value]
    return value


# The program's free text: (column, the program's rows of its table).
def _texts(program_id: int) -> list[tuple[InstrumentedAttribute[Any], Any]]:
    cards = select(Card.id).where(Card.program_id == program_id)
    return [
        (LedgerEntry.reason, LedgerEntry.card_id.in_(cards)),
        (LedgerEntry.reference, LedgerEntry.card_id.in_(cards)),
        (FeedbackInvitation.comment, FeedbackInvitation.program_id == program_id),
        (AuditEvent.details, AuditEvent.program_id == program_id),
        (PassUpdate.message, PassUpdate.program_id == program_id),
        (Campaign.name, Campaign.program_id == program_id),
        (Campaign.messages, Campaign.program_id == program_id),
        (Card.message, Card.program_id == program_id),
    ]


def _scrub_program_texts(program_id: int, personal: list[str]) -> int:
    """Replace the member's values wherever the program's free text holds them."""
    searched = [v for v in personal if len(v) >= MIN_SEARCHED]
    if not searched:
        return 0
    exact = {v.lower() for v in personal}
    pattern = re.compile("|".join(re.escape(v) for v in sorted(searched, key=len, reverse=True)),
                         re.IGNORECASE)
    forms = set().union(*(_json_forms(v.lower()) for v in searched))
    scrubbed = 0
    cards_changed: list[int] = []
    for column, of_program in _texts(program_id):
        table = column.class_
        text = func.lower(cast(column, Text), type_=Text)
        matches = or_(*(text.contains(form, autoescape=True) for form in forms))
        for row_id, value in db.session.execute(
                select(table.id, column).where(of_program, matches)).all():
            cleaned = _redact(value, pattern, exact)
            if cleaned != value:
                db.session.execute(update(table).where(table.id == row_id)
                                   .values({column.key: cleaned})
                                   .execution_options(synchronize_session=False))
                scrubbed += 1
                if table is Card:
                    cards_changed.append(row_id)
    if cards_changed:  # other cards' passes showed the message: they are told again
        changes.touch_cards(Card.id.in_(cards_changed))
    return scrubbed


def _scrub_own_audit(program_id: int, targets: list[str]) -> int:
    """Drop the free-text details (reasons, names) of the audit records about the member."""
    scrubbed = 0
    for event_id, details in db.session.execute(select(AuditEvent.id, AuditEvent.details).where(
            AuditEvent.program_id == program_id, AuditEvent.target.in_(targets))).all():
        if not isinstance(details, dict) or not FREE_TEXT_KEYS & details.keys():
            continue
        kept = {k: (REDACTED if k in FREE_TEXT_KEYS else v) for k, v in details.items()}
        db.session.execute(update(AuditEvent).where(AuditEvent.id == event_id)
                           .values(details=kept).execution_options(synchronize_session=False))
        scrubbed += 1
    return scrubbed


def _forget_cached_passes(serial_number: str | None) -> None:
    """Delete the card's signed passes (they show the name) from the pass store."""
    wallet = apple_wallet()
    if wallet is None or serial_number is None:
        return
    try:
        wallet.store.forget(f"{serial_number}-")
    except (OSError, RedisError) as exc:  # the erasure stands; the cache expires anyway
        log.warning("could not delete the cached passes of %s: %s", serial_number, exc)

