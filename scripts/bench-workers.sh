#!/usr/bin/env bash
# S1: one restatement on PostgreSQL shared by 1, 2 and 4 worker processes (separate processes of
# backfill-sql/examples/workers_bench.rs, release build), for a CPU-bound transform (S1_ROUNDS,
# default 1,000, rounds of SHA-256 per record) and an IO-bound one (records staged as they are). Each run submits a fresh
# run (its own schema), starts N workers at once and times until the last exits; every cell is the
# median of RUNS runs (default 3) with its range; the order of N rotates between runs.
#
# Usage: scripts/bench-workers.sh [RUNS]
# Uses BACKFILL_TEST_PG_URL when set, else a throwaway server from scripts/services.sh. S1_ROWS
# (default 256,000) and S1_CHUNK (default 8,000) size the run.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-${RUNS:-3}}"
[ "$runs" -ge 3 ] || { echo "bench-workers: at least 3 runs" >&2; exit 2; }
rows="${S1_ROWS:-256000}"
chunk="${S1_CHUNK:-8000}"
rounds="${S1_ROUNDS:-1000}"
if [ -z "${BACKFILL_TEST_PG_URL:-}" ]; then
  # shellcheck source=scripts/services.sh
  . scripts/services.sh
  BACKFILL_TEST_MYSQL_URL=unused services_start
  trap services_stop EXIT
fi
cargo build -q --release -p backfill-sql --example workers_bench
bin="${CARGO_TARGET_DIR:-target}/release/examples/workers_bench"
out="$(mktemp -d)"

one() { # workload, workers, run number: prints seconds
  local w="$1" n="$2" r="$3" run="s1_${1}_${2}_${3}_$$"
  "$bin" submit --url "$BACKFILL_TEST_PG_URL" --run "$run" --workload "$w" --rows "$rows" --chunk "$chunk" --rounds "$rounds" >/dev/null
  local t0 t1 pids=()
  t0="$(date +%s.%N)"
  for k in $(seq 1 "$n"); do
    "$bin" work --url "$BACKFILL_TEST_PG_URL" --run "$run" --workload "$w" --worker "w$k" \
      --rows "$rows" --chunk "$chunk" --rounds "$rounds" >"$out/$run.$k" 2>&1 &
    pids+=("$!")
  done
  for p in "${pids[@]}"; do wait "$p" || { cat "$out/$run".* >&2; exit 1; }; done
  t1="$(date +%s.%N)"
  grep -q "validated ($rows rows)" "$out/$run".* || { cat "$out/$run".* >&2; exit 1; }
  PGOPTIONS="-c client_min_messages=warning" psql "$BACKFILL_TEST_PG_URL" -qAtc "DROP SCHEMA $run CASCADE" >/dev/null
  echo "$t1 - $t0" | bc -l
}

declare -A times
for r in $(seq 1 "$runs"); do
  case $(( r % 3 )) in 1) order="1 2 4" ;; 2) order="2 4 1" ;; *) order="4 1 2" ;; esac
  echo "== run $r of $runs (workers in order $order), load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  for w in cpu io; do
    for n in $order; do
      s="$(one "$w" "$n" "$r")"
      printf '   %s %d workers: %.2f s\n' "$w" "$n" "$s" >&2
      times[$w.$n]="${times[$w.$n]:-} $s"
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.2f s (%.2f-%.2f)", m, v[1], v[NR]}'; }
med() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "S1: $rows records in chunks of $chunk, $rounds SHA-256 rounds a record for cpu, $runs runs, $(nproc) cores"
for w in cpu io; do
  base="$(echo "${times[$w.1]}" | med)"
  for n in 1 2 4; do
    m="$(echo "${times[$w.$n]}" | med)"
    printf '%s, %d workers: %s, speed-up %.2fx\n' "$w" "$n" "$(echo "${times[$w.$n]}" | median)" "$(echo "$base / $m" | bc -l)"
  done
done
rm -rf "$out"
