"""``pointpass import members``, ``pointpass export members|ledger`` and ``pointpass
erase-member`` (a member's right to erasure: the same service as
``DELETE /api/v1/members/<id>``, :func:`app.members.rights.erase`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import click
from flask.cli import with_appcontext

from app import audit
from app.errors import DomainError, MemberErased
from app.loyalty import programs
from app.loyalty.models import Program
from app.members import exporting, importing, rights


def _program(value: str) -> Program:
    """A program by its id or its slug."""
    try:
        return programs.get(int(value)) if value.isdigit() else programs.get_by_slug(value)
    except DomainError as error:
        raise click.BadParameter(error.detail, param_hint="--program") from None


PROGRAM = click.option("--program", "program_ref", required=True, metavar="ID",
                       help="The program's numeric id or its slug.")


@click.group("import")
def import_group() -> None:
    """Import members from a CSV file."""


@import_group.command("members")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@PROGRAM
@click.option("--dry-run", is_flag=True,
              help="Check every row and report the bad ones; write nothing. Exits 1 when a "
              "row is bad.")
@click.option("--json", "as_json", is_flag=True, help="End with the report as one JSON line.")
@with_appcontext
def import_members(file: Path, program_ref: str, dry_run: bool, as_json: bool) -> None:
    """Import the members of FILE (CSV with a header row: external_id, name, email, phone,
    language, birthday, tier, opening_balance, opening_balance_expires_at).

    Every row is checked first (nothing written yet) and the bad ones are listed with their
    line number and reasons; then the others are imported in batches, with progress. A row
    whose external_id the program knows is left alone, so running the same file again
    changes nothing."""
    audit.act_as(audit.CLI)
    program = _program(program_ref)

    def problem(found: importing.Problem) -> None:
        click.echo(f"line {found.line}: {found.text}", err=True)

    def progress(report: importing.Report) -> None:
        click.echo(f"... {report.rows} rows read, {report.imported} imported", err=True)

    with file.open("rb") as binary:
        try:
            report = importing.check(program, binary, file.name, on_problem=problem)
            if not dry_run:
                click.echo(f"Checked {report.rows} rows: {report.bad} bad (listed above, "
                           f"skipped), {report.new} to import.", err=True)
                # The bad rows were listed by the check: the import skips them quietly.
                report = importing.run(program, binary, file.name, on_progress=progress)
        except importing.BadFile as error:
            raise click.ClickException(f"{file.name}, line {error.problem.line}: "
                                       f"{error.problem.text}") from None
    if dry_run:
        click.echo(f"Dry run of {file.name} (sha256 {report.sha256}): {report.rows} rows, "
                   f"{report.new} to import, {report.unchanged} already imported (their "
                   f"external id is known), {report.bad} bad. Nothing was written.")
    else:
        click.echo(f"Import #{report.import_id} of {file.name} (sha256 {report.sha256}): "
                   f"{report.rows} rows, {report.imported} imported ({report.points} points), "
                   f"{report.unchanged} already imported, {report.bad} bad, in "
                   f"{report.seconds:.1f} s.")
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    if dry_run and report.bad:
        sys.exit(1)


@click.group("export")
def export_group() -> None:
    """Export a program's members or ledger as CSV."""


OUTPUT = click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                      help="Write to this file (default: standard output).")


def _write(pieces: Iterable[str], output: Path | None) -> None:
    if output is None:
        for piece in pieces:
            sys.stdout.write(piece)
        sys.stdout.flush()
        return
    with output.open("w", encoding="utf-8", newline="") as out:
        for piece in pieces:
            out.write(piece)


@export_group.command("members")
@PROGRAM
@OUTPUT
@with_appcontext
def export_members(program_ref: str, output: Path | None) -> None:
    """The program's members, one row each with their card (oldest first)."""
    _write(exporting.members_csv(_program(program_ref).id), output)


@export_group.command("ledger")
@PROGRAM
@OUTPUT
@with_appcontext
def export_ledger(program_ref: str, output: Path | None) -> None:
    """The program's ledger entries, oldest first."""
    _write(exporting.ledger_csv(_program(program_ref).id), output)


@click.command("erase-member")
@click.argument("member_id", type=click.IntRange(min=1))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@with_appcontext
def erase_member(member_id: int, yes: bool) -> None:
    """Erase the personal data of member MEMBER_ID: they become a pseudonymous record, their
    card is voided and its passes expire; the ledger keeps its amounts. Asks first (it cannot
    be undone). Erasing an erased member changes nothing (and says so)."""
    audit.act_as(audit.CLI)
    if not yes:
        click.confirm(f"Erase member {member_id}'s personal data? Their card is voided for "
                      "good; this cannot be undone.", abort=True, err=True)
    try:
        erasure = rights.erase(member_id)
    except MemberErased as error:
        click.echo(f"Nothing to do: {error.detail}")
        return
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    card = f", card {erasure.serial_number} voided" if erasure.serial_number else ""
    click.echo(f"Erased member {erasure.member_id} of program {erasure.program_id}{card}; "
               f"{erasure.devices_deleted} Apple device(s) deleted, "
               f"{erasure.texts_scrubbed} text(s) scrubbed.")


COMMANDS = [import_group, export_group, erase_member]
