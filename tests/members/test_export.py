"""CSV exports of members and of the ledger (:mod:`app.members.exporting`): the API's
streamed downloads, ``pointpass export``, paging by id, and cells a spreadsheet would run as
formulas."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.cli.cli import cli
from app.members import exporting
from tests.factories import ApiClient, create_card, create_program

NASTY = ["=HYPERLINK(\"http://evil\")", "+1+1", "-2+3", "@SUM(A1)", "Plain"]


def _rows(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


@pytest.fixture
def program(api: ApiClient) -> dict[str, Any]:
    made = create_program(api)
    for i, name in enumerate(NASTY):
        card = create_card(api, made, name=name, email=f"p{i}@example.com")
        assert api.post(f"/api/v1/cards/{card['serial_number']}/earn", json={"points": 10 + i},
                        headers={"Idempotency-Key": f"e{i}"}).status_code == 201
    other = create_program(api, name="Other", slug="other")
    card = create_card(api, other, name="Not here")
    api.post(f"/api/v1/cards/{card['serial_number']}/earn", json={"points": 99},
             headers={"Idempotency-Key": "x"})
    return made


def test_members_csv_is_streamed_with_the_columns_and_no_formulas(
        api: ApiClient, program: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporting, "PAGE_SIZE", 2)  # several pages (keyset) for five members
    answer = api.get(f"/api/v1/programs/{program['id']}/members.csv")
    assert answer.status_code == 200
    assert answer.is_streamed
    assert answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="kopi-test-members.csv"'
    rows = _rows(answer.get_data())
    assert list(rows[0]) == list(exporting.MEMBER_COLUMNS)
    assert [r["name"] for r in rows] == [
        "'=HYPERLINK(\"http://evil\")", "'+1+1", "'-2+3", "'@SUM(A1)", "Plain"]
    assert [int(r["balance"]) for r in rows] == [10, 11, 12, 13, 14]
    assert [r["tier"] for r in rows] == ["Bronze"] * 5
    ids = [int(r["member_id"]) for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == 5
    # `after` resumes after a member id.
    rest = _rows(api.get(f"/api/v1/programs/{program['id']}/members.csv?after={ids[2]}")
                 .get_data())
    assert [int(r["member_id"]) for r in rest] == ids[3:]


def test_ledger_csv_has_the_programs_entries_only(api: ApiClient, program: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporting, "PAGE_SIZE", 4)
    answer = api.get(f"/api/v1/programs/{program['id']}/ledger.csv")
    assert answer.status_code == 200 and answer.is_streamed
    rows = _rows(answer.get_data())
    assert list(rows[0]) == list(exporting.LEDGER_COLUMNS)
    earns = [r for r in rows if r["kind"] == "earn"]
    assert sorted(int(r["points"]) for r in earns) == [10, 11, 12, 13, 14]
    assert "99" not in [r["points"] for r in rows]
    ids = [int(r["entry_id"]) for r in rows]
    assert ids == sorted(ids)
    first = rows[0]["created_at"]
    later = _rows(api.get(f"/api/v1/programs/{program['id']}/ledger.csv",
                          query_string={"from": "2999-01-01T00:00:00Z"}).get_data())
    assert later == []
    window = _rows(api.get(f"/api/v1/programs/{program['id']}/ledger.csv",
                           query_string={"from": first, "to": "2999-01-01T00:00:00+07:00"})
                   .get_data())
    assert [r["entry_id"] for r in window] == [r["entry_id"] for r in rows]


@pytest.mark.parametrize("query", [
    "after=-1", "after=x", "after=99999999999", "from=yesterday", "to=2026-13-01T00:00:00Z",
    "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from=0001-01-01T00:00:00Z",
])
def test_bad_queries_are_problems(api: ApiClient, program: dict[str, Any], query: str) -> None:
    answer = api.get(f"/api/v1/programs/{program['id']}/ledger.csv?{query}")
    assert answer.status_code == 422, answer.get_data()[:300]
    assert answer.mimetype == "application/problem+json"


def test_who_may_export(app: Flask, api: ApiClient, keys: dict[str, str],
                        program: dict[str, Any]) -> None:
    for path in ("members.csv", "ledger.csv"):
        url = f"/api/v1/programs/{program['id']}/{path}"
        assert api.as_(keys["marketer"]).get(url).status_code == 200
        for role in ("staff", "pos"):
            refused = api.as_(keys[role]).get(url)
            assert refused.status_code == 403
            assert refused.mimetype == "application/problem+json"
        assert api.as_(None).get(url).status_code == 401
        missing = api.get(f"/api/v1/programs/999999/{path}")
        assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_cli_export_writes_what_the_api_serves(app: Flask, api: ApiClient,
                                               program: dict[str, Any], tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    for what in ("members", "ledger"):
        out = tmp_path / f"{what}.csv"
        result = runner.invoke(cli, ["export", what, "--program", program["slug"],
                                     "--output", str(out)])
        assert result.exit_code == 0, result.output
        served = api.get(f"/api/v1/programs/{program['id']}/{what}.csv").get_data()
        assert out.read_bytes() == served
    to_stdout = runner.invoke(cli, ["export", "members", "--program", str(program["id"])])
    assert to_stdout.exit_code == 0
    assert "'+1+1" in to_stdout.output
    missing = runner.invoke(cli, ["export", "ledger", "--program", "nope"])
    assert missing.exit_code == 2 and "No program 'nope'" in missing.output


def test_safe_cell() -> None:
    assert exporting.safe_cell("=1") == "'=1"
    assert exporting.safe_cell(-5) == -5  # numbers stay numbers
    assert exporting.safe_cell(None) == ""
    assert exporting.safe_cell("a=b") == "a=b"
