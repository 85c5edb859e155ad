"""CSV exports of a program's members and of its ledger, streamed.

Rows are read page by page in id order (keyset: ``id > last id``, :data:`PAGE_SIZE` a page,
plain rows, no ORM objects kept), and written as CSV text a page at a time, so memory stays
constant however large the program. The API, the console and ``pointpass export`` all use
:func:`members_csv` and :func:`ledger_csv`.

A text cell that starts with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) gets a
leading apostrophe, so a spreadsheet shows it as text instead of running it as a formula
(CSV injection). Numbers are written as numbers.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, select

from app.extensions import db
from app.loyalty.models import Card, LedgerEntry, Member, Tier

PAGE_SIZE = 1000
BOM = "\ufeff"  # spreadsheets read the file as UTF-8 with it (Thai names stay Thai)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

MEMBER_COLUMNS = ("external_id", "name", "email", "phone", "language", "birthday", "tier",
                  "balance", "lifetime_points", "member_id", "serial_number", "status",
                  "joined_at")
LEDGER_COLUMNS = ("entry_id", "created_at", "serial_number", "member_id", "external_id", "kind",
                  "points", "pending_points", "balance_after", "actor", "reference", "reason",
                  "amount", "currency", "location_id", "reverses_id", "purchase_id", "rule_id")


def safe_cell(value: Any) -> Any:
    """A cell's value as written: text that a spreadsheet would run as a formula gets a
    leading apostrophe; dates and times are ISO 8601; None is empty."""
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _members_query(program_id: int) -> Select[Any]:
    return (select(Member.id, Member.external_id, Member.name, Member.email, Member.phone,
                   Member.language, Member.birthday, Tier.name, Card.balance,
                   Card.lifetime_points, Card.serial_number, Card.status, Member.created_at)
            .select_from(Member)
            .outerjoin(Card, Card.member_id == Member.id)
            .outerjoin(Tier, Tier.id == Card.tier_id)
            .where(Member.program_id == program_id)
            .order_by(Member.id))


def member_rows(program_id: int, after: int = 0) -> Iterator[tuple[Any, ...]]:
    """The program's members in id order (after member ``after``), as :data:`MEMBER_COLUMNS`."""
    for (member_id, external_id, name, email, phone, language, birthday, tier, balance,
         lifetime, serial, status, joined) in _pages(_members_query(program_id), Member.id,
                                                     after):
        yield (external_id, name, email, phone, language, birthday, tier, balance, lifetime,
               member_id, serial, status, joined)


def _ledger_query(program_id: int, since: datetime | None,
                  until: datetime | None) -> Select[Any]:
    e = LedgerEntry
    query = (select(e.id, e.created_at, Card.serial_number, Card.member_id, Member.external_id,
                    e.kind, e.points, e.pending_points, e.balance_after, e.actor, e.reference,
                    e.reason, e.amount, e.currency, e.location_id, e.reverses_id,
                    e.purchase_id, e.rule_id)
             .select_from(e)
             .join(Card, Card.id == e.card_id)
             .join(Member, Member.id == Card.member_id)
             .where(Card.program_id == program_id)
             .order_by(e.id))
    if since is not None:
        query = query.where(e.created_at >= since)
    if until is not None:
        query = query.where(e.created_at < until)
    return query


def ledger_rows(program_id: int, after: int = 0, since: datetime | None = None,
                until: datetime | None = None) -> Iterator[tuple[Any, ...]]:
    """The program's ledger entries in id order, as :data:`LEDGER_COLUMNS`."""
    return _pages(_ledger_query(program_id, since, until), LedgerEntry.id, after)


def _pages(query: Select[Any], key: Any, after: int) -> Iterator[tuple[Any, ...]]:
    """Every row of ``query`` (ordered by ``key``, the row's first column), a page at a
    time. Each page is its own statement; between pages no transaction is held."""
    last = after
    while True:
        rows = db.session.execute(query.where(key > last).limit(PAGE_SIZE)).all()
        db.session.rollback()
        yield from rows
        if len(rows) < PAGE_SIZE:
            return
        last = rows[-1][0]


def csv_text(columns: Iterable[str], rows: Iterable[tuple[Any, ...]],
             bom: bool = True) -> Iterator[str]:
    """The CSV text of ``rows`` under a header of ``columns``, in pieces of about a page."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    first = (BOM if bom else "") + out.getvalue()
    out.seek(0)
    out.truncate()
    yield first
    for count, row in enumerate(rows, 1):
        writer.writerow([safe_cell(value) for value in row])
        if count % PAGE_SIZE == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue()


def members_csv(program_id: int, after: int = 0, bom: bool = True) -> Iterator[str]:
    return csv_text(MEMBER_COLUMNS, member_rows(program_id, after), bom)


def ledger_csv(program_id: int, after: int = 0, since: datetime | None = None,
               until: datetime | None = None, bom: bool = True) -> Iterator[str]:
    return csv_text(LEDGER_COLUMNS, ledger_rows(program_id, after, since, until), bom)
