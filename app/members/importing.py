"""Importing members from a CSV file (``pointpass import members``, the console's upload).

A file is read as a stream, row by row, twice at most: :func:`check` validates every row (a
dry run writes nothing) and :func:`run` writes the valid new rows in batches of
:data:`BATCH_SIZE`, each batch one transaction of multi-row inserts (members, cards, the
opening balances' ledger entries and lots, the outbox rows of the new cards, the import's
progress). Memory stays bounded: a batch, and the external ids and e-mail addresses seen so
far (to find duplicates inside the file).

Rows are found again by their ``external_id`` (unique per program): a row whose external id
a member of the program has already is left alone (``unchanged``), so importing the same file
again changes nothing. An opening balance is an ``adjust`` entry (``reference``
``import:<id>``, idempotency key ``import:opening``) and its lot, written with the card in the
same transaction (the card's balance is the entry's points), so the ledger's invariants hold
(:mod:`app.loyalty.invariants`). A member imported with a tier starts with that tier's
threshold as lifetime points, so their next earn keeps them there.

Bad rows are reported with their line number and reasons (:class:`Problem`), in file order,
and skipped; the others are imported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import IO, Any

import psycopg
from marshmallow import ValidationError, validate
from sqlalchemy import (
    BigInteger,
    Integer,
    Table,
    Text,
    func,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from app import audit, dbutil, timeutil
from app.enrollment.service import card_fields, new_referral_code
from app.extensions import db
from app.loyalty import changes, lots
from app.loyalty.balances import program_zone
from app.loyalty.ledger import MAX_POINTS, tier_for
from app.loyalty.models import Card, CardStatus, EntryKind, LedgerEntry, Member, PointLot, Program
from app.loyalty.schemas import MemberIn
from app.members.models import ImportStatus, MemberImport
from app.schemas import invisible_character
from passes.languages import LANGUAGES

log = logging.getLogger("pointpass.imports")

BATCH_SIZE = 1000  # rows per transaction (and per database check while validating)
JOB_TIMEOUT = 3600  # seconds an rq worker gives a console import (20 MiB: ~5 minutes)
MAX_PROBLEMS_KEPT = 1000  # bad rows kept in the import's record (all are counted)
OPENING_KEY = "import:opening"  # the idempotency key of a card's opening balance entry
OPENING_REASON = "Opening balance (import)"

# The columns, and the header names each is known by (compared lower-case, with spaces and
# hyphens read as underscores).
COLUMNS: dict[str, tuple[str, ...]] = {
    "external_id": ("external_id", "externalid", "external_member_id", "member_id",
                    "customer_id", "id"),
    "name": ("name", "full_name", "member_name"),
    "email": ("email", "e_mail", "email_address", "e_mail_address"),
    "phone": ("phone", "phone_number", "mobile", "telephone"),
    "language": ("language", "lang", "locale"),
    "birthday": ("birthday", "birth_date", "date_of_birth", "dob"),
    "tier": ("tier", "tier_name"),
    "opening_balance": ("opening_balance", "balance", "points", "opening_points"),
    "opening_balance_expires_at": ("opening_balance_expires_at", "balance_expires_at",
                                   "expires_at", "expiry", "expires", "balance_expiry",
                                   "opening_balance_expiry", "points_expire_at"),
}
REQUIRED = ("external_id", "name")
_ALIASES = {alias: column for column, aliases in COLUMNS.items() for alias in aliases}
LIMITS = {"external_id": 64, "name": 120, "email": 254, "phone": 32, "tier": 64}

# The member rules of the API (app.loyalty.schemas.MemberIn), reused.
_EMAIL = validate.Email()
_PHONE = next(v for v in MemberIn().fields["phone"].validators
              if isinstance(v, validate.Regexp))
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# What each problem says (English; the console shows its own translations by code).
MESSAGES = {
    "header": "The header row is not usable: {detail}",
    "required": "{column} is required.",
    "too-long": "{column} is longer than {max} characters.",
    "invisible": "{column} contains an invisible or control character ({char}).",
    "email": "{column} is not a valid e-mail address.",
    "phone": "{column} is not a valid phone number.",
    "language": "{column}: unknown language {value!r} (one of {choices}).",
    "date": "{column} is not an ISO date (YYYY-MM-DD).",
    "birthday-range": "{column} is in the future or before 1900.",
    "tier": "{column}: the program has no tier {value!r}.",
    "integer": "{column} is not a whole number.",
    "negative": "{column} is negative.",
    "too-large": "{column} is more than {max}.",
    "expiry-format": "{column} is not an ISO date or date and time.",
    "expiry-past": "{column} is in the past.",
    "duplicate-external-id": "{column} {value!r} is also on line {line}.",
    "duplicate-email": "{column} {value!r} is also on line {line}.",
    "email-taken": "{column} {value!r} belongs to another member of the program.",
    "columns": "The row has {found} cells; the header has {expected}.",
    "encoding": "The row has bytes that are not UTF-8.",
    "csv": "The row is not valid CSV ({detail}).",
}


class BadFile(Exception):
    """The file cannot be imported at all (no header, unknown or missing columns)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.text)
        self.problem = problem


