"""Importing members from CSV (``pointpass import members``, :mod:`app.members.importing`):
the dry run finds exactly the bad rows and writes nothing; the import writes the others with
their opening balances as ledger entries and lots (the invariants hold); a rerun changes
nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.audit import AuditEvent
from app.cli.cli import cli
from app.extensions import db
from app.loyalty import invariants
from app.loyalty.models import Card, EntryKind, LedgerEntry, Member, PointLot, Program, Tier
from app.members import importing
from app.members.models import ImportStatus, MemberImport
from tests import members_csv
from tests.factories import ApiClient, create_card, create_program
from tests.test_program_scope import database_state

ROWS, BAD = 300, 42  # every kind of bad row twice


@pytest.fixture
def program(api: ApiClient) -> dict[str, Any]:
    made = create_program(api, points_expire_after_days=365)
    create_card(api, made, email=members_csv.TAKEN_EMAIL, name="Already here")
    return made


@pytest.fixture
def members_file(tmp_path: Path) -> tuple[Path, members_csv.MembersFile]:
    path = tmp_path / "members.csv"
    with path.open("wb") as out:
        made = members_csv.write(out, ROWS, BAD)
    return path, made


def _import(app: Flask, program: dict[str, Any], path: Path, *extra: str) -> Any:
    return app.test_cli_runner().invoke(cli, ["import", "members", str(path), "--program",
                                              str(program["id"]), "--json", *extra])


def _report(result: Any) -> dict[str, Any]:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dry_run_lists_exactly_the_bad_rows_and_writes_nothing(
        app: Flask, program: dict[str, Any],
        members_file: tuple[Path, members_csv.MembersFile]) -> None:
    path, made = members_file
    before = database_state(app)
    result = _import(app, program, path, "--dry-run")
    assert result.exit_code == 1, result.output  # bad rows: a script can stop here
    report = _report(result)
    found = {p["line"]: p["reasons"][0]["code"] for p in report["problems"]}
    assert found == made.bad
    assert len(made.bad) == BAD
    assert set(code for code, _ in members_csv.BAD_KINDS) <= set(found.values())
    assert (report["rows"], report["new"], report["unchanged"], report["bad"]) == (
        ROWS, ROWS - BAD, 0, BAD)
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # Each bad row is also printed with its line number and why.
    assert f"line {min(made.bad)}: " in result.stderr
    assert "is also on line 2" in result.output
    assert database_state(app) == before


def test_import_writes_members_cards_balances_and_a_rerun_changes_nothing(
        app: Flask, program: dict[str, Any],
        members_file: tuple[Path, members_csv.MembersFile]) -> None:
    path, made = members_file
    result = _import(app, program, path)
    assert result.exit_code == 0, result.output
    # Every row is checked first: the bad ones are all listed (once) before anything is
    # imported.
    listed = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert len(listed) == BAD
    checked = result.stderr.index(f"Checked {ROWS} rows: {BAD} bad")
    assert result.stderr.rindex("\nline ") < checked
    report = _report(result)
    good = ROWS - BAD
    assert (report["imported"], report["unchanged"], report["bad"]) == (good, 0, BAD)
    assert report["points"] == made.points
    with app.app_context():
        assert invariants.violations() == []
        record = db.session.get(MemberImport, report["import_id"])
        assert record is not None
        assert record.status is ImportStatus.DONE
        assert (record.rows_total, record.rows_imported, record.rows_bad,
                record.points_imported) == (ROWS, good, BAD, made.points)
        assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert record.file_name == "members.csv" and record.actor == "cli"
        assert record.data is None
        pid = program["id"]
        members = db.session.scalar(select(func.count()).select_from(Member).where(
            Member.program_id == pid, Member.external_id.is_not(None)))
        assert members == good
        # Opening balances: one adjust entry naming the import and one lot per card.
        with_points = db.session.scalar(select(func.count()).select_from(Card).where(
            Card.program_id == pid, Card.balance > 0))
        entries = db.session.execute(select(LedgerEntry.kind, LedgerEntry.reference,
                                            LedgerEntry.idempotency_key, LedgerEntry.actor,
                                            func.count(), func.sum(LedgerEntry.points))
                                     .group_by(LedgerEntry.kind, LedgerEntry.reference,
                                               LedgerEntry.idempotency_key, LedgerEntry.actor)
                                     ).all()
        assert entries == [(EntryKind.ADJUST, f"import:{record.id}", "import:opening", "cli",
                            with_points, made.points)]
        assert db.session.scalar(select(func.count()).select_from(PointLot)) == with_points
        assert db.session.scalar(select(func.sum(PointLot.remaining))) == made.points
        # One row, checked field by field: M12 (Silver, "2099-12-31" expiry, a phone).
        silver = db.session.scalar(select(Tier).where(Tier.name == "Silver",
                                                      Tier.program_id == pid))
        assert silver is not None
        member = db.session.scalar(select(Member).where(Member.external_id == "M12"))
        assert member is not None
        card = member.card
        assert (member.name, member.email, member.phone, member.language, member.birthday) == (
            "Member 12", "m12@example.com", "+66 81 234 5678", "en", None)
        assert card.balance == 12 and card.tier_id == silver.id
        lot = db.session.scalar(select(PointLot).where(PointLot.card_id == card.id))
        assert lot is not None and lot.expires_at is not None
        assert lot.expires_at.isoformat() == "2100-01-01T00:00:00+00:00"  # through 2099-12-31
        assert card.lifetime_points == silver.threshold  # keeps Silver at the next earn
        m5 = db.session.scalar(select(Member).where(Member.external_id == "M5"))
        assert m5 is not None and m5.birthday is not None and m5.card.balance == 5
        assert m5.card.tier is not None and m5.card.tier.name == "Bronze"
        assert (m5.language, m5.card.member_birthday_month) == ("en", 2)
        m5_lot = db.session.scalar(select(PointLot).where(PointLot.card_id == m5.card.id))
        assert m5_lot is not None and m5_lot.expires_at is not None  # the program's 365 days
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "members.import")) == 1
        db.session.rollback()
    before = database_state(app)
    again = _import(app, program, path)
    assert again.exit_code == 0, again.output
    rerun = _report(again)
    assert (rerun["imported"], rerun["unchanged"], rerun["bad"]) == (0, good, BAD)
    after = database_state(app)
    # Only the rerun's own record and its audit event are new.
    changed = {table for table in after if after[table] != before[table]}
    assert changed == {"member_imports", "audit_events"}


def test_the_api_shows_an_imported_card(app: Flask, api: ApiClient, program: dict[str, Any],
                                        tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("external_id,name,balance\nX-1,Ana,250\n", encoding="utf-8")
    assert _import(app, program, path).exit_code == 0
    with app.app_context():
        serial = db.session.scalar(select(Card.serial_number).join(Member).where(
            Member.external_id == "X-1"))
        db.session.rollback()
    shown = api.get(f"/api/v1/cards/{serial}")
    assert shown.status_code == 200
    assert shown.json["available_points"] == 250
    earned = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5},
                      headers={"Idempotency-Key": "k1"})
    assert earned.status_code == 201 and earned.json["balance"] == 255
    with app.app_context():
        assert invariants.violations() == []


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"name,colour\nAna,red\n", "unknown column 'colour'"),
    (b"name,email\nAna,a@example.com\n", "missing column external_id"),
    (b"id,name,Name\n1,a,b\n", "appears twice"),
])
def test_a_file_without_a_usable_header_is_refused(app: Flask, program: dict[str, Any],
                                                   tmp_path: Path, content: bytes,
                                                   message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    before = database_state(app)
    result = _import(app, program, path)
    assert result.exit_code == 1
    assert message in result.output
    after = database_state(app)
    # The import's record says it failed; nothing else was written.
    assert {t for t in after if after[t] != before[t]} <= {"member_imports"}
    with app.app_context():
        statuses = db.session.scalars(select(MemberImport.status)).all()
        assert all(s is ImportStatus.FAILED for s in statuses)


def test_unknown_program_and_slug(app: Flask, program: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("external_id,name\n1,Ana\n")
    runner = app.test_cli_runner()
    missing = runner.invoke(cli, ["import", "members", str(path), "--program", "999"])
    assert missing.exit_code == 2 and "No program with id 999" in missing.output
    by_slug = runner.invoke(cli, ["import", "members", str(path), "--program",
                                  program["slug"]])
    assert by_slug.exit_code == 0, by_slug.output
    assert "1 imported" in by_slug.output


def test_variants_bom_crlf_header_names_and_extra_empty_cells(
        app: Flask, program: dict[str, Any]) -> None:
    data = ("\ufeff External-ID ,Full Name,E-Mail Address,Points,Expiry,\r\n"
            'A1,"Lee, Ana",ANA@Example.com,10,2099-01-01T10:00:00+07:00,\r\n'
            "\r\n"
            "A2,Budi,,=1+2,,\r\n").encode()
    with app.app_context():
        found = db.session.get(Program, program["id"])
        assert found is not None
        report = importing.check(found, io.BytesIO(data), "v.csv")
        assert (report.rows, report.new, report.bad) == (2, 1, 1)
        assert report.problems[0].line == 4
        assert report.problems[0].reasons[0].code == "integer"
        done = importing.run(found, io.BytesIO(data), "v.csv")
        assert done.imported == 1 and done.points == 10
        member = db.session.scalar(select(Member).where(Member.external_id == "A1"))
        assert member is not None and member.email == "ana@example.com"
        assert member.name == "Lee, Ana"
        assert invariants.violations() == []


def test_two_imports_of_one_file_at_once_import_each_row_once(
        pg_app: Flask, tmp_path: Path) -> None:
    """Both check the same rows as new; the second to write a batch meets the first's
    members (the unique external id), rolls back and writes only what is still new."""
    import threading

    from tests.factories import admin_api

    made_program = create_program(admin_api(pg_app))
    path = tmp_path / "both.csv"
    with path.open("wb") as out:
        made = members_csv.write(out, 2500, 0)
    reports: list[importing.Report] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            with pg_app.app_context():
                program = db.session.get(Program, made_program["id"])
                assert program is not None
                start.wait()
                with path.open("rb") as binary:
                    reports.append(importing.run(program, binary, "both.csv"))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sum(r.imported for r in reports) == made.good
    assert sum(r.unchanged for r in reports) == made.good
    assert sum(r.points for r in reports) == made.points
    with pg_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Member)) == made.good
        assert invariants.violations() == []
