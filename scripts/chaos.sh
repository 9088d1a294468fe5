#!/usr/bin/env bash
# The fault campaign. Runs the SLA restatement (`sla-restatement`, the main job) on SQLite,
# PostgreSQL and MariaDB while injecting faults at random moments, resumes every trial to the end
# with one more worker, and compares the published rows, read with the engine's own client
# (sqlite3, psql, mariadb), with an uninterrupted run's on the same engine.
#
# Usage: scripts/chaos.sh [--trials N] [--seed S] [--from K] [--engines sqlite,postgres,mariadb]
#                         [--faults kill,together,restart,pause] [--release]
#
# --from K runs only trials K..N of the campaign `--trials N --seed S` (the same draws, in the same
# order), so a long campaign can be run in parts: `--from 1 --trials 250`, `--from 251 --trials 500`…
# with one seed are together the campaign `--trials 500`. Counts in the last line are the part's.
#
# Fault kinds (restart only where there is a server):
#   kill      one of 1-3 workers started together is killed with SIGKILL
#   together  2-3 workers started together are all killed with SIGKILL at once
#   restart   the database server is restarted abruptly under 2 workers (PostgreSQL: pg_ctl restart
#             -m immediate; MariaDB: kill -9 and start)
#   pause     one of 2 workers (3 s leases) is stopped with SIGSTOP for 7 s, then continued
# The first trials cover every (engine, fault) pair once; the rest are drawn from the seed.
# Servers: the BACKFILL_TEST_PG_URL / BACKFILL_TEST_MYSQL_URL servers (with their
# BACKFILL_TEST_*_RESTART commands) when set, else throwaway ones from scripts/services.sh.
# Exit status 1 on any lost, duplicated or wrong row, a resume that does not finish, or a worker
# that failed where no fault explains it. The last line is
#   chaos: <trials> trials, <kills> kills, <restarts> restarts, <pauses> pauses, <lost> lost, <duplicated> duplicated
set -euo pipefail
cd "$(dirname "$0")/.."

trials=12
first=1
seed="$(date +%s)"
engines="sqlite,postgres,mariadb"
faults="kill,together,restart,pause"
profile=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) trials="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --from) first="$2"; shift 2 ;;
    --engines) engines="$2"; shift 2 ;;
    --faults) faults="$2"; shift 2 ;;
    --release) profile=release; shift ;;
    *) echo "chaos: unknown argument $1" >&2; exit 2 ;;
  esac
done
RANDOM=$((seed % 32768))
echo "chaos: seed $seed, $trials trials (from trial $first), engines $engines, faults $faults"

if [ "$profile" = release ]; then
  cargo build -q --release -p backfill-examples --bin sla-restatement
else
  cargo build -q -p backfill-examples --bin sla-restatement
fi
bin="${CARGO_TARGET_DIR:-target}/$profile/sla-restatement"

# shellcheck source=scripts/services.sh
. scripts/services.sh
if [[ ",$engines," == *",postgres,"* ]] || [[ ",$engines," == *",mariadb,"* ]]; then
  if [ -z "${BACKFILL_TEST_PG_URL:-}" ] || [ -z "${BACKFILL_TEST_MYSQL_URL:-}" ]; then
    services_start
  fi
fi

work="$(mktemp -d /tmp/backfill-chaos.XXXXXX)"
trap 'rm -rf "$work"; services_stop' EXIT

pg_admin() { psql "$BACKFILL_TEST_PG_URL" -qAtc "$1" >/dev/null; }
my_parts() { # host port user password from the MariaDB URL
  local u="${BACKFILL_TEST_MYSQL_URL#mysql://}" auth rest hostport
  auth="${u%%@*}"; rest="${u#*@}"; hostport="${rest%%/*}"
  echo "${hostport%%:*} ${hostport##*:} ${auth%%:*} ${auth#*:}"
}
my_exec() { # database, sql
  local h p u pw
  read -r h p u pw <<<"$(my_parts)"
  mariadb --no-defaults -N -B -h "$h" -P "$p" -u "$u" "-p$pw" ${1:+"$1"} -e "$2"
}