@dataclass(frozen=True)
class Reason:
    code: str
    column: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return MESSAGES[self.code].format(column=self.column or "", **self.params)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "column": self.column, "params": self.params,
                "message": self.text}


@dataclass(frozen=True)
class Problem:
    """A bad row: its line in the file (1 is the header) and why."""

    line: int
    reasons: tuple[Reason, ...]

    @property
    def text(self) -> str:
        return " ".join(reason.text for reason in self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reasons": [r.as_dict() for r in self.reasons]}


@dataclass
class Row:
    """A valid row, ready to insert."""

    line: int
    external_id: str
    name: str
    email: str | None
    phone: str | None
    language: str
    birthday: date | None
    tier_id: int | None
    lifetime_points: int
    opening_balance: int
    expires_at: datetime | None


@dataclass
class Checked:
    """One row as checked: ``new`` (to import), ``unchanged`` (its external id is known) or
    ``bad`` (``problem`` says why)."""

    line: int
    status: str
    row: Row | None = None
    problem: Problem | None = None


@dataclass
class Report:
    """What a check or an import found and did."""

    file_name: str
    sha256: str
    size: int
    dry_run: bool
    rows: int = 0
    new: int = 0
    unchanged: int = 0
    bad: int = 0
    imported: int = 0
    points: int = 0
    problems: list[Problem] = field(default_factory=list)  # the first MAX_PROBLEMS_KEPT
    import_id: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"file_name": self.file_name, "sha256": self.sha256, "size": self.size,
                "dry_run": self.dry_run, "rows": self.rows, "new": self.new,
                "unchanged": self.unchanged, "bad": self.bad, "imported": self.imported,
                "points": self.points, "import_id": self.import_id,
                "seconds": round(self.seconds, 3),
                "problems": [p.as_dict() for p in self.problems]}


# --- Reading -----------------------------------------------------------------------------

def _normal(name: str) -> str:
    name = "".join(ch for ch in name if invisible_character(ch) is None)
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def header_columns(header: list[str]) -> list[str | None]:
    """The column each header cell names (None: an empty trailing cell). Raises
    :class:`BadFile` for an unknown or repeated column, or one required missing."""
    columns: list[str | None] = []
    for index, cell in enumerate(header):
        name = _normal(cell)
        if not name:
            columns.append(None)
            continue
        column = _ALIASES.get(name)
        if column is None:
            raise BadFile(Problem(1, (Reason("header", None, {
                "detail": f"unknown column {cell.strip()!r} (cell {index + 1}); the columns "
                f"are {', '.join(COLUMNS)}"}),)))
        if column in columns:
            raise BadFile(Problem(1, (Reason("header", None, {
                "detail": f"column {column} appears twice"}),)))
        columns.append(column)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise BadFile(Problem(1, (Reason("header", None, {
            "detail": f"missing column {', '.join(missing)}"}),)))
    return columns


