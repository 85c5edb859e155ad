"""The audit trail in the console: a program's records (its section "Audit trail"), and every
record for admins (including those of no program, such as accounts). Newest first, 50 a page,
paged back with ``?before=<id>``; the same reading as ``GET /api/v1/audit``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l

from app import access, audit
from app.console import pages
from app.console.pages import bp, console_page
from app.loyalty import programs
from app.loyalty.models import Program

PAGE_SIZE = 50

pages.section(_l("Audit trail"), "console.program_audit")
pages.section(_l("Audit trail (all)"), "console.audit", admin=True, program=False)


def _before() -> int | None:
    value = request.args.get("before", "")
    return int(value) if value.isdigit() and 0 < int(value) < 2**63 else None


def _page(program_id: int | None) -> tuple[Sequence[audit.AuditEvent], int | None]:
    found = audit.events(program_ids=access.current().program_ids, program_id=program_id,
                         before_id=_before(), limit=PAGE_SIZE + 1)
    older = found[PAGE_SIZE - 1].id if len(found) > PAGE_SIZE else None
    return found[:PAGE_SIZE], older


def _details(details: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A record's details as name, value pairs to show."""
    return [(name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
            for name, value in (details or {}).items()]


@bp.get("/programs/<int:program_id>/audit")
@console_page
def program_audit(program: Program) -> ResponseReturnValue:
    events, older = _page(program.id)
    return render_template("console/audit.html", events=events, older=older,
                           details=_details, whole=False)


@bp.get("/audit", endpoint="audit")
@console_page(admin=True)
def audit_page() -> ResponseReturnValue:
    events, older = _page(None)
    names = {p.id: p.name for p in programs.all_programs()}
    return render_template("console/audit.html", events=events, older=older,
                           details=_details, whole=True, program_names=names)

