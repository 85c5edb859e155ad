"""The record of a members import (:mod:`app.members.importing`)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column

from app.extensions import db, stored_enum
from app.timeutil import UTCDateTime, utcnow


class ImportStatus(enum.StrEnum):
    CHECKED = "checked"  # uploaded and dry-run in the console, waiting to be imported
    IMPORTING = "importing"
    DONE = "done"
    FAILED = "failed"


class MemberImport(db.Model):
    """One import of a members file: which file (name, SHA-256), who, what it found and did.

    The opening balances it gives are ledger entries with ``reference`` ``import:<id>``.
    ``problems`` holds the first bad rows (line and reasons); ``rows_done`` is the progress
    (rows checked or written so far) a console page polls. ``data`` is the uploaded file
    while a console import waits for or runs in its background job, emptied when it ends.
    """

    __tablename__ = "member_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    file_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    actor: Mapped[str] = mapped_column(String(64))
    status: Mapped[ImportStatus] = mapped_column(stored_enum(ImportStatus, "import_status"))
    rows_total: Mapped[int] = mapped_column(default=0)
    rows_bad: Mapped[int] = mapped_column(default=0)
    rows_new: Mapped[int] = mapped_column(default=0)  # valid rows with a new external id
    rows_unchanged: Mapped[int] = mapped_column(default=0)  # their external id is known
    rows_imported: Mapped[int] = mapped_column(default=0)
    rows_done: Mapped[int] = mapped_column(default=0)
    points_imported: Mapped[int] = mapped_column(BigInteger, default=0)
    problems: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    data: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_member_imports_program_id_id", "program_id", "id"),)