def _records(binary: IO[bytes]) -> Iterator[tuple[int, list[str] | None, Reason | None]]:
    """(first line, cells, None) per CSV record of the file, or (line, None, reason) for a
    record that cannot be read; blank lines are skipped. A UTF-8 BOM is dropped; bytes that
    are not UTF-8 are kept as surrogates (:func:`_undecodable`) so the row can be refused."""
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape",
                            newline="")
    reader = csv.reader(text, strict=True)
    previous = 0
    try:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield previous + 1, None, Reason("csv", None, {"detail": str(error)})
                previous = reader.line_num
                continue
            line, previous = previous + 1, reader.line_num
            if cells and any(cells):
                yield line, cells, None
    finally:
        if not binary.closed:
            text.detach()  # the caller's file stays open (it is read again)


def _undecodable(cells: list[str]) -> bool:
    """Whether a cell holds bytes that were not UTF-8 (read as lone surrogates)."""
    for cell in cells:
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


# --- Checking ----------------------------------------------------------------------------

class Checker:
    """Checks rows against the rules, the file's earlier rows and the program's members."""

    def __init__(self, program: Program, now: datetime) -> None:
        self.program, self.now = program, now
        self.zone = program_zone(program.time_zone)
        self.tiers = {t.name.strip().lower(): t for t in program.tiers}
        self.all_tiers = list(program.tiers)
        self.base_tier = tier_for(self.all_tiers, 0)
        self.external_ids: dict[str, int] = {}
        self.emails: dict[str, int] = {}

    def rows(self, binary: IO[bytes]) -> Iterator[Checked]:
        """Every row of the file, checked, in file order (raises :class:`BadFile`)."""
        records = _records(binary)
        columns: list[str | None] | None = None
        for line, cells, reason in records:
            if reason is not None and columns is None:
                raise BadFile(Problem(line, (reason,)))
            if cells is not None and columns is None:
                if _undecodable(cells):
                    raise BadFile(Problem(line, (Reason("encoding"),)))
                columns = header_columns(cells)
                break
        if columns is None:
            raise BadFile(Problem(1, (Reason("header", None, {"detail": "the file is empty"}),)))
        chunk: list[Checked] = []
        for line, cells, reason in records:
            chunk.append(self._row(line, cells, reason, columns))
            if len(chunk) >= BATCH_SIZE:
                yield from self._against_members(chunk)
                chunk = []
        if chunk:
            yield from self._against_members(chunk)

    def _row(self, line: int, cells: list[str] | None, reason: Reason | None,
             columns: list[str | None]) -> Checked:
        if cells is None:
            return Checked(line, "bad", problem=Problem(line, (reason or Reason("csv"),)))
        if _undecodable(cells):
            return Checked(line, "bad", problem=Problem(line, (Reason("encoding"),)))
        if len(cells) != len(columns) and not (
                len(cells) > len(columns) and not any(c.strip() for c in cells[len(columns):])):
            return Checked(line, "bad", problem=Problem(line, (Reason("columns", None, {
                "found": len(cells), "expected": len(columns)}),)))
        values = {column: cell.strip() for column, cell in zip(columns, cells, strict=False)
                  if column is not None}
        reasons: list[Reason] = []
        row = self._values(line, values, reasons)
        if reasons:
            return Checked(line, "bad", problem=Problem(line, tuple(reasons)))
        assert row is not None
        return Checked(line, "new", row=row)

    def _text(self, values: dict[str, str], column: str, reasons: list[Reason]) -> str | None:
        value = values.get(column) or None
        if value is None:
            if column in REQUIRED:
                reasons.append(Reason("required", column))
            return None
        if len(value) > LIMITS[column]:
            reasons.append(Reason("too-long", column, {"max": LIMITS[column]}))
            return None
        found = invisible_character(value) or (
            f"U+{ord(ch):04X}" if (ch := next((c for c in value if c < " "), None)) else None)
        if found:
            reasons.append(Reason("invisible", column, {"char": found}))
            return None
        return value

    def _values(self, line: int, values: dict[str, str], reasons: list[Reason]) -> Row | None:
        external_id = self._text(values, "external_id", reasons)
        name = self._text(values, "name", reasons)
        email = self._text(values, "email", reasons)
        if email is not None:
            try:
                _EMAIL(email)
            except ValidationError:
                reasons.append(Reason("email", "email"))
                email = None
            else:
                email = email.lower()
        phone = self._text(values, "phone", reasons)
        if phone is not None:
            try:
                _PHONE(phone)
            except ValidationError:
                reasons.append(Reason("phone", "phone"))
        language = (values.get("language") or "").lower() or self.program.default_language
        if language not in LANGUAGES:
            reasons.append(Reason("language", "language", {
                "value": values.get("language", ""), "choices": ", ".join(LANGUAGES)}))
        birthday = self._birthday(values.get("birthday") or "", reasons)
        tier_id, lifetime = self._tier(values.get("tier") or "", reasons)
        balance = self._balance(values.get("opening_balance") or "", reasons)
        expires_at = self._expiry(values.get("opening_balance_expires_at") or "", reasons)
        # Duplicates inside the file: the first row keeps the id (or address).
        if external_id is not None:
            first = self.external_ids.setdefault(external_id, line)
            if first != line:
                reasons.append(Reason("duplicate-external-id", "external_id",
                                      {"value": external_id, "line": first}))
        if email is not None:
            first = self.emails.setdefault(email, line)
            if first != line:
                reasons.append(Reason("duplicate-email", "email", {"value": email,
                                                                   "line": first}))
        if reasons:
            return None
        if balance and expires_at is None:
            expires_at = lots.expiry_for(self.now, self.program.points_expire_after_days)
        return Row(line=line, external_id=external_id or "", name=name or "", email=email,
                   phone=phone, language=language, birthday=birthday, tier_id=tier_id,
                   lifetime_points=lifetime, opening_balance=balance,
                   expires_at=expires_at if balance else None)

    def _birthday(self, value: str, reasons: list[Reason]) -> date | None:
        if not value:
            return None
        try:
            if not _ISO_DATE.match(value):
                raise ValueError
            birthday = date.fromisoformat(value)
        except ValueError:
            reasons.append(Reason("date", "birthday"))
            return None
        if birthday.year < 1900 or birthday > self.now.astimezone(self.zone).date():
            reasons.append(Reason("birthday-range", "birthday"))
            return None
        return birthday

    def _tier(self, value: str, reasons: list[Reason]) -> tuple[int | None, int]:
        if not value:
            return (self.base_tier.id if self.base_tier else None), 0
        tier = self.tiers.get(value.lower())
        if tier is None:
            reasons.append(Reason("tier", "tier", {"value": value}))
            return None, 0
        return tier.id, int(tier.threshold)

    def _balance(self, value: str, reasons: list[Reason]) -> int:
        if not value:
            return 0
        digits = value.replace("_", "")
        if not re.fullmatch(r"[+-]?\d{1,19}", digits):
            reasons.append(Reason("integer", "opening_balance"))
            return 0
        points = int(digits)
        if points < 0:
            reasons.append(Reason("negative", "opening_balance"))
        elif points > MAX_POINTS:
            reasons.append(Reason("too-large", "opening_balance", {"max": MAX_POINTS}))
        return points

    def _expiry(self, value: str, reasons: list[Reason]) -> datetime | None:
        if not value:
            return None
        try:
            if _ISO_DATE.match(value):
                # A date: the points last through that day, in the program's time zone.
                at = datetime.combine(date.fromisoformat(value) + timedelta(days=1),
                                      day_time(0), tzinfo=self.zone)
            elif "T" in value or " " in value:
                at = datetime.fromisoformat(value)
                if at.tzinfo is None:
                    at = at.replace(tzinfo=self.zone)
            else:
                raise ValueError
        except ValueError:
            reasons.append(Reason("expiry-format", "opening_balance_expires_at"))
            return None
        if at <= self.now:
            reasons.append(Reason("expiry-past", "opening_balance_expires_at"))
            return None
        return at.astimezone(UTC)

    def _against_members(self, chunk: list[Checked]) -> Iterator[Checked]:
        """The chunk's valid rows checked against the program's members: a known external id
        is ``unchanged``; an e-mail address of another member makes the row bad."""
        rows = [c.row for c in chunk if c.row is not None]
        if rows:
            known = set(db.session.scalars(select(Member.external_id).where(
                Member.program_id == self.program.id,
                _one_of(Member.external_id, [r.external_id for r in rows]))))
            emails = [r.email for r in rows if r.email and r.external_id not in known]
            taken = dict(db.session.execute(select(Member.email, Member.external_id).where(
                Member.program_id == self.program.id, _one_of(Member.email, emails))).all()
            ) if emails else {}
            for checked in chunk:
                row = checked.row
                if row is None:
                    continue
                if row.external_id in known:
                    checked.status = "unchanged"
                elif row.email in taken:
                    checked.status, checked.row = "bad", None
                    checked.problem = Problem(checked.line, (Reason(
                        "email-taken", "email", {"value": row.email}),))
        db.session.rollback()  # a read: hold no lock (SQLite) between chunks
        yield from chunk


