"""The console's members import, as a browser posts it (SQLite and PostgreSQL): upload, the
dry run's report (nothing written), start, the background job and its progress, a second
start, bad files, the downloads, and another program's imports."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import background
from app.extensions import db
from app.loyalty import invariants
from app.loyalty.models import Member
from app.members.models import ImportStatus, MemberImport
from tests import members_csv
from tests.console.conftest import form_token, make_account, sign_in
from tests.factories import ApiClient, create_card, create_program
from tests.test_program_scope import database_state


@pytest.fixture
def program(api: ApiClient) -> dict[str, Any]:
    made = create_program(api)
    create_card(api, made, email=members_csv.TAKEN_EMAIL)
    return made


@pytest.fixture
def marketer(app: Flask, program: dict[str, Any]) -> FlaskClient:
    make_account(app, "m@example.com", "marketer", programs=[program["id"]])
    client = app.test_client()
    assert sign_in(client, "m@example.com").status_code == 303
    return client


def _upload(client: FlaskClient, program: dict[str, Any], data: bytes,
            name: str = "members.csv") -> Any:
    page = client.get(f"/console/programs/{program['id']}/members/import")
    assert page.status_code == 200
    return client.post(f"/console/programs/{program['id']}/members/import", data={
        "csrf_token": form_token(page.get_data(as_text=True)),
        "file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_upload_check_then_import_in_the_background(app: Flask, marketer: FlaskClient,
                                                    program: dict[str, Any]) -> None:
    out = io.BytesIO()
    made = members_csv.write(out, 60, 21)
    before = database_state(app)
    checked = _upload(marketer, program, out.getvalue())
    assert checked.status_code == 303
    page = marketer.get(checked.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    # The dry run wrote nothing but its record (holding the file until it is imported).
    after = database_state(app)
    assert {t for t in after if after[t] != before[t]} == {"member_imports"}
    for line in made.bad:
        assert f'<td class="number">{line}</td>' in html
    assert "Birthday is in the future or before 1900." in html
    assert "is also on line 2." in html
    assert f"Import {made.good} members" in html
    with app.app_context():
        record = db.session.scalar(select(MemberImport))
        assert record is not None and record.status is ImportStatus.CHECKED
        assert record.data == out.getvalue()
        import_id = record.id
        db.session.rollback()
    run_url = f"/console/programs/{program['id']}/members/imports/{import_id}/run"
    started = marketer.post(run_url, data={"csrf_token": form_token(html)})
    assert started.status_code == 303
    again = marketer.post(run_url, data={"csrf_token": form_token(html)})  # a second click
    assert again.status_code == 303
    with app.app_context():
        background.dispatcher().wait()
    progress = marketer.get(f"/console/programs/{program['id']}/members/imports/"
                            f"{import_id}/progress")
    text = progress.get_data(as_text=True)
    assert f"Done: {made.good} members imported with {made.points} points" in text
    assert "hx-get" not in text  # no more polling
    with app.app_context():
        record = db.session.get(MemberImport, import_id)
        assert record is not None and record.status is ImportStatus.DONE
        assert record.data is None and record.actor.startswith("account:")
        assert record.rows_imported == made.good
        assert db.session.scalar(select(func.count()).select_from(Member).where(
            Member.external_id.is_not(None))) == made.good  # imported once
        assert invariants.violations() == []


def test_a_running_import_is_polled(app: Flask, marketer: FlaskClient,
                                    program: dict[str, Any]) -> None:
    checked = _upload(marketer, program, b"external_id,name\n1,Ana\n")
    import_id = int(checked.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        record = db.session.get(MemberImport, import_id)
        assert record is not None
        record.status = ImportStatus.IMPORTING
        db.session.commit()
    page = marketer.get(checked.headers["Location"]).get_data(as_text=True)
    assert "hx-trigger=\"every 1s\"" in page and "Importing: 0 of 1 rows so far." in page


@pytest.mark.parametrize(("data", "message"), [
    (b"", "the file is empty"),
    (b"name,colour\nAna,red\n", "unknown column"),
])
def test_an_unusable_file_is_refused_on_the_page(app: Flask, marketer: FlaskClient,
                                                 program: dict[str, Any], data: bytes,
                                                 message: str) -> None:
    before = database_state(app)
    answer = _upload(marketer, program, data)
    assert answer.status_code == 422
    assert "Line 1: The header row is not usable: " + message in answer.get_data(as_text=True)
    assert database_state(app) == before


def test_no_file_and_too_large_a_file(app: Flask, marketer: FlaskClient,
                                      program: dict[str, Any]) -> None:
    page = marketer.get(f"/console/programs/{program['id']}/members/import")
    token = form_token(page.get_data(as_text=True))
    missing = marketer.post(f"/console/programs/{program['id']}/members/import",
                            data={"csrf_token": token}, content_type="multipart/form-data")
    assert missing.status_code == 422
    assert "Choose a CSV file." in missing.get_data(as_text=True)
    app.config["IMPORT_MAX_BYTES"] = 100
    large = _upload(marketer, program, b"external_id,name\n" + b"1,Ana\n" * 50)
    assert large.status_code == 413


def test_downloads_and_another_programs_imports(app: Flask, api: ApiClient,
                                                marketer: FlaskClient,
                                                program: dict[str, Any]) -> None:
    members = marketer.get(f"/console/programs/{program['id']}/members.csv")
    assert members.status_code == 200 and members.mimetype == "text/csv"
    assert members.get_data(as_text=True).splitlines()[0].startswith("\ufeffexternal_id,name")
    ledger = marketer.get(f"/console/programs/{program['id']}/ledger.csv")
    assert ledger.status_code == 200
    assert ledger.get_data(as_text=True).startswith("\ufeffentry_id,created_at")
    other = create_program(api, name="Other", slug="other")
    for path in ("members/import", "members.csv", "ledger.csv"):
        assert marketer.get(f"/console/programs/{other['id']}/{path}").status_code == 404
    checked = _upload(marketer, program, b"external_id,name\n1,Ana\n")
    import_id = checked.headers["Location"].rsplit("/", 1)[1]
    make_account(app, "o@example.com", "marketer", programs=[other["id"]])
    stranger = app.test_client()
    sign_in(stranger, "o@example.com")
    assert stranger.get(f"/console/programs/{other['id']}/members/imports/"
                        f"{import_id}").status_code == 404


@pytest.mark.redis
def test_a_real_rq_worker_runs_the_import(database: Any, tmp_path: Any) -> None:
    """With Redis the import goes to rq (with an hour's job timeout, not rq's 3 minutes) and
    ``pointpass worker --burst`` imports it."""
    import subprocess
    import sys
    from pathlib import Path

    from redis import Redis
    from rq import Queue

    from tests.factories import REDIS_URL, admin_api, make_worker_app

    for rq_app in make_worker_app(database, tmp_path):
        program = create_program(admin_api(rq_app))
        make_account(rq_app, "m@example.com", "marketer", programs=[program["id"]])
        client = rq_app.test_client()
        assert sign_in(client, "m@example.com").status_code == 303
        checked = _upload(client, program, b"external_id,name,balance\nA,Ana,40\nB,Budi,\n")
        page = client.get(checked.headers["Location"]).get_data(as_text=True)
        started = client.post(checked.headers["Location"] + "/run",
                              data={"csrf_token": form_token(page)})
        assert started.status_code == 303
        queue = Queue(rq_app.config["RQ_QUEUE"], connection=Redis.from_url(REDIS_URL))
        jobs = [job for job in queue.jobs if job.func_name.endswith("importing.run_job")]
        assert len(jobs) == 1 and jobs[0].timeout == 3600
        result = subprocess.run([Path(sys.executable).parent / "pointpass", "worker",
                                 "--burst"], env=rq_app.config["TEST_WORKER_ENV"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        with rq_app.app_context():
            record = db.session.scalar(select(MemberImport))
            assert record is not None and record.status is ImportStatus.DONE
            assert (record.rows_imported, record.points_imported) == (2, 40)
            assert invariants.violations() == []
