"""Scanning a card's code and redeeming rewards: the rules behind the staff API and page.

A scan reads the code from the card's QR (a forged or malformed code is refused before the
database is asked), checks it is the card's current code version (an older one was already
used: a screenshot of a spent code), and hands out a short-lived signed ``scan_id`` bound to
that code version (and, for a rotating code, to its value). A redemption spends the points
with the ledger's guarded update and, in the same statement, rotates the card's code version;
the new code reaches the card's passes through the outbox. So one scan, like one code, pays
for exactly one redemption: the next needs the card scanned again. A short code typed in
place of the QR code (:mod:`app.redemption.shortcodes`) names the card and code version the
same way, after a lookup that counts against the actor when it finds no card.

Freshness is checked under the card's lock, after the idempotency key: a retry of a
redemption that went through gets its first answer, never "already used".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import BigInteger, bindparam, func, insert, select, update
from sqlalchemy.orm import joinedload

from app import access, dbutil
from app.errors import CardVoided, CodeAlreadyUsed, Conflict, InvalidCode, NotFound, Unprocessable
from app.extensions import db
from app.loyalty import ledger, visits
from app.loyalty.models import Card, CardStatus, EntryKind, Program, ProgramLocation, Reward
from app.loyalty.rewards import offered
from app.redemption import shortcodes
from app.redemption.models import Redemption
from app.staff.actor import TillActor
from app.timeutil import utcnow
from app.webhooks import emit as webhooks
from passes.barcode import InvalidCode as InvalidCodeText
from passes.barcode import is_rotating, read_code, read_rotating_code
from passes.shortcode import looks_like_short_code

SCAN_SECONDS = 300

# Statements of every redemption, compiled once per database (see app.dbutil.DriverStatement).
_REWARD = dbutil.DriverStatement(lambda _dialect: select(
    Reward.program_id, Reward.active, Reward.points_cost, Reward.name, Reward.retired_at
).where(Reward.id == bindparam("id")))
_CODE_STATE = dbutil.DriverStatement(lambda _dialect: select(
    Card.totp_last_counter, Program.google_rotating_barcode
).join(Program, Program.id == Card.program_id).where(Card.id == bindparam("card_id")))
_LOCATION = dbutil.DriverStatement(lambda _dialect: select(ProgramLocation.program_id).where(
    ProgramLocation.id == bindparam("id")))
_REVERSED_AT = dbutil.DriverStatement(lambda _dialect: select(Redemption.reversed_at).where(
    Redemption.id == bindparam("id")))
_MARK_REVERSED = dbutil.DriverStatement(lambda _dialect: update(Redemption.__table__).where(
    Redemption.__table__.c.id == bindparam("redemption_id")
).values(reversed_at=bindparam("reversed_at", type_=Redemption.reversed_at.type),
         reversal_entry_id=bindparam("entry_id")))
_RECORD = dbutil.DriverStatement(
    lambda _dialect: insert(Redemption.__table__).returning(Redemption.__table__.c.id),
    ["card_id", "ledger_entry_id", "reward_id", "points", "code_version", "staff_key_id",
     "staff_member_id", "device_id", "location_id", "created_at"])
# The posting's guarded update also rotates the card's code (and records the rotating value
# used, parameter ``totp_counter``, or None): spending and using up the code are one statement.
_SPEND_AND_ROTATE = ledger.guarded_update(lambda cards: {
    "barcode_version": cards.c.barcode_version + 1,
    "totp_last_counter": func.coalesce(bindparam("totp_counter", type_=BigInteger),
                                       cards.c.totp_last_counter),
})


@dataclass(frozen=True)
class RewardOffer:
    id: int
    name: str
    points_cost: int


@dataclass(frozen=True)
class ScannedProgram:
    """What a till shows of the card's program: its name, colours and currency."""

    id: int
    name: str
    currency: str
    background_color: str
    foreground_color: str
    label_color: str
    points_label: str


@dataclass(frozen=True)
class Scan:
    scan_id: str
    expires_in: int
    serial_number: str
    member_first_name: str
    balance: int
    tier: str | None
    points_label: str
    rewards: list[RewardOffer]  # the active rewards the balance can pay for
    program: ScannedProgram


@dataclass(frozen=True)
class RedemptionResult:
    id: int
    serial_number: str
    reward_id: int | None
    reward_name: str | None
    points: int
    balance: int
    tier: str | None
    location_id: int | None
    created_at: datetime
    ledger_entry_id: int
    replayed: bool = False


def _serializer() -> URLSafeTimedSerializer:
    return _serializer_for(current_app.config["SECRET_KEY"])


@lru_cache(maxsize=8)
def _serializer_for(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="pointpass-scan")