def _one_of(column: Any, values: list[Any]) -> ColumnElement[bool]:
    """``column IN (values)`` as one parameter (on PostgreSQL an array, on SQLite a JSON
    list): a statement whose text is the same for any number of values, so neither
    SQLAlchemy nor the driver parses a new one per batch."""
    if db.session.get_bind().dialect.name == "postgresql":
        element = BigInteger() if isinstance(column.type, Integer) else Text()
        return column.in_(select(func.unnest(literal(values, ARRAY(element)))))
    return column.in_(select(literal_column("value")).select_from(
        func.json_each(literal(json.dumps(values), Text()))))


# --- The file ----------------------------------------------------------------------------

def digest(binary: IO[bytes]) -> tuple[str, int]:
    """The SHA-256 (hex) and size of the file, read to its end from where it is now."""
    sha, size = hashlib.sha256(), 0
    for block in iter(lambda: binary.read(1 << 20), b""):
        sha.update(block)
        size += len(block)
    return sha.hexdigest(), size


def check(program: Program, binary: IO[bytes], file_name: str,
          on_problem: Callable[[Problem], None] | None = None) -> Report:
    """A dry run: every row checked, nothing written. ``binary`` must be seekable (it is
    read again from its start)."""
    started = time.monotonic()
    binary.seek(0)
    sha, size = digest(binary)
    binary.seek(0)
    report = Report(file_name=file_name, sha256=sha, size=size, dry_run=True)
    for checked in Checker(program, timeutil.now()).rows(binary):
        _count(report, checked, on_problem)
    report.seconds = time.monotonic() - started
    return report


