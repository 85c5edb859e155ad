"""``pointpass import members`` of a 100,000-row file with 37 bad rows, on PostgreSQL.

A scratch database gets one program (tiers Bronze and Silver, a member whose e-mail address
a bad row uses); the file (tests/members_csv.py: header variants and a BOM, bad rows of every
kind at known lines) is written to a temporary directory. Then, each as its own
``pointpass`` process (its peak RSS from ``os.wait4``):

1. ``--dry-run``: must list exactly the bad rows, and write nothing (row counts unchanged);
2. the import: must import every other row, with the ledger's invariants holding
   (``pointpass check-ledger``); its wall time, rows/s and peak RSS are the result;
3. the same file again: must import nothing (every row unchanged or bad).

    python benchmarks/bench_import.py [--rows 100000] [--bad 37]

The last line printed is JSON. Targets: under 60 s and under 300 MB for 100,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import BIN, bench_app, machine, scratch_postgres
from tests import members_csv

TABLES = ("members", "cards", "ledger_entries", "point_lots", "pass_outbox", "member_imports")


def pointpass(env: dict[str, str], *args: str) -> tuple[int, str, str, float, float]:
    """Run ``pointpass args``: (exit code, stdout, stderr, seconds, peak RSS in MB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen([BIN / "pointpass", *args], env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode(), err.read().decode(), seconds,
                usage.ru_maxrss / 1024)


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                for t in TABLES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bad", type=int, default=37)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with scratch_postgres() as url, tempfile.TemporaryDirectory() as folder:
        app = bench_app(url)
        with app.app_context():
            from app.enrollment.service import Enrollment, enroll
            from app.loyalty import programs

            program = programs.create(name="Import bench", slug="import-bench",
                                      currency="IDR", earn_points=1, earn_amount=100,
                                      points_expire_after_days=365,
                                      tiers=[{"name": "Bronze", "threshold": 0},
                                             {"name": "Silver", "threshold": 500}])
            enroll(program, Enrollment(name="Taken", email=members_csv.TAKEN_EMAIL))
            program_id = program.id
        path = Path(folder) / "members.csv"
        with path.open("wb") as out:
            made = members_csv.write(out, args.rows, args.bad)
        print(f"file: {args.rows} rows ({path.stat().st_size / 1e6:.1f} MB), "
              f"{len(made.bad)} bad, {made.good} good, {made.points} points")
        env = {**os.environ, "POINTPASS_DATABASE_URL": url, "POINTPASS_ENV": "development",
               "POINTPASS_INSTANCE_PATH": "/tmp/pointpass-bench-instance"}
        env.pop("POINTPASS_REDIS_URL", None)
        command = ["import", "members", str(path), "--program", str(program_id), "--json"]

        before = counts(url)
        code, out, _err, dry_seconds, dry_rss = pointpass(env, *command, "--dry-run")
        dry = json.loads(out.strip().splitlines()[-1])
        found = {p["line"]: p["reasons"][0]["code"] for p in dry["problems"]}
        assert code == 1 and found == made.bad, (code, set(found) ^ set(made.bad))
        assert counts(url) == before, "the dry run wrote something"
        print(f"dry run: {dry_seconds:.1f} s, {dry['bad']} bad rows listed (exactly the "
              f"expected ones), nothing written, peak RSS {dry_rss:.0f} MB")

        code, out, err, seconds, rss = pointpass(env, *command)
        assert code == 0, err[-2000:]
        report = json.loads(out.strip().splitlines()[-1])
        assert (report["imported"], report["bad"], report["points"]) == (
            made.good, len(made.bad), made.points), report
        after = counts(url)
        assert after["members"] - before["members"] == made.good
        check = subprocess.run([BIN / "pointpass", "check-ledger"], env=env,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout[-2000:]
        rate = made.good / seconds
        print(f"import: {report['imported']} rows in {seconds:.1f} s ({rate:,.0f} rows/s; "
              f"in-process {report['seconds']:.1f} s), peak RSS {rss:.0f} MB; "
              f"check-ledger clean")

        code, out, err, again_seconds, again_rss = pointpass(env, *command)
        assert code == 0, err[-2000:]
        rerun = json.loads(out.strip().splitlines()[-1])
        assert rerun["imported"] == 0 and rerun["unchanged"] == made.good, rerun
        changed = {t: n - after[t] for t, n in counts(url).items() if n != after[t]}
        assert changed == {"member_imports": 1}, changed
        print(f"rerun: {again_seconds:.1f} s, nothing imported ({rerun['unchanged']} "
              f"unchanged, {rerun['bad']} bad), peak RSS {again_rss:.0f} MB")
        result: dict[str, Any] = {
            "rows": args.rows, "bad": len(made.bad), "imported": report["imported"],
            "seconds": round(seconds, 2), "rows_per_second": round(rate),
            "peak_rss_mb": round(rss), "dry_run_seconds": round(dry_seconds, 2),
            "dry_run_peak_rss_mb": round(dry_rss), "rerun_seconds": round(again_seconds, 2),
            "under_60_s": seconds < 60, "under_300_mb": rss < 300}
        print(json.dumps(result))


if __name__ == "__main__":
    main()
