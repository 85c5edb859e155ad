#!/usr/bin/env bash
# Interleaved A/B of one benchmark: this checkout (A) against another checkout (B), pair by
# pair in alternating order (A B, B A, ...), so that the machine's drift (±30% on a 2-core VM)
# falls on both alike. Both run with this checkout's virtualenv and PostgreSQL.
# Usage: benchmarks/ab.sh OTHER_TREE BENCH PAIRS SECONDS OUT [bench args...]
#   e.g. benchmarks/ab.sh /work/wt-base bench_earn 20 6 ab_earn.log
#        (OTHER_TREE: `git worktree add /work/wt-base <commit>`)
# Prints each pair's A/B ratio of the service's requests/s and their median.
set -u
OTHER=$1; BENCH=$2; PAIRS=${3:-10}; SECS=${4:-6}; OUT=${5:-ab.log}; shift 5 || true
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY="$HERE/.venv/bin/python"
run() {  # $1 label $2 tree, then the benchmark's own arguments
  local label=$1 tree=$2; shift 2
  echo "== $label $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT"
  (cd "$tree" && PYTHONPATH="$tree" "$PY" "benchmarks/$BENCH.py" --seconds "$SECS" "$@" 2>&1 \
     | grep -E "^(floor|service:|  CPU|ratio)") >> "$OUT"
}
for i in $(seq 1 "$PAIRS"); do
  if (( i % 2 )); then run A "$HERE" "$@"; run B "$OTHER" "$@"
  else run B "$OTHER" "$@"; run A "$HERE" "$@"; fi
done
echo "== done $(date -u +%H:%M:%S)" >> "$OUT"
"$PY" - "$OUT" <<'PY'
import re, statistics, sys
rates = {"A": [], "B": []}
label = None
for line in open(sys.argv[1]):
    if line.startswith("== "):
        label = line.split()[1]
    elif line.startswith("service:") and label in rates:
        rates[label].append(float(re.search(r"([\d,.]+)/s", line).group(1).replace(",", "")))
ratios = [a / b for a, b in zip(rates["A"], rates["B"])]
print("A/B per pair:", " ".join(f"{r:.2f}" for r in ratios))
print(f"median {statistics.median(ratios):.3f} over {len(ratios)} pairs; "
      f"A median {statistics.median(rates['A']):.0f}/s, B median {statistics.median(rates['B']):.0f}/s")
PY
