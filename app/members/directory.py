"""A program's members as the console and the API look them up: search, a member's card, its
ledger page by page, its open lots.

Search takes one text and finds the program's members whose name or e-mail address contains
it (ignoring case), whose phone number contains its digits, whose card's serial number starts
with it, or whose card the text names as a short code (the code under the card's QR code;
:mod:`passes.shortcode`). Results and ledger entries are paged by keyset (newest first, the
next page starts below the last id shown), so a page costs the same however deep it is.
Only the given program's members are ever read: a short code of another program's card finds
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select

from app.accounts.models import Account
from app.auth.models import ApiKey
from app.errors import NotFound
from app.extensions import db
from app.loyalty.codes import find_short_code
from app.loyalty.ledger import CLOCK_ACTOR
from app.loyalty.models import Card, LedgerEntry, Member, PointLot
from app.staff.models import StaffMember
from passes.shortcode import looks_like_short_code, read_short_code

MAX_QUERY = 200
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
# Fewer digits than this are not looked for in phone numbers (every number has a "1").
MIN_PHONE_DIGITS = 3
MIN_SERIAL_PREFIX = 4
_PHONE_SEPARATORS = (" ", "-", "(", ")", "+", ".")


@dataclass(frozen=True)
class Found:
    """A member with their card."""

    member: Member
    card: Card


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: ``next_after`` continues it (None on the last page)."""

    members: list[Found]
    next_after: int | None


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _digits_of(column: ColumnElement[str]) -> ColumnElement[str]:
    for separator in _PHONE_SEPARATORS:
        column = func.replace(column, separator, "")
    return column


def _matches(text: str) -> ColumnElement[bool] | None:
    """What a member matching ``text`` satisfies; None when nothing can (a blank text)."""
    text = text.strip()[:MAX_QUERY]
    if not text:
        return None
    lowered = _like_escaped(text.lower())
    conditions: list[ColumnElement[bool]] = [
        func.lower(Member.name).like(f"%{lowered}%", escape="\\"),
        func.lower(Member.email).like(f"%{lowered}%", escape="\\"),
    ]
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) >= MIN_PHONE_DIGITS and all(
            c.isdigit() or c in _PHONE_SEPARATORS for c in text):
        conditions.append(_digits_of(Member.phone).like(f"%{digits}%"))
    serial = text.upper()
    if len(serial) >= MIN_SERIAL_PREFIX and all(c in "0123456789ABCDEF" for c in serial):
        conditions.append(Card.serial_number.like(f"{serial}%"))
    if looks_like_short_code(text):
        found = find_short_code(read_short_code(text))
        if found is not None:
            conditions.append(Card.serial_number == found[0])
    return or_(*conditions)


def search(program_id: int, text: str = "", *, after: int | None = None,
           limit: int = DEFAULT_LIMIT) -> SearchPage:
    """The program's members matching ``text`` (all of them for a blank text), newest first,
    ``limit`` at most, below member id ``after`` (the previous page's ``next_after``)."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = (select(Member, Card).join(Card, Card.member_id == Member.id)
             .where(Member.program_id == program_id, Card.program_id == program_id)
             .order_by(Member.id.desc()).limit(limit + 1))
    matching = _matches(text)
    if matching is not None:
        query = query.where(matching)
    if after is not None:
        query = query.where(Member.id < after)
    rows = db.session.execute(query).all()
    found = [Found(member, card) for member, card in rows[:limit]]
    return SearchPage(found, found[-1].member.id if len(rows) > limit else None)


def member(program_id: int, member_id: int) -> Found:
    """The program's member ``member_id`` with their card; ``NotFound`` otherwise."""
    row = db.session.execute(
        select(Member, Card).join(Card, Card.member_id == Member.id)
        .where(Member.id == member_id, Member.program_id == program_id)).first()
    if row is None:
        raise NotFound(f"No member with id {member_id}.")
    return Found(*row)


