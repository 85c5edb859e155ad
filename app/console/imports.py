"""The console's members import and exports: upload a CSV file, read the dry run's report
(bad rows with their line numbers and reasons), then import it in a background job whose
progress the page polls (htmx); download the members and the ledger as CSV.

The upload is checked at once (:func:`app.members.importing.check`, nothing written) and kept
with its import record (status ``checked``) until the marketer starts the import; the job
(:func:`app.members.importing.run_job`) then reads it from there, so any worker can run it.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import update

from app import background
from app.console.pages import bp, console_page
from app.extensions import db
from app.loyalty.models import Program
from app.members import exporting, importing
from app.members.models import ImportStatus, MemberImport
from app.web.pagekit import PageForm

DEFAULT_MAX_BYTES = 20 * 1024 * 1024

# What each problem says (codes of app.members.importing.MESSAGES), in the page's language.
REASONS = {
    "header": _l("The header row is not usable: %(detail)s"),
    "required": _l("%(column)s is required."),
    "too-long": _l("%(column)s is longer than %(max)s characters."),
    "invisible": _l("%(column)s contains an invisible or control character (%(char)s)."),
    "email": _l("%(column)s is not a valid e-mail address."),
    "phone": _l("%(column)s is not a valid phone number."),
    "language": _l("%(column)s: unknown language “%(value)s” (one of %(choices)s)."),
    "date": _l("%(column)s is not a date written as YYYY-MM-DD."),
    "birthday-range": _l("%(column)s is in the future or before 1900."),
    "tier": _l("%(column)s: the program has no tier “%(value)s”."),
    "integer": _l("%(column)s is not a whole number."),
    "negative": _l("%(column)s is negative."),
    "too-large": _l("%(column)s is more than %(max)s."),
    "expiry-format": _l("%(column)s is not a date (YYYY-MM-DD) or a date and time."),
    "expiry-past": _l("%(column)s is in the past."),
    "duplicate-external-id": _l("%(column)s “%(value)s” is also on line %(line)s."),
    "duplicate-email": _l("%(column)s “%(value)s” is also on line %(line)s."),
    "email-taken": _l("%(column)s “%(value)s” belongs to another member of the program."),
    "columns": _l("The row has %(found)s cells; the header has %(expected)s."),
    "encoding": _l("The row has bytes that are not UTF-8."),
    "csv": _l("The row is not valid CSV."),
}
COLUMNS = {
    "external_id": _l("External id"), "name": _l("Name"), "email": _l("E-mail"),
    "phone": _l("Phone"), "language": _l("Language"), "birthday": _l("Birthday"),
    "tier": _l("Tier"), "opening_balance": _l("Opening balance"),
    "opening_balance_expires_at": _l("Opening balance expiry"),
}
STATUS_NAMES = {
    ImportStatus.CHECKED: _l("checked, not imported"), ImportStatus.IMPORTING: _l("importing"),
    ImportStatus.DONE: _l("imported"), ImportStatus.FAILED: _l("failed"),
}


def reason_text(reason: dict[str, Any]) -> str:
    """A problem's reason, in the page's language (English text for a code it lacks)."""
    template = REASONS.get(reason.get("code", ""))
    if template is None:
        return str(reason.get("message", ""))
    params = {key: str(value) for key, value in (reason.get("params") or {}).items()}
    column = reason.get("column")
    params["column"] = str(COLUMNS.get(column, column or ""))
    try:
        return str(template) % params
    except (KeyError, ValueError, TypeError):
        return str(reason.get("message", ""))


class UploadForm(PageForm):
    file = FileField(_l("CSV file"), validators=[FileRequired(_l("Choose a CSV file."))])


class StartForm(PageForm):
    """Starting a checked import: the CSRF token only."""


def max_bytes() -> int:
    """The largest file taken (``POINTPASS_IMPORT_MAX_BYTES``, 20 MiB)."""
    return int(current_app.config.get("IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


def _upload_limit() -> None:
    """The upload's own body limit, set before anything reads the form (the CSRF check
    does, in an earlier ``before_request`` function than any blueprint's)."""
    if request.endpoint == "console.member_import_upload":
        request.max_content_length = max_bytes()


