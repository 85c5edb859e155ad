#!/usr/bin/env bash
# Interleaved earn A/B of what /metrics and request ids cost (benchmarks/RESULTS.md, issue 14).
# A = this checkout; B = a second checkout of the same commit at $MINUS (default
# /work/wt-minus) with the two features removed: drop `metrics.init_app(app)` from
# app/__init__.py, the `RequestIdMiddleware` line from app/logs.py, the
# `telemetry.POSTINGS[...]` line from app/loyalty/ledger.py, and everything from
# `def on_starting` down in app/gunicorn_conf.py.
# Usage: benchmarks/ab_metrics_cost.sh PAIRS SECONDS OUT
set -u
PAIRS=${1:-8}; SECS=${2:-6}; OUT=${3:-ab_metrics_cost.log}
HERE=$(cd "$(dirname "$0")/.." && pwd); MINUS=${MINUS:-/work/wt-minus}
PY="$HERE/.venv/bin/python"
run() {  # $1 label $2 tree
  for p in $(pgrep postgres); do renice -n -20 -p $p >/dev/null; done
  echo "== $1 $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT"
  (cd "$2" && PYTHONPATH="$2" nice -n -20 "$PY" benchmarks/bench_earn.py --seconds "$SECS" 2>&1 \
     | grep -E "^(floor|service|  CPU|ratio)") >> "$OUT"
}
for i in $(seq 1 "$PAIRS"); do
  if (( i % 2 )); then run main "$HERE"; run minus "$MINUS"
  else run minus "$MINUS"; run main "$HERE"; fi
done
for p in $(pgrep postgres); do renice -n 0 -p $p >/dev/null; done
echo "== done $(date -u +%H:%M:%S)" >> "$OUT"
# The ratios, pair by pair and their median: main's earns/s over the other's.
"$PY" - "$OUT" <<'PY'
import re, statistics, sys
rates = {"main": [], "minus": []}
label = None
for line in open(sys.argv[1]):
    if line.startswith("== "):
        label = line.split()[1]
    elif line.startswith("service:") and label in rates:
        rates[label].append(int(re.search(r"(\d+)/s", line).group(1)))
ratios = [a / b for a, b in zip(rates["main"], rates["minus"])]
print("main/without per pair:", " ".join(f"{r:.2f}" for r in ratios))
print(f"median {statistics.median(ratios):.3f} over {len(ratios)} pairs")
PY

