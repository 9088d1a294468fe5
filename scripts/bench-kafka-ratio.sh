#!/usr/bin/env bash
# K1 (backfill-kafka/benches/replay.rs): replaying a 1,000,000-record range of a 4-partition topic
# through an identity transform into staging, against kcat reading the same range, alternating in the
# same session; prints each run and the medians with their range.
#
# Usage: scripts/bench-kafka-ratio.sh [--runs N] [--records N] [--brokers HOST:PORT]
#   Without --brokers (or BACKFILL_KAFKA_BROKERS) it starts the test broker (scripts/kafka-broker.sh).
#   Both readers are timed from process start to their last record, wall clock.
# Goal: replay into staging throughput >= 1.0 x kcat's.
# The Kafka staging sink also writes every record back to the broker, so it is also compared with
# the same copy done by kcat alone: `kcat -C | kcat -P` into a fresh 4-partition topic with the
# run's constant lineage headers (no transactions, no per-record source headers: a lower bound for
# any copy through this broker).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3
records=1000000
brokers="${BACKFILL_KAFKA_BROKERS:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --records) records="$2"; shift 2 ;;
    --brokers) brokers="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$runs" -ge 3 ] || { echo "--runs must be at least 3" >&2; exit 2; }
work="$(mktemp -d)"
cleanup() { [ -f "$work/kafka/broker.pid" ] && kill "$(cat "$work/kafka/broker.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
if [ -z "$brokers" ]; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  scripts/kafka-broker.sh "$port" "$work/kafka" >/dev/null
  brokers="127.0.0.1:$port"
fi
cargo build -q --release -p backfill-kafka --bench replay
bench="$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/replay-* | grep -v '\.d$' | head -1)"

topic="k1-$$"
python3 - "$records" >"$work/records.txt" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"k{i}:{{\"id\":{i},\"payload\":\"{'x' * 64}\"}}")
PY
"$bench" "$brokers" "$topic" create
kcat -P -b "$brokers" -t "$topic" -K: -z none -X linger.ms=20 -X batch.num.messages=10000 -l "$work/records.txt"
now() { date +%s%N; }
kcat_once() {
  local t0 n
  t0=$(now)
  n=$(kcat -C -b "$brokers" -t "$topic" -o beginning -e -q -X isolation.level=read_committed \
        -X receive.message.max.bytes=2000000000 -f '%o %s\n' | wc -l)
  [ "$n" -eq "$records" ] || { echo "kcat read $n of $records" >&2; exit 1; }
  echo "scale=3; ($(now) - $t0) / 1000000000" | bc
}
copy_once() {
  local t0 n copy_n="$1"
  "$bench" "$brokers" "$topic.copy$copy_n" create >/dev/null
  t0=$(now)
  kcat -C -b "$brokers" -t "$topic" -o beginning -e -q -X isolation.level=read_committed \
      -X receive.message.max.bytes=2000000000 -f '%k\t%s\n' \
    | kcat -P -b "$brokers" -t "$topic.copy$copy_n" -K $'\t' -z none -X linger.ms=5 -X batch.num.messages=10000 \
      -H backfill_run_id=bf-k1 -H backfill_transform_version=1.0.0 -H backfill_processing_mode=replay \
      -H backfill_input_snapshot=k1 -H backfill_chunk=k1 -H backfill_attempt=1
  echo "scale=3; ($(now) - $t0) / 1000000000" | bc
  n=$(kcat -C -b "$brokers" -t "$topic.copy$copy_n" -o beginning -e -q -X receive.message.max.bytes=2000000000 -f '%o\n' | wc -l)
  [ "$n" -eq "$records" ] || { echo "kcat copy holds $n of $records" >&2; exit 1; }
}
replay_once() {
  local out
  out="$("$bench" "$brokers" "$topic" "$1")"
  case "$out" in "records=$records "*) ;; *) echo "replay: $out" >&2; exit 1 ;; esac
  echo "${out##*seconds=}"
}
declare -a K M S C
for i in $(seq 1 "$runs"); do
  K+=("$(kcat_once)"); M+=("$(replay_once memory)"); S+=("$(replay_once kafka)"); C+=("$(copy_once "$i")")
  echo "run $i: kcat ${K[-1]} s, replay->memory staging ${M[-1]} s, replay->kafka staging ${S[-1]} s, kcat copy ${C[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {print lo "-" hi}'; }
rate() { echo "scale=0; $records / $1" | bc; }
km=$(median "${K[@]}"); mm=$(median "${M[@]}"); sm=$(median "${S[@]}"); cm=$(median "${C[@]}")
echo "kcat:                    median $km s ($(range "${K[@]}")), $(rate "$km") rec/s"
echo "replay -> memory staging: median $mm s ($(range "${M[@]}")), $(rate "$mm") rec/s, ratio to kcat $(echo "scale=2; $km / $mm" | bc)"
echo "replay -> kafka staging:  median $sm s ($(range "${S[@]}")), $(rate "$sm") rec/s, ratio to kcat $(echo "scale=2; $km / $sm" | bc)"
echo "kcat copy (-C | -P):      median $cm s ($(range "${C[@]}")), $(rate "$cm") rec/s; kafka staging to kcat copy $(echo "scale=2; $cm / $sm" | bc)"