def init_app(app: Flask) -> None:
    """Run :func:`_upload_limit` first of the app's ``before_request`` functions."""
    app.before_request_funcs.setdefault(None, []).insert(0, _upload_limit)


def _page(program: Program, form: UploadForm, status: int = 200,
          errors: list[str] | None = None) -> ResponseReturnValue:
    g.section = "console.members"
    return render_template("console/member_import.html", form=form, errors=errors or [],
                           imports=importing.imports_of(program.id),
                           status_names=STATUS_NAMES, max_mb=max_bytes() / 1024 / 1024,
                           columns=importing.COLUMNS), status


@bp.get("/programs/<int:program_id>/members/import")
@console_page
def member_import(program: Program) -> ResponseReturnValue:
    return _page(program, UploadForm(formdata=None))


@bp.post("/programs/<int:program_id>/members/import")
@console_page
def member_import_upload(program: Program) -> ResponseReturnValue:
    form = UploadForm()
    if not form.validate():
        return _page(program, form, 422)
    upload = form.file.data
    name = (upload.filename or "members.csv").rsplit("/", 1)[-1][:255]
    stream = upload.stream
    try:
        report = importing.check(program, stream, name)
    except importing.BadFile as error:
        reasons = [reason_text(r.as_dict()) for r in error.problem.reasons]
        return _page(program, form, 422, [
            _("Line %(line)s: %(reasons)s", line=error.problem.line, reasons=" ".join(reasons))])
    record = importing.start(program, stream, name, keep_data=True,
                             status=ImportStatus.CHECKED, report=report)
    return redirect(url_for("console.member_import_page", program_id=program.id,
                            import_id=record.id), 303)


def _record_or_404(program: Program, import_id: int) -> MemberImport:
    record = importing.get(program.id, import_id)
    if record is None:
        abort(404)
    return record


@bp.get("/programs/<int:program_id>/members/imports/<int:import_id>")
@console_page
def member_import_page(program: Program, import_id: int) -> ResponseReturnValue:
    g.section = "console.members"
    record = _record_or_404(program, import_id)
    return render_template("console/member_import_run.html", record=record,
                           start_form=StartForm(), status_names=STATUS_NAMES,
                           reason_text=reason_text, ImportStatus=ImportStatus)


@bp.get("/programs/<int:program_id>/members/imports/<int:import_id>/progress")
@console_page
def member_import_progress(program: Program, import_id: int) -> ResponseReturnValue:
    """The progress fragment (htmx polls it while the import runs)."""
    record = _record_or_404(program, import_id)
    return render_template("console/_import_progress.html", record=record,
                           status_names=STATUS_NAMES, ImportStatus=ImportStatus)


@bp.post("/programs/<int:program_id>/members/imports/<int:import_id>/run")
@console_page
def member_import_run(program: Program, import_id: int) -> ResponseReturnValue:
    """Start a checked import (once: a second click finds it started)."""
    record = _record_or_404(program, import_id)
    if not StartForm().validate():
        abort(400)
    started = db.session.execute(
        update(MemberImport).where(MemberImport.id == record.id,
                                   MemberImport.status == ImportStatus.CHECKED)
        .values(status=ImportStatus.IMPORTING))
    if started.rowcount:  # type: ignore[attr-defined]
        background.enqueue_after_commit(importing.run_job, record.id,
                                        timeout=importing.JOB_TIMEOUT)
    db.session.commit()
    return redirect(url_for("console.member_import_page", program_id=program.id,
                            import_id=record.id), 303)


def _download(pieces: Any, filename: str) -> Response:
    # End the view's transaction first: a slow download holds none (on SQLite a reader's
    # open transaction would keep writers waiting); each page reads in its own.
    db.session.commit()
    body = (piece.encode() for piece in pieces)
    return Response(stream_with_context(body), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store"})


@bp.get("/programs/<int:program_id>/members.csv")
@console_page
def members_download(program: Program) -> ResponseReturnValue:
    return _download(exporting.members_csv(program.id), f"{program.slug}-members.csv")


@bp.get("/programs/<int:program_id>/ledger.csv")
@console_page
def ledger_download(program: Program) -> ResponseReturnValue:
    return _download(exporting.ledger_csv(program.id), f"{program.slug}-ledger.csv")