def _count(report: Report, checked: Checked, on_problem: Callable[[Problem], None] | None
           ) -> None:
    report.rows += 1
    if checked.status == "bad":
        assert checked.problem is not None
        report.bad += 1
        if len(report.problems) < MAX_PROBLEMS_KEPT:
            report.problems.append(checked.problem)
        if on_problem is not None:
            on_problem(checked.problem)
    elif checked.status == "unchanged":
        report.unchanged += 1
    else:
        report.new += 1


def start(program: Program, binary: IO[bytes], file_name: str, *,
          keep_data: bool = False, status: ImportStatus = ImportStatus.IMPORTING,
          report: Report | None = None) -> MemberImport:
    """The import's record (committed), with the file's name, SHA-256 and who imports it;
    with ``keep_data`` the file itself, for a background job (:func:`run_job`)."""
    binary.seek(0)
    sha, size = digest(binary)
    record = MemberImport(program_id=program.id, file_name=file_name[:255], sha256=sha,
                          size=size, actor=audit.current_actor().ref[:64], status=status)
    if report is not None:
        _store_counts(record, report)
    if keep_data:
        binary.seek(0)
        record.data = binary.read()
    db.session.add(record)
    db.session.commit()
    return record


def _store_counts(record: MemberImport, report: Report) -> None:
    record.rows_total, record.rows_bad = report.rows, report.bad
    record.rows_new, record.rows_unchanged = report.new, report.unchanged
    record.problems = [p.as_dict() for p in report.problems]


