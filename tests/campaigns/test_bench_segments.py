"""``benchmarks/bench_segments.py --members 3000``: the segments it times count what its data
says (the full size, 1,000,000 members, is run by hand; see benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = 3000


def _active(g: int) -> bool:
    return g % 100 != 0


def _birthday(g: int) -> date | None:
    return None if g % 5 == 0 else date(1970, 1, 1) + timedelta(days=g * 37 % 18000)


def test_small_run_counts_what_was_generated(postgres_database: Any) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_segments.py"),
                           "--members", str(MEMBERS), "--runs", "1"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    counts = {name: found["count"] for name, found in result["segments"].items()}
    members = range(1, MEMBERS + 1)
    assert counts["everyone"] == sum(_active(g) for g in members)
    assert counts["silver or gold, en or id"] == sum(
        _active(g) and g % 10 >= 6 and g % 4 in (0, 1) for g in members)
    assert counts["December birthdays on an iPhone"] == sum(
        _active(g) and g % 3 == 0 and (b := _birthday(g)) is not None and b.month == 12
        for g in members)
    assert counts["no wallet installed"] == sum(
        _active(g) and g % 3 != 0 and g % 8 != 0 for g in members)
    assert counts["points expiring within 14 days, balance 500+"] == sum(
        _active(g) and g % 2000 >= 500 and any(
            (g + j) % 3 != 0 and (g * 11 + j * 101) % 365 + 1 <= 14 for j in (1, 2))
        for g in members)
    # The last visit and the joining time: copies on the card, generated with the ledger's
    # entries and the members (visits j = 1..3 at ((g * 7 + j * 53) % 365) days and j hours
    # before the data's instant; joined (g % 730) days and g seconds before it).
    assert counts["lapsed: last visit over 90 days ago"] == sum(
        _active(g) and all((g * 7 + j * 53) % 365 >= 90 for j in (1, 2, 3)) for g in members)
    assert counts["joined this year, saved to Google"] == sum(
        _active(g) and g % 8 == 0 and (g % 730) * 86400 + g <= 334 * 86400 for g in members)
    assert all(isinstance(found["indexes"], list) for found in result["segments"].values())