# A fresh store and warehouse for trial $1 on engine $2: prints the job's arguments.
fresh() {
  local name="chaos_${seed}_${1//-/_}" dir="$work/$1"
  mkdir -p "$dir"
  case "$2" in
    sqlite) echo "--data-dir $dir" ;;
    postgres)
      pg_admin "DROP DATABASE IF EXISTS $name"; pg_admin "CREATE DATABASE $name"
      echo "--data-dir $dir --database-url ${BACKFILL_TEST_PG_URL%/*}/$name" ;;
    mariadb)
      # The job's schemas are databases of their own on MariaDB (server-wide): dropped per trial.
      my_exec "" "DROP DATABASE IF EXISTS $name; CREATE DATABASE $name; DROP DATABASE IF EXISTS silver; DROP DATABASE IF EXISTS bronze;"
      echo "--data-dir $dir --database-url ${BACKFILL_TEST_MYSQL_URL%/*}/$name" ;;
  esac
}

# The published rows of the target, one line per row, sorted by id, read by the engine's client.
published() { # engine, job args
  local cols="id, month, COALESCE(CAST(due_on AS CHAR(10)), '-'), CAST(breached AS INTEGER), business_days_used, produced_by_run_id"
  case "$1" in
    sqlite)
      local dir; dir="$(echo "$2" | awk '{print $2}')"
      sqlite3 -cmd ".timeout 10000" "$dir/warehouse.db" \
        "SELECT $cols FROM silver__case_sla_monthly ORDER BY id" ;;
    postgres)
      local url; url="$(echo "$2" | awk '{print $4}')"
      psql "$url" -qAt -F'|' -c "SELECT id, month, COALESCE(CAST(due_on AS TEXT), '-'), CAST(breached AS INTEGER), business_days_used, produced_by_run_id FROM silver.case_sla_monthly ORDER BY id" ;;
    mariadb)
      local url db; url="$(echo "$2" | awk '{print $4}')"; db="${url##*/}"
      my_exec "$db" "SELECT id, month, COALESCE(CAST(due_on AS CHAR(10)), '-'), CAST(breached AS SIGNED), business_days_used, produced_by_run_id FROM silver.case_sla_monthly ORDER BY id" | tr '\t' '|' ;;
  esac
}

# Whether process $1 is still running (a worker that already exited is a zombie until waited for).
alive() {
  local st
  st="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ "$st" != Z* ]]
}

# The uninterrupted run of each engine: the rows every trial must end with.
declare -A baseline
IFS=, read -r -a engine_list <<<"$engines"
IFS=, read -r -a fault_list <<<"$faults"
for e in "${engine_list[@]}"; do
  args="$(fresh "baseline-$e" "$e")"
  # shellcheck disable=SC2086
  "$bin" $args >"$work/baseline-$e.out" 2>&1 || { cat "$work/baseline-$e.out" >&2; exit 1; }
  published "$e" "$args" >"$work/baseline-$e.rows"
  baseline[$e]="$work/baseline-$e.rows"
  echo "chaos: baseline on $e: $(wc -l <"$work/baseline-$e.rows") rows"
done

# Every (engine, fault) pair that makes sense, for the first trials.
pairs=()
for e in "${engine_list[@]}"; do
  for f in "${fault_list[@]}"; do
    [ "$f" = restart ] && [ "$e" = sqlite ] && continue
    pairs+=("$e:$f")
  done
done
[ "${#pairs[@]}" -gt 0 ] || { echo "chaos: no (engine, fault) pair to try" >&2; exit 2; }

kills=0 restarts=0 pauses=0 lost=0 duplicated=0 wrong=0 failed=0
# Trial $1's draws from the seeded generator: its engine, fault, workers, delay and victim. Every
# trial draws the same number of values whatever happens in it, so trial K's draws depend only on
# the seed and K (what --from relies on).
draw() {
  if [ "$1" -le "${#pairs[@]}" ]; then pair="${pairs[$(($1 - 1))]}"; else pair="${pairs[$((RANDOM % ${#pairs[@]}))]}"; fi
  engine="${pair%%:*}"; fault="${pair##*:}"
  case "$fault" in
    kill) n=$((1 + RANDOM % 3)) ;;
    together) n=$((2 + RANDOM % 2)) ;;
    *) n=2 ;;
  esac
  delay_ms=$((500 + RANDOM % 6000))
  victim=$((RANDOM % n))
}