def run(program: Program, binary: IO[bytes], file_name: str, *,
        record: MemberImport | None = None,
        on_problem: Callable[[Problem], None] | None = None,
        on_progress: Callable[[Report], None] | None = None,
        batch_size: int = BATCH_SIZE) -> Report:
    """Import the file's valid new rows, in batches; the bad rows are reported (as a dry
    run reports them) and skipped.

    Each row is checked before it is written; each batch is committed with the import's
    progress (``rows_done``). Returns the report (its ``import_id`` is the record's, made
    here unless given: a console upload's)."""
    started = time.monotonic()
    if record is None:
        record = start(program, binary, file_name)
    else:
        record.status = ImportStatus.IMPORTING
        db.session.commit()
    report = Report(file_name=file_name, sha256=record.sha256, size=record.size, dry_run=False,
                    import_id=record.id)
    writer = _Writer(program, record, batch_size)
    binary.seek(0)
    try:
        batch: list[Row] = []
        for checked in Checker(program, timeutil.now()).rows(binary):
            _count(report, checked, on_problem)
            if checked.status == "new" and checked.row is not None:
                batch.append(checked.row)
            if len(batch) >= batch_size:
                writer.write(batch, report)
                batch = []
                if on_progress is not None:
                    on_progress(report)
        writer.write(batch, report)
        _finish(record, report, ImportStatus.DONE)
    except BaseException as error:
        db.session.rollback()
        _fail(record.id, str(error) if isinstance(error, BadFile) else repr(error))
        raise
    report.seconds = time.monotonic() - started
    log.info("import %s of program %s: %s rows, %s imported, %s unchanged, %s bad in %.1f s",
             record.id, program.id, report.rows, report.imported, report.unchanged,
             report.bad, report.seconds)
    return report


def _finish(record: MemberImport, report: Report, status: ImportStatus) -> None:
    _store_counts(record, report)
    record.rows_imported, record.points_imported = report.imported, report.points
    record.rows_done, record.status = report.rows, status
    record.finished_at, record.data = timeutil.utcnow(), None
    audit.record("members.import", program_id=record.program_id, target=f"import:{record.id}",
                 details={"file_name": record.file_name, "sha256": record.sha256,
                          "rows": report.rows, "imported": report.imported,
                          "unchanged": report.unchanged, "bad": report.bad,
                          "points": report.points})
    db.session.commit()


def _fail(import_id: int, error: str) -> None:
    db.session.execute(update(MemberImport).where(MemberImport.id == import_id).values(
        status=ImportStatus.FAILED, error=error[:2000], finished_at=timeutil.utcnow(),
        data=None))
    db.session.commit()


MEMBERS, CARDS = Member.__table__, Card.__table__
ENTRIES, LOTS = LedgerEntry.__table__, PointLot.__table__
RETRIES = 3


