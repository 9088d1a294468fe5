#!/usr/bin/env bash
# Workload R1 (backfill-core/benches/runner.rs): the runner against today's hand loop and against the
# floor loop, as medians over several runs of the benchmark, with their range.
#
# Usage: scripts/bench-ratio.sh [--runs N] [--clock wall|cpu] [--baseline REV] [-- criterion args...]
#   --runs N        runs of the benchmark binary (default 3, at least 3)
#   --clock cpu     measure the benchmarking thread's CPU time instead of wall time (BENCH_CLOCK=cpu):
#                   use it on a shared, busy machine, where wall time counts waiting for a core
#   --baseline REV  also build the benchmark as of git revision REV (exported with `git archive` into a
#                   temporary directory; no worktree), or from the source tree in directory REV, and
#                   run it alternately with the current tree, so baseline and candidate are measured
#                   in the same session under the same load
# Uses CARGO_TARGET_DIR (or ./target), the baseline its subdirectory bench-baseline; criterion's
# reports go to a temporary directory.
# Goals: runner/hand_loop time ratio <= 1.2; runner >= 2.5 M rows/s.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3
clock=wall
baseline=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --clock) clock="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [ "$runs" -lt 3 ]; then echo "--runs must be at least 3" >&2; exit 2; fi
case "$clock" in wall|cpu) ;; *) echo "--clock is wall or cpu" >&2; exit 2 ;; esac
export CARGO_TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Builds the benchmark in directory $1 with target directory $2 and copies its executable to $3. The
# baseline builds into a target directory of its own: two source trees of the same workspace share
# artifact names, and cargo may take one tree's build as up to date for the other.
build() {
  cp "$(CARGO_TARGET_DIR="$2" build_exe "$1")" "$3"
}

build_exe() {
  (cd "$1" && cargo bench -p backfill-core --bench runner --no-run --message-format=json) |
    python3 -c '
import json, sys
exe = [m["executable"] for m in map(json.loads, sys.stdin)
       if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "runner"]
print(exe[-1])'
}

sides="candidate"
echo "building the candidate (working tree)" >&2
build . "$CARGO_TARGET_DIR" "$work/candidate.exe"
if [ -n "$baseline" ]; then
  echo "building the baseline ($baseline)" >&2
  if [ -d "$baseline" ]; then
    src="$(realpath "$baseline")"
  else
    src="$work/src"
    mkdir "$src"
    git archive "$baseline" | tar -x -C "$src"
  fi
  build "$src" "$CARGO_TARGET_DIR/bench-baseline" "$work/baseline.exe"
  sides="baseline candidate"
fi

for i in $(seq 1 "$runs"); do
  for side in $sides; do
    echo "run $i/$runs: $side" >&2
    BENCH_CLOCK="$clock" CRITERION_HOME="$work/$side/$i" "$work/$side.exe" --bench --noplot "$@" 2>&1 |
      tee "$work/$side.$i.log" >&2
    if ! grep -q "R1 clock: $clock" "$work/$side.$i.log"; then
      echo "warning: the $side benchmark does not support --clock $clock; it measured wall time" >&2
      echo "$side" >> "$work/wall-only"
    fi
  done
done

python3 - "$work" "$runs" "$sides" "$baseline" "$clock" <<'PY'
import json, os, statistics, sys

work, runs, sides, baseline, clock = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], sys.argv[5]
wall_only = open(f"{work}/wall-only").read().split() if os.path.exists(f"{work}/wall-only") else []
group = "runner_vs_hand_loop"

def load(side, i, name):
    d = f"{work}/{side}/{i}/{group}/{name}/new"
    if not os.path.exists(f"{d}/estimates.json"):
        return None
    median = json.load(open(f"{d}/estimates.json"))["median"]["point_estimate"]  # ns per iteration
    rows = json.load(open(f"{d}/benchmark.json"))["throughput"]["Elements"]
    return median, rows

def summary(values, fmt):
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}..{fmt(max(values))})"

data = {}
rows = None
for side in sides:
    for name in ("runner", "hand_loop", "floor"):
        got = [load(side, i, name) for i in range(1, runs + 1)]
        if all(got):
            data[(side, name)] = [g[0] for g in got]
            rows = got[0][1]

print(f"R1: {rows:,} rows per iteration; medians of {runs} runs (range min..max); per run, criterion's median")
clocks = {s: ("wall" if s in wall_only else clock) for s in sides}
print("clock: " + ", ".join(f"{s} {c}" + (" time" if c == "wall" else " (thread CPU time)") for s, c in clocks.items()))
print(f"{'':<24}{'time (ms)':<26}{'M rows/s':<22}")
for (side, name), ns in data.items():
    label = f"{side} {name}" if baseline else name
    print(f"{label:<24}{summary([v / 1e6 for v in ns], lambda x: f'{x:.2f}'):<26}"
          f"{summary([rows / v * 1e3 for v in ns], lambda x: f'{x:.2f}'):<22}")

def ratio(side, a, b):
    if (side, a) in data and (side, b) in data:
        return [x / y for x, y in zip(data[(side, a)], data[(side, b)])]
    return None

side = "candidate"
r = ratio(side, "runner", "hand_loop")
if r:
    print(f"time ratio runner/hand_loop = {summary(r, lambda x: f'{x:.3f}')}; goal <= 1.2")
r = ratio(side, "runner", "floor")
if r:
    print(f"time ratio runner/floor     = {summary(r, lambda x: f'{x:.3f}')}"
          f" (the runner reaches {1 / statistics.median(r):.0%} of the floor's throughput)")
if baseline and ("baseline", "runner") in data:
    s = [b / c for b, c in zip(data[("baseline", "runner")], data[("candidate", "runner")])]
    print(f"runner speed-up candidate vs baseline {baseline} = {summary(s, lambda x: f'{x:.2f}x')}"
          " (paired by run)")
rate = rows / statistics.median(data[(side, "runner")]) * 1e3
print(f"runner {rate:.2f} M rows/s: goal >= 2.5 M rows/s {'met' if rate >= 2.5 else 'NOT met'}")
PY