def sign_scan(secret_key: str, *, serial: str, staff_id: str, version: int,
              totp_counter: int | None = None) -> str:
    """The ``scan_id`` :func:`scan` hands out for a scan of ``serial``'s code ``version``
    (and rotating code value ``totp_counter``) by ``staff_id`` (a :attr:`TillActor.actor`).

    It is good for one redemption within :data:`SCAN_SECONDS`, by that actor only.
    """
    data: dict[str, Any] = {"s": serial, "k": staff_id, "v": version}
    if totp_counter is not None:
        data["c"] = totp_counter
    return _serializer_for(secret_key).dumps(data)


@dataclass(frozen=True)
class Code:
    """What a scanned code says: a signed code's version, or a rotating code's counter."""

    serial: str
    version: int | None = None
    totp_counter: int | None = None


def read(code: str, staff: TillActor) -> Code:
    """The card a genuine code names; ``InvalidCode`` (422) otherwise.

    A scanned code is checked with the key alone, before any database is asked. A typed
    short code is looked up, and counts against ``staff`` (and its device) when no card
    has it: see :mod:`app.redemption.shortcodes` (429 while locked out).
    """
    if looks_like_short_code(code):
        serial, version = shortcodes.read(code, staff)
        return Code(serial, version=version)
    key = current_app.config["REDEMPTION_CODE_KEY"]
    try:
        if is_rotating(code):
            serial, counter = read_rotating_code(key, code, time.time())
            return Code(serial, totp_counter=counter)
        serial, version = read_code(key, code)
        return Code(serial, version=version)
    except InvalidCodeText as exc:
        raise InvalidCode(f"This is not a valid card code ({exc}).") from None


def _check_fresh(code: Code, barcode_version: int, totp_last_counter: int,
                 rotating_enabled: bool, *, scanned: bool = False) -> None:
    """Refuse a code already used: an older signed version, or a redeemed rotating value.

    A scan (``scanned``) carries the code version the card had when scanned, and for a
    rotating code its value too: both must still be current.
    """
    if code.totp_counter is not None:
        if not rotating_enabled:
            raise InvalidCode("This program does not use rotating codes.")
        if code.totp_counter <= totp_last_counter:
            raise CodeAlreadyUsed("This scan was already used: scan the card again." if scanned
                                  else "This code was already used: wait for the next code.")
    if code.version is not None and code.version != barcode_version:
        raise CodeAlreadyUsed("This scan was already used, or the card's code changed since: "
                              "scan the card again." if scanned else
                              "This code was already used: ask the customer to open the card "
                              "in their wallet again (it shows the new code).")


def scan(code: str, *, staff: TillActor) -> Scan:
    """Check a scanned code and open a short redemption session for its card."""
    scanned = read(code, staff)
    serial = scanned.serial
    # One round trip for the card, its member, tier and program, one for the rewards.
    card = db.session.scalar(select(Card).where(Card.serial_number == serial).options(
        joinedload(Card.member), joinedload(Card.tier),
        joinedload(Card.program).selectinload(Program.rewards)))
    if card is None:
        raise NotFound("No card with this code.")
    _check_program(staff, card.program_id)
    if card.status is CardStatus.VOIDED:
        raise CardVoided("This card is voided.")
    _check_fresh(scanned, card.barcode_version, card.totp_last_counter,
                 card.program.google_rotating_barcode)
    rewards = [RewardOffer(r.id, r.name, r.points_cost) for r in offered(card.program)
               if r.points_cost <= card.balance]
    # Bound to the code version (and rotating value) just checked: the redemption consumes it.
    scan_id = sign_scan(current_app.config["SECRET_KEY"], serial=serial, staff_id=staff.actor,
                        version=card.barcode_version, totp_counter=scanned.totp_counter)
    return Scan(
        scan_id=scan_id,
        expires_in=SCAN_SECONDS,
        serial_number=serial,
        member_first_name=card.member.name.split()[0] if card.member.name.split() else "",
        balance=card.balance,
        tier=card.tier.name if card.tier else None,
        points_label=card.program.points_label,
        rewards=rewards,
        program=ScannedProgram(
            id=card.program.id, name=card.program.name, currency=card.program.currency,
            background_color=card.program.background_color,
            foreground_color=card.program.foreground_color,
            label_color=card.program.label_color, points_label=card.program.points_label),
    )


def _check_program(staff: TillActor, program_id: int) -> None:
    """A staff member works for their device's program only, a key limited to some programs
    for those (:mod:`app.access`): another program's card is, for them, no card at all
    (``NotFound``, telling nothing about it)."""
    if ((staff.program_id is not None and staff.program_id != program_id)
            or not access.current().allows(program_id)):
        raise NotFound("No card with this code.")