class _Writer:
    """Writes batches of valid rows: multi-row inserts, one transaction per batch."""

    def __init__(self, program: Program, record: MemberImport, batch_size: int) -> None:
        self.program, self.record, self.batch_size = program, record, batch_size
        self.dialect = db.session.get_bind().dialect.name
        self.actor = record.actor
        self.reference = f"import:{record.id}"

    def write(self, rows: list[Row], report: Report) -> None:
        if not rows:
            return
        for attempt in range(1, RETRIES + 1):
            try:
                imported, points = self._insert(rows)
                db.session.execute(update(MemberImport).where(
                    MemberImport.id == self.record.id).values(
                    rows_done=report.rows, rows_imported=report.imported + imported,
                    points_imported=report.points + points))
                db.session.commit()
            except (IntegrityError, psycopg.IntegrityError):  # (COPY runs on the driver)
                # A referral code drawn twice, or an external id or e-mail address taken since
                # the check (an import of the same file at once, an enrolment): again, with new
                # codes and without the rows that are no longer new.
                db.session.rollback()
                if attempt == RETRIES:
                    raise
                rows = self._still_new(rows, report)
                continue
            report.imported += imported
            report.points += points
            db.session.expire(self.record)
            return

    def _still_new(self, rows: list[Row], report: Report) -> list[Row]:
        """The rows still new: without those whose external id a member has now (an import
        of the same file running at once: ``unchanged``) or whose address is taken now."""
        pid = self.program.id
        known = set(db.session.scalars(select(Member.external_id).where(
            Member.program_id == pid, _one_of(Member.external_id, [r.external_id for r in rows]))))
        emails = [r.email for r in rows if r.email and r.external_id not in known]
        taken = set(db.session.scalars(select(Member.email).where(
            Member.program_id == pid, _one_of(Member.email, emails)))) if emails else set()
        db.session.rollback()
        kept = []
        for row in rows:
            if row.external_id in known:
                report.new -= 1
                report.unchanged += 1
            elif row.email in taken:
                report.new -= 1
                report.bad += 1
                problem = Problem(row.line, (Reason("email-taken", "email",
                                                    {"value": row.email}),))
                if len(report.problems) < MAX_PROBLEMS_KEPT:
                    report.problems.append(problem)
            else:
                kept.append(row)
        return kept

    def _insert(self, rows: list[Row]) -> tuple[int, int]:
        """Members, cards, opening entries and lots, outbox rows; (rows imported, points).
        The rows' external ids were found new when checked; one taken since (a concurrent
        import) fails the batch with an ``IntegrityError``, and :meth:`write` tries again."""
        if not rows:
            return 0, 0
        now, real_now = timeutil.now(), timeutil.utcnow()
        program_id, dialect = self.program.id, self.dialect
        member_ids = _bulk_insert(dialect, MEMBERS, _MEMBER_COLUMNS, [
            (program_id, r.name, r.email, r.phone, r.language, r.birthday, False, False,
             new_referral_code(), now, r.external_id) for r in rows])
        cards = []
        for r, member_id in zip(rows, member_ids, strict=True):
            card = card_fields(r.language, r.birthday, now)
            cards.append((program_id, member_id, card["serial_number"],
                          card["authentication_token"], card["barcode_secret"],
                          card["member_language"], card["member_birthday_month"],
                          card["member_joined_at"], 1, CardStatus.ACTIVE.value,
                          r.opening_balance, r.lifetime_points, r.tier_id, 1, real_now,
                          int(real_now.timestamp()), 0, 0, now))
        card_ids = _bulk_insert(dialect, CARDS, _CARD_COLUMNS, cards)
        with_points = [(card_id, r) for card_id, r in zip(card_ids, rows, strict=True)
                       if r.opening_balance > 0]
        if with_points:
            entry_ids = _bulk_insert(dialect, ENTRIES, _ENTRY_COLUMNS, [
                (card_id, EntryKind.ADJUST.value, r.opening_balance, 0, r.opening_balance,
                 self.actor, self.reference, OPENING_REASON, OPENING_KEY, now)
                for card_id, r in with_points])
            _bulk_insert(dialect, LOTS, _LOT_COLUMNS, [
                (card_id, entry_id, r.opening_balance, r.opening_balance, False, now,
                 r.expires_at, now)
                for (card_id, r), entry_id in zip(with_points, entry_ids, strict=True)])
        # Every wallet hears of the new cards through the outbox, as after an enrolment.
        changes.announce(select(CARDS.c.id).where(_one_of(CARDS.c.id, card_ids)),
                         new_cards=True)
        return len(rows), sum(r.opening_balance for _card, r in with_points)


