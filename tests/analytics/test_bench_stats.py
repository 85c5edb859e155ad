"""``benchmarks/bench_stats.py --generate-only --check-ledger`` at a small size: the data the
stats benchmark generates keeps the ledger's invariants and has the mix it claims (the
benchmark itself, at 1,000,000 members, is run by hand; see benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = 2000


def test_generated_ledger_is_consistent_and_mixed(postgres_database: Any) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_stats.py"),
                           "--members", str(MEMBERS), "--chunk", "700", "--generate-only",
                           "--check-ledger"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ledger_violations"] == 0, result["ledger_violation_examples"]
    assert result["latest_balance_after_mismatches"] == 0
    rows, kinds = result["rows"], result["entries_by_kind"]
    assert rows["members"] == rows["cards"] == MEMBERS
    # 20 entries per member on average (blocks of five, 1-7 per card), a few more for
    # reversals and expiries.
    assert 19 * MEMBERS <= rows["ledger_entries"] <= 22 * MEMBERS
    for kind in ("earn", "bonus", "redeem", "refund", "expire", "adjust", "reverse"):
        assert kinds.get(kind, 0) > 0, kind
    assert kinds["earn"] > rows["ledger_entries"] / 2
    assert rows["redemptions"] == kinds["redeem"]
    # A lot per credit: every earn, bonus and reversal, and the positive adjustments.
    credits = kinds["earn"] + kinds["bonus"] + kinds["reverse"]
    assert credits < rows["point_lots"] < credits + kinds["adjust"]
    for table in ("feedback_invitations", "wallet_events", "apple_registrations",
                  "google_objects", "lot_consumptions"):
        assert rows[table] > 0, table