def scanned_serial(scan_id: str, *, staff: TillActor) -> str:
    """The card a scan by ``staff`` named, for acting on it at the till without spending its
    code (adding points). ``InvalidCode`` (422) when the scan is forged, expired or another
    actor's."""
    return _read_scan(scan_id, staff).serial


def _read_scan(scan_id: str, staff: TillActor) -> Code:
    """The card and code version (and rotating value) a scan saw; ``InvalidCode`` when the
    scan is forged, expired or another staff key's."""
    try:
        data = _serializer().loads(scan_id, max_age=SCAN_SECONDS)
    except SignatureExpired:
        raise InvalidCode("This scan has expired: scan the card again.") from None
    except BadSignature:
        raise InvalidCode("This scan_id is not one this server issued.") from None
    if not isinstance(data, dict) or data.get("k") != staff.actor:
        raise InvalidCode("This scan belongs to another staff key: scan the card again.")
    version, counter = data.get("v"), data.get("c")
    if not isinstance(version, int) or not isinstance(counter, int | None):
        # Issued before scans were bound to a code version: it must not redeem unchecked.
        raise InvalidCode("This scan has expired: scan the card again.")
    return Code(str(data["s"]), version=version, totp_counter=counter)


def redeem(
    *,
    staff: TillActor,
    scan_id: str | None = None,
    code: str | None = None,
    reward_id: int | None = None,
    points: int | None = None,
    location_id: int | None = None,
    idempotency_key: str | None = None,
) -> RedemptionResult:
    """Spend a reward's cost (or ``points``) from a scanned card and rotate its code. Commits.

    A code, or a ``scan_id``, pays for one redemption: the rotation uses it up. A retry with
    the ``idempotency_key`` of one that went through gets that result (``replayed``), even
    when it ran concurrently with it. Raises ``InvalidCode`` (422) for a forged code or scan,
    ``NotFound`` (404), ``CardVoided`` (410), ``CodeAlreadyUsed`` or ``InsufficientPoints``
    (409), and for a typed short code ``LockedOut`` (429) while the actor is locked out.
    """
    if (scan_id is None) == (code is None):
        raise Unprocessable("Give either scan_id or code.")
    if (reward_id is None) == (points is None):
        raise Unprocessable("Give either reward_id or points.")
    # A code, or a scan of one: either names the card and the code version it showed.
    shown = read(code, staff) if code is not None else _read_scan(scan_id or "", staff)
    serial = shown.serial
    if location_id is None:
        location_id = staff.location_id  # a staff member redeems where their device is
    request_fp = ledger.fingerprint(op="redeem", serial=serial, reward_id=reward_id,
                                    points=points, location_id=location_id, code=code)

    with ledger.posting(serial, idempotency_key, request_fp) as p:
        if p.replay is not None:
            return _result_of(p.replay)
        card = p.card
        _check_program(staff, card.program_id)
        if card.status is CardStatus.VOIDED:
            raise CardVoided("This card is voided.")
        # Checked under the card's lock: two redemptions of one code or scan cannot both pass.
        # The locking read gave the code version; a rotating value needs the card's last one.
        last_counter, rotating_enabled = 0, False
        if shown.totp_counter is not None:
            code_state = p.tx.first(_CODE_STATE, {"card_id": card.id})
            assert code_state is not None  # the card is locked, so it exists
            last_counter, rotating_enabled = code_state
        try:
            _check_fresh(shown, card.barcode_version, last_counter, rotating_enabled,
                         scanned=code is None)
        except CodeAlreadyUsed:
            # On PostgreSQL the locking read's key lookup saw the database as it was before
            # the lock wait, so it misses a request with this key that committed meanwhile
            # (and used the code): a new statement sees it, and this retry gets its answer.
            if earlier := p.committed_replay():
                return _result_of(earlier)
            raise

        reward_name = None
        if reward_id is not None:
            reward = p.tx.first(_REWARD, {"id": reward_id})
            if reward is not None and reward[0] == card.program_id and reward[4] is not None:
                raise Conflict("This reward is retired: it is no longer offered.",
                               code="reward-retired")
            if reward is None or reward[0] != card.program_id or not reward[1]:
                raise Unprocessable("No such active reward in this card's program.", errors=[
                    {"location": "json", "field": "reward_id", "message": "Unknown reward."}])
            points, reward_name = reward[2], reward[3]
        if location_id is not None and p.tx.first(_LOCATION, {"id": location_id}) != (
                card.program_id,):
            raise Unprocessable("No such location in this card's program.", errors=[
                {"location": "json", "field": "location_id", "message": "Unknown location."}])
        assert points is not None

        posting = p.post(
            EntryKind.REDEEM, -points, actor=staff.actor,
            reference=f"reward:{reward_id}" if reward_id else None, reason=reward_name,
            card_update=_SPEND_AND_ROTATE,
            card_update_params={"totp_counter": shown.totp_counter},
            till=staff, location_id=location_id,
        )
        if posting.replayed:  # a concurrent request with the same key won
            return _result_of(posting)
        recorded = p.tx.first(_RECORD, {
            "card_id": card.id, "ledger_entry_id": posting.entry.id, "reward_id": reward_id,
            "points": points, "code_version": card.barcode_version, "staff_key_id": staff.key_id,
            "staff_member_id": staff.staff_member_id, "device_id": staff.device_id,
            "location_id": location_id, "created_at": posting.entry.created_at,
        })
        assert recorded is not None  # INSERT ... RETURNING gives its row
        p.emit(webhooks.REDEMPTION_CREATED, {
            "redemption": {"id": recorded[0], "reward_id": reward_id, "reward_name": reward_name,
                           "points": points, "location_id": location_id,
                           "staff_member_id": staff.staff_member_id,
                           "device_id": staff.device_id, "ledger_entry_id": posting.entry.id,
                           "created_at": posting.entry.created_at.isoformat()},
            "card": {"serial_number": serial, "balance": posting.balance}})
        visits.visited(p, visits.Visit(
            entry_id=posting.entry.id, kind=EntryKind.REDEEM, at=posting.entry.created_at,
            location_id=location_id, staff_member_id=staff.staff_member_id,
            device_id=staff.device_id, reward_id=reward_id, redemption_id=recorded[0]))
    return RedemptionResult(
        id=recorded[0], serial_number=serial, reward_id=reward_id, reward_name=reward_name,
        points=points, balance=posting.balance, tier=posting.tier, location_id=location_id,
        created_at=posting.entry.created_at, ledger_entry_id=posting.entry.id,
    )