# The columns each insert writes, in the order of its row tuples (the rest: their defaults).
_MEMBER_COLUMNS = ("program_id", "name", "email", "phone", "language", "birthday",
                   "consent_marketing", "consent_terms", "referral_code", "created_at",
                   "external_id")
_CARD_COLUMNS = ("program_id", "member_id", "serial_number", "authentication_token",
                 "barcode_secret", "member_language", "member_birthday_month",
                 "member_joined_at", "barcode_version", "status", "balance", "lifetime_points",
                 "tier_id", "version", "updated_at", "last_modified", "change_stamp",
                 "totp_last_counter", "created_at")
_ENTRY_COLUMNS = ("card_id", "kind", "points", "pending_points", "balance_after", "actor",
                  "reference", "reason", "idempotency_key", "created_at")
_LOT_COLUMNS = ("card_id", "entry_id", "points", "remaining", "pending", "available_at",
                "expires_at", "created_at")


def _bulk_insert(dialect: str, table: Table, columns: tuple[str, ...],
                 rows: list[tuple[Any, ...]]) -> list[int]:
    """Insert ``rows`` (tuples of the values of ``columns``) in one go; their new ids,
    in the rows' order.

    PostgreSQL: the ids are drawn from the table's sequence first, then the rows (with
    them) are sent with ``COPY ... FROM STDIN``, formatted by the driver's C code: no
    statement whose text grows with the batch, no per-row round trip. SQLite: one INSERT
    that SQLAlchemy's "insertmanyvalues" sends as multi-row VALUES, ``RETURNING`` the ids."""
    if not rows:
        return []
    if dialect == "postgresql":
        ids = [int(i) for i in db.session.scalars(
            select(func.nextval(func.pg_get_serial_sequence(table.name, "id")))
            .select_from(func.generate_series(1, len(rows))))]
        names = ", ".join(["id", *columns])
        cursor = db.session.connection().connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for new_id, row in zip(ids, rows, strict=True):
                copy.write_row((new_id, *row))
        return ids
    result = db.session.execute(
        dbutil.INSERT[dialect](table).returning(table.c.id, sort_by_parameter_order=True),
        [dict(zip(columns, row, strict=True)) for row in rows])
    return [int(new_id) for new_id in result.scalars()]


def run_job(import_id: int) -> None:
    """The background job of a console import: import the file the record holds."""
    record = db.session.get(MemberImport, import_id)
    if record is None or record.status is not ImportStatus.IMPORTING or record.data is None:
        return
    program = db.session.get(Program, record.program_id)
    assert program is not None
    audit.act_as(audit.Actor(record.actor, record.actor))
    data = io.BytesIO(record.data)
    try:
        run(program, data, record.file_name, record=record)
    except BadFile:
        return


def imports_of(program_id: int, limit: int = 20) -> list[MemberImport]:
    """The program's latest imports, newest first."""
    return list(db.session.scalars(select(MemberImport).where(
        MemberImport.program_id == program_id).order_by(MemberImport.id.desc()).limit(limit)))


def get(program_id: int, import_id: int) -> MemberImport | None:
    record = db.session.get(MemberImport, import_id)
    return record if record is not None and record.program_id == program_id else None