def card_by_serial(serial_number: str) -> Card:
    """The card with this serial number; ``NotFound`` otherwise."""
    card = db.session.scalar(select(Card).where(Card.serial_number == serial_number))
    if card is None:
        raise NotFound(f"No card with serial number {serial_number!r}.")
    return card


# --- The ledger ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryLine:
    """A ledger entry with who made it, as a person reads it (a staff member's name, a console
    account's e-mail address, an API key's name; ``Pointpass`` for the clock)."""

    entry: LedgerEntry
    who: str


@dataclass(frozen=True)
class LedgerPage:
    entries: list[EntryLine]
    next_before: int | None


def ledger(card: Card, *, before: int | None = None,
           limit: int = DEFAULT_LIMIT) -> LedgerPage:
    """The card's entries newest first, ``limit`` at most, older than entry ``before``."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = (select(LedgerEntry).where(LedgerEntry.card_id == card.id)
             .order_by(LedgerEntry.id.desc()).limit(limit + 1))
    if before is not None:
        query = query.where(LedgerEntry.id < before)
    rows = list(db.session.scalars(query))
    shown = rows[:limit]
    names = _who(shown)
    return LedgerPage([EntryLine(e, names(e)) for e in shown],
                      shown[-1].id if len(rows) > limit else None)


def _who(entries: Sequence[LedgerEntry]) -> _Names:
    staff_ids = {e.staff_member_id for e in entries if e.staff_member_id is not None}
    refs = {e.actor for e in entries}
    account_ids = _ids(refs, "account:")
    key_ids = _ids(refs, "api_key:")
    staff = dict(db.session.execute(select(StaffMember.id, StaffMember.name)
                                    .where(StaffMember.id.in_(staff_ids))).all()
                 ) if staff_ids else {}
    accounts = dict(db.session.execute(select(Account.id, Account.email)
                                       .where(Account.id.in_(account_ids))).all()
                    ) if account_ids else {}
    keys = dict(db.session.execute(select(ApiKey.id, ApiKey.name)
                                   .where(ApiKey.id.in_(key_ids))).all()
                ) if key_ids else {}
    return _Names(staff, accounts, keys)


def _ids(refs: set[str], prefix: str) -> set[int]:
    return {int(ref[len(prefix):]) for ref in refs
            if ref.startswith(prefix) and ref[len(prefix):].isdigit()}


@dataclass(frozen=True)
class _Names:
    staff: dict[int, str]
    accounts: dict[int, str]
    keys: dict[int, str]

    def __call__(self, entry: LedgerEntry) -> str:
        if entry.staff_member_id is not None and entry.staff_member_id in self.staff:
            return self.staff[entry.staff_member_id]
        actor = entry.actor
        kind, _, number = actor.partition(":")
        if number.isdigit():
            if kind == "account" and int(number) in self.accounts:
                return self.accounts[int(number)]
            if kind == "api_key" and int(number) in self.keys:
                return f"API key “{self.keys[int(number)]}”"
        if actor == CLOCK_ACTOR:
            return "Pointpass"
        return actor


# --- Lots ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lot:
    """An open lot: ``remaining`` of its ``points`` are left; pending until ``available_at``
    when ``pending``; they expire at ``expires_at`` (None: never)."""

    id: int
    points: int
    remaining: int
    pending: bool
    available_at: datetime
    expires_at: datetime | None
    created_at: datetime


def open_lots(card: Card) -> list[Lot]:
    """The card's lots with points left: pending ones first (soonest released first), then
    available ones by when they expire (soonest first, never last)."""
    rows = db.session.scalars(select(PointLot).where(PointLot.card_id == card.id,
                                                     PointLot.remaining > 0)).all()
    lots = [Lot(r.id, r.points, r.remaining, r.pending, r.available_at, r.expires_at,
                r.created_at) for r in rows]
    return sorted(lots, key=lambda lot: (
        not lot.pending, lot.available_at if lot.pending else datetime.max.replace(
            tzinfo=lot.available_at.tzinfo),
        lot.expires_at is None, lot.expires_at or lot.available_at, lot.id))
