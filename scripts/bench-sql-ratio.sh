#!/usr/bin/env bash
# Runs the PostgreSQL publish benchmarks (backfill-sql/benches/postgres.rs) RUNS times (default 3, at
# least 3) and prints, for the baseline (the same statements by hand) and the candidate (SqlPublisher),
# the median over the runs of criterion's per-run median, with the range, plus the ratio / difference:
#   pg_replace_partition  sql_publisher / hand_sql_same_statements   goal <= 1.1
#   pg_attach_partition   sql_publisher - hand_sql_same_statements   goal <= 5 ms
#                         (and sql_publisher_one_connection - hand: the same without a spare connection)
# Both sides of a pair are measured in the same run, against the same server; odd runs measure the
# baseline first, even runs the candidate first (BENCH_REVERSE=1); other functions come after both.
#
# Usage: scripts/bench-sql-ratio.sh [RUNS]
# Uses BACKFILL_TEST_PG_URL when set; otherwise starts a throwaway server with scripts/services.sh
# (stopped on exit). BENCH_TABLE_ROWS (default 1,200,000) sets the target's size; BENCH_ROWS only sizes
# the staging benchmark, which is not run here (default 10,000 to keep its untimed setup short).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-${RUNS:-3}}"
if [ "$runs" -lt 3 ]; then
  echo "bench-sql-ratio: at least 3 runs" >&2
  exit 2
fi
if [ -z "${BACKFILL_TEST_PG_URL:-}" ]; then
  # shellcheck source=scripts/services.sh
  . scripts/services.sh
  BACKFILL_TEST_MYSQL_URL=unused services_start
  [ -n "${BACKFILL_TEST_PG_URL:-}" ] || { echo "bench-sql-ratio: no PostgreSQL" >&2; exit 1; }
fi
export BACKFILL_TEST_PG_URL
export BENCH_ROWS="${BENCH_ROWS:-10000}"
dir="${CARGO_TARGET_DIR:-target}/criterion"
out="$(mktemp -d)"
cargo bench -p backfill-sql --bench postgres --no-run
for i in $(seq 1 "$runs"); do
  # Even runs measure the candidate before the baseline (BENCH_REVERSE=1), so neither side
  # always runs on a database the other's iterations have aged.
  reverse=$(( (i + 1) % 2 ))
  echo "== run $i of $runs ($([ "$reverse" = 1 ] && echo candidate || echo baseline) first)," \
    "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  BENCH_REVERSE="$reverse" cargo bench -p backfill-sql --bench postgres -- --noplot \
    'pg_replace_partition|pg_attach_partition' \
    >"$out/run$i.log" 2>&1 || { tail -40 "$out/run$i.log" >&2; exit 1; }
  echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  for f in pg_replace_partition/hand_sql_same_statements pg_replace_partition/hand_sql_without_archive \
    pg_replace_partition/sql_publisher pg_attach_partition/hand_sql_same_statements \
    pg_attach_partition/sql_publisher pg_attach_partition/sql_publisher_one_connection; do
    mkdir -p "$out/$i/$f"
    cp "$dir/$f/new/estimates.json" "$out/$i/$f/"
  done
done
python3 - "$out" "$runs" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def med(f):
    return [json.load(open(f"{out}/{i}/{f}/estimates.json"))["median"]["point_estimate"] / 1e6
            for i in range(1, runs + 1)]
def show(name, v):
    print(f"  {name:34s} median {statistics.median(v):9.1f} ms  range {min(v):9.1f} .. {max(v):9.1f} ms"
          f"  runs: {', '.join(f'{x:.1f}' for x in v)}")
print(f"criterion medians over {runs} runs (median of runs, min .. max)")
g = "pg_replace_partition"
hand, bare, pub = med(f"{g}/hand_sql_same_statements"), med(f"{g}/hand_sql_without_archive"), med(f"{g}/sql_publisher")
print(g)
show("baseline hand_sql_same_statements", hand)
show("hand_sql_without_archive", bare)
show("candidate sql_publisher", pub)
r = [p / h for p, h in zip(pub, hand)]
print(f"  ratio publisher/hand  median {statistics.median(r):.3f}  range {min(r):.3f} .. {max(r):.3f}"
      f"  (ratio of medians {statistics.median(pub) / statistics.median(hand):.3f}); goal <= 1.1")
g = "pg_attach_partition"
hand, pub = med(f"{g}/hand_sql_same_statements"), med(f"{g}/sql_publisher")
print(g)
show("baseline hand_sql_same_statements", hand)
show("candidate sql_publisher", pub)
d = [p - h for p, h in zip(pub, hand)]
print(f"  publisher - hand      median {statistics.median(d):+.1f} ms  range {min(d):+.1f} .. {max(d):+.1f} ms; goal <= 5 ms")
one = med(f"{g}/sql_publisher_one_connection")
show("publisher, pool of one connection", one)
d = [p - h for p, h in zip(one, hand)]
print(f"  one connection - hand median {statistics.median(d):+.1f} ms  range {min(d):+.1f} .. {max(d):+.1f} ms"
      " (the staging count not overlapped with the transaction)")
PY
echo "(criterion output of each run: $out/run*.log)"
