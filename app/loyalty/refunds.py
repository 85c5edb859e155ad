"""Refunds: a returned purchase claws back, in proportion, the points it earned.

``refund(serial, reference=..., amount=..., currency=...)`` is one posting (under the card's
lock): it finds the card's ``earn`` entry with that ``reference`` (the purchase), the
refunds of it so far, and claws back ``floor(earned × refunded_after / purchase_amount)``
less what earlier refunds settled (what they took, and the shortfall they recorded), so
partial refunds never take more than the purchase earned and refunding all of it takes
exactly all. What the purchase earned is its earn's points (pending or not) and the rules'
awards on it (:meth:`app.loyalty.ledger.PostingTransaction.earned_by`). The points come
first from the purchase's own lots (pending or available), then, with the program's
``refund_shortfall`` ``clamp``, from the balance in spend order down to zero; with
``forgive`` only from the purchase's lots. What could not be taken is the entry's
``shortfall``. A refund is recorded even when it claws back nothing (0 points).

A reference must name one purchase on the card: several ``earn`` entries with it are
refused (409 ``ambiguous-reference``) rather than guessed between, and an earn of plain
points (no amount) cannot be refunded by amount (409 ``not-a-purchase``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, bindparam, func, select

from app import dbutil
from app.errors import CardVoided, Conflict, NotFound, Unprocessable
from app.extensions import db
from app.loyalty import ledger
from app.loyalty.models import CardStatus, EntryKind, LedgerEntry


class PurchaseNotFound(NotFound, code="purchase-not-found"): ...
class AmbiguousReference(Conflict, code="ambiguous-reference"): ...
class NotAPurchase(Conflict, code="not-a-purchase"): ...
class NothingEarned(Conflict, code="nothing-earned"): ...
class RefundExceedsPurchase(Conflict, code="refund-exceeds-purchase"): ...


@dataclass(frozen=True)
class Purchase:
    """A refunded purchase as a refund's answer shows it: its earn entry, its amount, what it
    earned, and how much of it has been refunded (up to and including this refund)."""

    entry_id: int
    reference: str
    amount: int
    currency: str
    earned: int
    refunded: int
    left: int


@dataclass(frozen=True)
class RefundResult:
    """What a refund did. ``clawed_back`` and ``pending_clawed_back`` are the points it took
    from the balance and from pending points; ``shortfall`` what it could not take."""

    serial_number: str
    balance: int
    lifetime_points: int
    tier: str | None
    entry: ledger.Entry
    clawed_back: int
    pending_clawed_back: int
    shortfall: int
    purchase: Purchase
    replayed: bool = False


# The statements of a refund, run in its posting (see app.dbutil).
# The card's earns with a reference: two are enough to know it is ambiguous.
_PURCHASES = dbutil.DriverStatement(lambda _dialect: select(
    LedgerEntry.id, LedgerEntry.amount, LedgerEntry.currency,
).where(LedgerEntry.card_id == bindparam("card_id"), LedgerEntry.kind == EntryKind.EARN,
        LedgerEntry.reference == bindparam("reference"))
 .order_by(LedgerEntry.id).limit(2))
# The refunds of a purchase so far: the amount refunded and the points they settled (what
# they took, pending or not, and what they recorded as shortfall).
_REFUNDED = dbutil.DriverStatement(lambda _dialect: select(
    func.coalesce(func.sum(LedgerEntry.amount), 0),
    func.coalesce(func.sum(-LedgerEntry.points - LedgerEntry.pending_points
                           + func.coalesce(LedgerEntry.shortfall, 0)), 0),
).where(LedgerEntry.purchase_id == bindparam("purchase_id"),
        LedgerEntry.kind == EntryKind.REFUND))


def settled_by_refunds(p: ledger.PostingTransaction, purchase_id: int) -> int:
    """The points of the purchase ``purchase_id`` its refunds have settled so far (taken or
    recorded as shortfall), read in the posting ``p``: what a reversal of the purchase no
    longer takes back."""
    row = p.tx.first(_REFUNDED, {"purchase_id": purchase_id})
    return int(row[1]) if row else 0


def clawback(earned: int, purchase_amount: int, refunded_before: int, amount: int,
             settled_before: int) -> int:
    """The points a refund of ``amount`` claws back from a purchase of ``purchase_amount``
    that earned ``earned``, after refunds of ``refunded_before`` that settled
    ``settled_before`` points: ``floor(earned × refunded_after / purchase_amount)`` less
    those, never below zero."""
    due = earned * (refunded_before + amount) // purchase_amount
    return max(due - settled_before, 0)


def refund(serial_number: str, *, reference: str, amount: int, currency: str, actor: str,
           idempotency_key: str, reason: str | None = None) -> RefundResult:
    """Refund ``amount`` minor units of the purchase ``reference`` on the card, clawing back
    its share of what the purchase earned (see the module docstring). Commits.

    A retry with the same ``idempotency_key`` and request answers as the first did
    (``replayed``); the key with another request is ``IdempotencyKeyReused`` (422). Raises
    ``NotFound`` (404: no such card), ``CardVoided`` (410), ``Unprocessable`` (422: not the
    program's currency), ``PurchaseNotFound`` (404), ``AmbiguousReference``,
    ``NotAPurchase``, ``NothingEarned`` (the purchase earned nothing or was reversed) and
    ``RefundExceedsPurchase`` (more than is left of the purchase to refund), each 409.
    """
    request_fp = ledger.fingerprint(op="refund", reference=reference, amount=amount,
                                    currency=currency, reason=reason)
    with ledger.posting(serial_number, idempotency_key, request_fp) as p:
        if p.replay is not None:
            return _replayed(p.replay)
        try:
            return _refund_under_lock(p, reference, amount, currency, actor, reason)
        except Conflict:
            # On PostgreSQL the locking read's key lookup predates the lock wait: a request
            # with this key that committed meanwhile (and refunded this amount) is found now.
            if earlier := p.committed_replay():
                return _replayed(earlier)
            raise


def _refund_under_lock(p: ledger.PostingTransaction, reference: str, amount: int,
                       currency: str, actor: str, reason: str | None) -> RefundResult:
    card, tx = p.card, p.tx
    if card.status is CardStatus.VOIDED:
        raise CardVoided(f"Card {card.serial_number} is voided.")
    if currency != card.currency:
        raise Unprocessable(
            f"This program's purchases are in {card.currency}; the refund is in {currency}.",
            errors=[{"location": "json", "field": "currency",
                     "message": f"Must be {card.currency}."}])
    purchases = tx.all(_PURCHASES, {"card_id": card.id, "reference": reference})
    if not purchases:
        raise PurchaseNotFound(f"Card {card.serial_number} has no purchase with reference "
                               f"{reference!r}.")
    if len(purchases) > 1:
        raise AmbiguousReference(
            f"Card {card.serial_number} has several purchases with reference {reference!r}; "
            "a refund must name one.")
    purchase_id, purchase_amount, _purchase_currency = purchases[0]
    if purchase_amount is None:
        raise NotAPurchase(f"The earn {reference!r} credited points, not a purchase amount: "
                           "take them back with an adjustment.")
    if p.reversed(purchase_id):  # the till's undo took back everything
        raise NothingEarned(f"The purchase {reference!r} was reversed: it keeps no points.")
    earned = p.earned_by(purchase_id)
    if earned <= 0:
        raise NothingEarned(f"The purchase {reference!r} earned no points.")
    refunded_row = tx.first(_REFUNDED, {"purchase_id": purchase_id})
    refunded_before, settled_before = (int(v) for v in refunded_row) if refunded_row else (0, 0)
    left = purchase_amount - refunded_before
    if amount > left:
        raise RefundExceedsPurchase(
            f"{left} of the purchase's {purchase_amount} minor units are left to refund; "
            f"{amount} were asked.", purchase_amount=purchase_amount,
            refunded=refunded_before, refundable=left)
    points = clawback(earned, purchase_amount, refunded_before, amount, settled_before)
    setting = card.refund_shortfall
    posting = p.post(EntryKind.REFUND, -points, actor=actor, reference=reference,
                     reason=reason, amount=amount, currency=currency,
                     purchase_id=purchase_id, take_first_from=purchase_id,
                     shortfall=setting, counts_toward_tier=True)
    if posting.replayed:  # a concurrent request with the same key went through first
        return _replayed(posting)
    entry = posting.entry
    taken = -entry.points - entry.pending_points
    return RefundResult(
        serial_number=posting.serial_number, balance=posting.balance,
        lifetime_points=posting.lifetime_points, tier=posting.tier, entry=entry,
        clawed_back=-entry.points, pending_clawed_back=-entry.pending_points,
        shortfall=points - taken,
        purchase=Purchase(purchase_id, reference, purchase_amount, currency, earned,
                          refunded_before + amount, left - amount))


def _replayed(posting: ledger.Posting) -> RefundResult:
    """The answer of the refund an idempotency key found (its posting has rolled back):
    the purchase as it was right after that refund."""
    entry = db.session.get(LedgerEntry, posting.entry.id)
    if entry is None or entry.kind is not EntryKind.REFUND or entry.purchase_id is None:
        raise Conflict("This Idempotency-Key was used for another kind of request.")
    purchase = db.session.get(LedgerEntry, entry.purchase_id)
    assert purchase is not None and purchase.amount is not None  # a refund names a purchase
    earned = db.session.scalar(select(
        func.coalesce(func.sum(LedgerEntry.points + LedgerEntry.pending_points), 0),
    ).where((LedgerEntry.id == purchase.id) | and_(
        LedgerEntry.purchase_id == purchase.id, LedgerEntry.kind == EntryKind.BONUS)))
    refunded = db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
        LedgerEntry.purchase_id == purchase.id, LedgerEntry.kind == EntryKind.REFUND,
        LedgerEntry.id <= entry.id))
    db.session.rollback()
    return RefundResult(
        serial_number=posting.serial_number, balance=posting.balance,
        lifetime_points=posting.lifetime_points, tier=posting.tier, entry=posting.entry,
        clawed_back=-entry.points, pending_clawed_back=-entry.pending_points,
        shortfall=entry.shortfall or 0,
        purchase=Purchase(purchase.id, purchase.reference or "", purchase.amount,
                          purchase.currency or "", int(earned or 0), int(refunded or 0),
                          purchase.amount - int(refunded or 0)),
        replayed=True)
