"""The till: what staff do with a scanned card besides redeeming, and taking it back.

Staff add points for a purchase typed as the shop writes money (``45.000`` rupiah on an
Indonesian screen, ``1,234.50`` ringgit on a Malay one) or as whole points, and may undo their
own last action within :data:`UNDO_SECONDS`. Every change is a ledger posting: an earn goes
through :func:`app.loyalty.earning.earn` with the tap's idempotency key, as the POS earn API
does; an undo is a ``reverse`` entry that names the entry it takes back and who took it back.
Undoing a redemption goes through :func:`app.redemption.service.reverse`, so the redemption
row is marked reversed too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from babel.core import Locale, UnknownLocaleError
from babel.numbers import (
    NumberFormatError,
    get_currency_precision,
    get_decimal_symbol,
    get_group_symbol,
    parse_decimal,
)
from sqlalchemy import select

from app.errors import Conflict, Unprocessable
from app.extensions import db
from app.loyalty import earning, ledger, refunds
from app.loyalty.ledger import MAX_AMOUNT
from app.loyalty.models import Card, EntryKind, LedgerEntry, Program, ProgramLocation
from app.loyalty.rules import Award, EarnPosting
from app.redemption import service as redemption
from app.redemption.models import Redemption
from app.staff.actor import TillActor
from app.timeutil import now

UNDO_SECONDS = 300
_HEX_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
UNDOABLE = (EntryKind.EARN, EntryKind.REDEEM)

# Among the card's entries (its index), not the whole ledger: reverses_id has no index.


class NothingToUndo(Conflict, code="nothing-to-undo"): ...
class UndoTooLate(Conflict, code="undo-too-late"): ...
class AlreadyUndone(Conflict, code="already-undone"): ...
class NotYourAction(Conflict, code="not-your-action"): ...


@dataclass(frozen=True)
class TillAction:
    """What an action at the till did: the entry (for an undo, the reversing one), the card's
    balance and tier after it, and until when it can be undone (``None``: not at all)."""

    entry_id: int
    kind: str  # "earn", "redeem" or "undo"
    serial_number: str
    points: int  # signed, as the entry's
    amount: int | None
    currency: str | None
    balance: int
    tier: str | None
    created_at: datetime
    undo_seconds: int | None
    replayed: bool = False
    # An earn's breakdown: the earning rules' awards on it and the points in all.
    rules: tuple[Award, ...] = ()
    total_points: int | None = None


def _amount_problem(message: str) -> Unprocessable:
    return Unprocessable(f"The amount {message}.", errors=[
        {"location": "json", "field": "amount", "message": message}])


def parse_amount(text: str, *, locale: str, currency: str) -> int:
    """A purchase amount typed in ``locale``'s digit grouping, in ``currency``'s minor units
    (``"45.000"``, ``id``, ``IDR`` -> 4 500 000: 45 000 rupiah of 100 sen).

    Strict: grouping in the wrong places, more decimals than the currency has, a sign, or an
    amount over :data:`MAX_AMOUNT` minor units is refused (422), never guessed at.
    """
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError):
        raise _amount_problem(f"cannot be read in the language {locale!r}") from None
    cleaned = text.strip()
    # Digits and the locale's two separators only: no sign, exponent, "NaN" or underscores,
    # which Python's Decimal would accept.
    allowed = set("0123456789") | {get_group_symbol(locale), get_decimal_symbol(locale)}
    if not cleaned or not set(cleaned) <= allowed:
        raise _amount_problem("must be a positive number written with digits")
    try:
        value = parse_decimal(cleaned, locale=locale, strict=True)
    except NumberFormatError:
        raise _amount_problem("is not a number written this way") from None
    if not value.is_finite() or value <= 0:
        raise _amount_problem("must be a positive number")
    precision = get_currency_precision(currency)
    minor = value.scaleb(precision)
    exponent = value.as_tuple().exponent
    if (isinstance(exponent, int) and -exponent > precision) or minor != int(minor):
        # "45,000" on an Indonesian screen is 45 with three decimals: surely a typo.
        raise _amount_problem(f"has more than {precision} decimals for {currency}")
    if minor > MAX_AMOUNT:
        raise _amount_problem("is too large")
    return int(minor)


def _program_currency(serial: str) -> str:
    currency = db.session.scalar(select(Program.currency).join(
        Card, Card.program_id == Program.id).where(Card.serial_number == serial))
    db.session.rollback()  # the posting runs its own transaction
    if currency is None:
        ledger.get_card(serial)  # raises NotFound
    return str(currency)


def earn_at_till(
    scan_id: str,
    *,
    staff: TillActor,
    locale: str,
    amount: str | None = None,
    points: int | None = None,
    idempotency_key: str | None = None,
) -> TillAction:
    """Add points to the card ``scan_id`` names: for a purchase ``amount`` typed in
    ``locale`` and the program's currency, or ``points`` as such. Commits.

    A retry with the tap's ``idempotency_key`` adds nothing and answers as the first
    (``replayed``). Raises ``InvalidCode`` (422) for a scan that is forged, expired or
    another actor's, ``Unprocessable`` (422) for an amount that is not one.
    """
    if (amount is None) == (points is None):
        raise Unprocessable("Give either amount or points.")
    serial = redemption.scanned_serial(scan_id, staff=staff)
    minor = currency = None
    if amount is not None:
        currency = _program_currency(serial)
        minor = parse_amount(amount, locale=locale, currency=currency)
    posting = earning.earn(serial, actor=staff.actor, points=points, amount=minor,
                          currency=currency, reference="till", idempotency_key=idempotency_key,
                          till=staff)
    action = _action(posting, "earn", undo_seconds=UNDO_SECONDS, replayed=posting.replayed)
    if isinstance(posting, EarnPosting):
        action = replace(action, rules=posting.awards, total_points=posting.total_points)
    return action


def _action(posting: ledger.Posting, kind: str, *, undo_seconds: int | None,
            replayed: bool = False) -> TillAction:
    entry = posting.entry
    return TillAction(entry_id=entry.id, kind=kind, serial_number=posting.serial_number,
                      points=entry.points, amount=entry.amount, currency=entry.currency,
                      balance=posting.balance, tier=posting.tier, created_at=entry.created_at,
                      undo_seconds=undo_seconds, replayed=replayed)


def _last_action(staff: TillActor, after: int = 0) -> LedgerEntry | None:
    """The latest entry this actor made after entry ``after`` (an undo included: it is an
    action too)."""
    return db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.actor == staff.actor, LedgerEntry.id > after,
        LedgerEntry.kind != EntryKind.BONUS,  # an earning rule's award goes with its earn
    ).order_by(LedgerEntry.id.desc()).limit(1))


def _check_in_time(entry: LedgerEntry) -> None:
    # The app's clock (app.timeutil.now): the one PIN locks and enrolment links follow.
    if (now() - entry.created_at).total_seconds() > UNDO_SECONDS:
        raise UndoTooLate(f"An action can be undone within {UNDO_SECONDS // 60} minutes only.")


def _action_to_undo(staff: TillActor, entry_id: int | None) -> LedgerEntry:
    """The entry ``undo_last`` may take back, or the 409 that says why there is none."""
    if entry_id is None:
        # Without an index on the actor this reads the ledger backwards to the actor's last
        # entry; the page always names the entry it shows (below), which reads only the entries
        # made after it.
        last = _last_action(staff)
        if last is None or last.kind not in (*UNDOABLE, EntryKind.REVERSE):
            raise NothingToUndo("You have no action to undo.")
        if last.kind is EntryKind.REVERSE:
            raise AlreadyUndone("Your last action was already undone.")
        _check_in_time(last)
        return last
    shown = db.session.get(LedgerEntry, entry_id)
    if shown is None or shown.actor != staff.actor or shown.kind not in UNDOABLE:
        raise NotYourAction("This action was not yours to undo.")
    _check_in_time(shown)  # first: the entries after it are then only minutes' worth
    later = _last_action(staff, after=shown.id)
    if later is not None:
        if later.reverses_id == shown.id:
            raise AlreadyUndone("This action was already undone.")
        raise NotYourAction("Only your last action can be undone.")
    return shown


def undo_last(staff: TillActor, *, entry_id: int | None = None) -> TillAction:
    """Take back ``staff``'s own last action (an earn or a redemption), made less than
    :data:`UNDO_SECONDS` ago, with a ``reverse`` entry naming who undid it. Commits.

    ``entry_id``, when given, is the action the till shows: it must be that last action.
    Raises a 409 problem otherwise: ``nothing-to-undo``, ``not-your-action``,
    ``undo-too-late``, ``already-undone``; ``insufficient-points`` when the points an earn
    gave were spent since.
    """
    last = _action_to_undo(staff, entry_id)
    serial = last.card.serial_number
    reason = f"Undone at the till by {staff.name}"[:500]
    target_id, kind = last.id, last.kind
    if kind is EntryKind.REDEEM:
        redemption_id = db.session.scalar(select(Redemption.id).where(
            Redemption.ledger_entry_id == target_id))
        db.session.rollback()
        if redemption_id is None:
            raise NothingToUndo("This redemption cannot be undone here.")
        try:
            posting = redemption.reverse(redemption_id, actor=staff.actor, reason=reason,
                                          till=staff)
        except Conflict as exc:
            if exc.code == Conflict.code:  # "already reversed", by an admin or another undo
                raise AlreadyUndone("This redemption was already reversed.") from None
            raise
        return _action(posting, "undo", undo_seconds=None)
    db.session.rollback()
    with ledger.posting(serial) as p:
        # Under the card's lock: two undos of one earn cannot both pass.
        if p.reversed(target_id):
            raise AlreadyUndone("This action was already undone.")
        # All the purchase gave, pending or not, with the rules' awards on it, taken from its
        # own lots first; less what refunds of it clawed back already.
        left = p.earned_by(target_id) - refunds.settled_by_refunds(p, target_id)
        if left <= 0:
            raise NothingToUndo("This purchase was refunded in full.")
        posting = p.post(EntryKind.REVERSE, -left, actor=staff.actor,
                         reason=reason, reference=f"entry:{target_id}", reverses_id=target_id,
                         take_first_from=target_id,
                         counts_toward_tier=True, till=staff)
    return _action(posting, "undo", undo_seconds=None)


@dataclass(frozen=True)
class TillPlace:
    """Where the till works, as its page shows before any scan: the program's name and
    colours, and the location when the actor has one."""

    program_name: str
    background_color: str
    foreground_color: str
    label_color: str
    location_name: str | None = None


def till_place(staff: TillActor) -> TillPlace | None:
    """The program (and location) ``staff`` works for: its location's, or the only program
    there is; ``None`` when the till serves several (a scan then says whose card it is)."""
    location = db.session.get(ProgramLocation, staff.location_id) if staff.location_id else None
    if location is not None:
        program = location.program
    else:
        only = db.session.scalars(select(Program).order_by(Program.id).limit(2)).all()
        if len(only) != 1:
            return None
        program = only[0]
    colors = [c if c and _HEX_COLOR.fullmatch(c) else d for c, d in zip(
        (program.background_color, program.foreground_color, program.label_color),
        ("#1F2937", "#FFFFFF", "#D1D5DB"), strict=True)]
    return TillPlace(program.name, *colors,
                     location_name=location.name if location is not None else None)