for t in $(seq 1 $((first - 1))); do draw "$t"; done
for t in $(seq "$first" "$trials"); do
  draw "$t"
  args="$(fresh "$t" "$engine")"
  lease=()
  [ "$fault" = pause ] && lease=(--lease-secs 3)
  pids=()
  for w in $(seq 1 "$n"); do
    # shellcheck disable=SC2086
    "$bin" $args "${lease[@]}" >"$work/$t.w$w.out" 2>&1 &
    pids+=("$!")
  done
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  killed=()
  case "$fault" in
    kill)
      v=$victim
      if alive "${pids[$v]}" && kill -9 "${pids[$v]}" 2>/dev/null; then killed+=("$v"); kills=$((kills + 1)); fi ;;
    together)
      for v in $(seq 0 $((n - 1))); do
        if alive "${pids[$v]}" && kill -9 "${pids[$v]}" 2>/dev/null; then killed+=("$v"); kills=$((kills + 1)); fi
      done ;;
    restart)
      if [ "$engine" = postgres ]; then eval "$BACKFILL_TEST_PG_RESTART" >/dev/null; else eval "$BACKFILL_TEST_MYSQL_RESTART" >/dev/null; fi
      restarts=$((restarts + 1)) ;;
    pause)
      v=$victim
      if alive "${pids[$v]}" && kill -STOP "${pids[$v]}" 2>/dev/null; then
        sleep 7; kill -CONT "${pids[$v]}" 2>/dev/null || true; pauses=$((pauses + 1))
      fi ;;
  esac
  codes=()
  unexplained=0
  for v in $(seq 0 $((n - 1))); do
    code=0
    { wait "${pids[$v]}"; } 2>/dev/null || code=$?
    codes+=("$code")
    if [[ " ${killed[*]} " == *" $v "* ]]; then continue; fi
    # A worker whose database was restarted under it may fail (named here); any other failure is
    # unexplained.
    if [ "$code" -ne 0 ] && [ "$fault" = restart ]; then
      echo "chaos: trial $t: worker $((v + 1)) exited $code after the restart: $(grep -m1 '^error' "$work/$t.w$((v + 1)).out" || tail -n 1 "$work/$t.w$((v + 1)).out")"
    fi
    if [ "$code" -ne 0 ] && [ "$fault" != restart ]; then
      unexplained=$((unexplained + 1))
      echo "chaos: trial $t: worker $((v + 1)) failed (exit $code) under a $fault fault:" >&2
      tail -n 5 "$work/$t.w$((v + 1)).out" >&2
    fi
  done
  # Resume to the end with one more worker: it must finish.
  resumed=ok
  # shellcheck disable=SC2086
  if ! "$bin" $args >"$work/$t.resume.out" 2>&1; then
    resumed=FAILED
    tail -n 8 "$work/$t.resume.out" >&2
  fi
  published "$engine" "$args" >"$work/$t.rows" || true
  base="${baseline[$engine]}"
  rows=$(wc -l <"$work/$t.rows")
  d=$(cut -d'|' -f1 "$work/$t.rows" | sort | uniq -d | wc -l)
  l=$(comm -23 <(cut -d'|' -f1 "$base" | sort -u) <(cut -d'|' -f1 "$work/$t.rows" | sort -u) | wc -l)
  w=$(comm -13 <(sort -u "$base") <(sort -u "$work/$t.rows") | wc -l)
  lost=$((lost + l)); duplicated=$((duplicated + d)); wrong=$((wrong + w))
  [ "$resumed" = ok ] && [ "$unexplained" -eq 0 ] || failed=$((failed + 1))
  echo "chaos: trial $t: $engine, $fault after ${delay_ms} ms, $n workers (exit ${codes[*]}), resume $resumed: $rows rows, $l lost, $d duplicated, $w wrong"
  rm -rf "${work:?}/$t"
done

echo "chaos: $failed trials with a failed resume or an unexplained worker failure, $wrong wrong rows"
echo "chaos: $((trials - first + 1)) trials, $kills kills, $restarts restarts, $pauses pauses, $lost lost, $duplicated duplicated"
[ "$lost" -eq 0 ] && [ "$duplicated" -eq 0 ] && [ "$wrong" -eq 0 ] && [ "$failed" -eq 0 ]
