#!/usr/bin/env bash
# Runs the runner-vs-hand-loop benchmark and prints the time ratio (goal: at most 1.2).
# Usage: scripts/bench-ratio.sh            (uses CARGO_TARGET_DIR or ./target)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p backfill-core --bench runner -- --noplot "$@"
dir="${CARGO_TARGET_DIR:-target}/criterion/runner_vs_hand_loop"
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
est = lambda name: json.load(open(f"{d}/{name}/new/estimates.json"))
r, h = est("runner"), est("hand_loop")
ratio = r["median"]["point_estimate"] / h["median"]["point_estimate"]
lo = r["median"]["confidence_interval"]["lower_bound"] / h["median"]["confidence_interval"]["upper_bound"]
hi = r["median"]["confidence_interval"]["upper_bound"] / h["median"]["confidence_interval"]["lower_bound"]
print(f"runner median {r['median']['point_estimate']/1e6:.2f} ms, hand loop median {h['median']['point_estimate']/1e6:.2f} ms")
print(f"ratio runner/hand_loop = {ratio:.3f} (95% CI bounds {lo:.3f}..{hi:.3f}); goal <= 1.2")
PY