def _result_of(posting: ledger.Posting) -> RedemptionResult:
    redemption = db.session.scalar(select(Redemption).where(
        Redemption.ledger_entry_id == posting.entry.id))
    if redemption is None:
        raise Conflict("This Idempotency-Key was used for another kind of request.")
    reward = db.session.get(Reward, redemption.reward_id) if redemption.reward_id else None
    return RedemptionResult(
        id=redemption.id, serial_number=posting.serial_number, reward_id=redemption.reward_id,
        reward_name=reward.name if reward else None, points=redemption.points,
        balance=posting.balance, tier=posting.tier, location_id=redemption.location_id,
        created_at=redemption.created_at, ledger_entry_id=posting.entry.id, replayed=True,
    )


def reverse(redemption_id: int, *, actor: str, reason: str | None = None,
            till: TillActor | None = None) -> ledger.Posting:
    """Give a redemption's points back with a ledger entry. Commits. 409 if already reversed.
    ``till``: the staff member undoing it at a till (recorded on the entry)."""
    redemption = db.session.get(Redemption, redemption_id)
    card = None if redemption is None else db.session.execute(
        select(Card.serial_number, Card.program_id).where(Card.id == redemption.card_id)).one()
    # Another program's redemption (app.access) is no redemption at all.
    if redemption is None or card is None or not access.current().allows(card.program_id):
        raise NotFound(f"No redemption with id {redemption_id}.")
    serial = card.serial_number
    with ledger.posting(str(serial)) as p:
        # Re-read under the card's lock: two reversals of one redemption cannot both pass.
        reversed_at = p.tx.first(_REVERSED_AT, {"id": redemption_id})
        if reversed_at is not None and reversed_at[0] is not None:
            raise Conflict("This redemption was already reversed.")
        posting = p.post(EntryKind.REVERSE, redemption.points, actor=actor,
                         reference=f"redemption:{redemption_id}",
                         reason=reason or "Redemption reversed",
                         reverses_id=redemption.ledger_entry_id, till=till)
        reversed_now = utcnow()
        p.tx.execute(_MARK_REVERSED, {"redemption_id": redemption_id,
                                      "reversed_at": reversed_now, "entry_id": posting.entry.id})
        p.emit(webhooks.REDEMPTION_REVERSED, {
            "redemption": {"id": redemption_id, "reward_id": redemption.reward_id,
                           "points": redemption.points, "reversed_at": reversed_now.isoformat(),
                           "reason": reason or "Redemption reversed",
                           "ledger_entry_id": posting.entry.id},
            "card": {"serial_number": serial, "balance": posting.balance}})
    return posting
