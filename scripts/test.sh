#!/usr/bin/env bash
# The one test command: formatting, lints, every test (unit, integration, property, doc, benches in
# test mode) and the documentation build. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# A full run builds every target once: incremental caches would only double the disk it takes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

# shellcheck source=scripts/services.sh
. scripts/services.sh

step "build prerequisites (librdkafka's bundled C build: gcc, make, zlib headers)"
services_build_prereqs

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "services: PostgreSQL, MariaDB, a Kafka-protocol broker on loopback and PyIceberg (installed if missing)"
services_start
if [ -z "${BACKFILL_TEST_PG_URL:-}" ] || [ -z "${BACKFILL_TEST_MYSQL_URL:-}" ] || [ -z "${BACKFILL_TEST_KAFKA_BROKERS:-}" ] \
  || [ -z "${BACKFILL_TEST_PYICEBERG:-}" ]; then
  if [ "${BACKFILL_ALLOW_MISSING_SERVICES:-}" != "1" ]; then
    echo "a database engine, the Kafka broker or PyIceberg could not be started: failing (see the [services] lines above;" >&2
    echo "set BACKFILL_ALLOW_MISSING_SERVICES=1 to run without it, with loud skips)" >&2
    exit 1
  fi
else
  export BACKFILL_REQUIRE_SERVICES=1
fi

step "cargo test (lib, integration and property tests, examples; against SQLite, PostgreSQL and MariaDB)"
cargo test --workspace --lib --bins --tests --examples

step "cargo test --doc"
cargo test --workspace --doc

step "backfill-iceberg over OpenDAL storage (feature opendal: the object-store code path)"
cargo test -p backfill-iceberg --features opendal --test integration conformance::opendal

step "backfill-files with its optional features (Parquet landing files, object-store landing areas)"
cargo test -p backfill-files --all-features --test integration -- parquet:: object_store::

step "examples: the main job on a fresh data directory, the in-memory quickstart, the Iceberg restatement, the Kafka replay, the API and file backfills"
sla_dir="$(mktemp -d /tmp/backfill-sla.XXXXXX)"
for pass in first second; do
  cargo run -q -p backfill-examples -- --data-dir "$sla_dir" > "$sla_dir/$pass.out" 2>&1 || {
    cat "$sla_dir/$pass.out" >&2; exit 1; }
done
grep -q "nothing republished" "$sla_dir/second.out" || { cat "$sla_dir/second.out" >&2; exit 1; }
tail -n 12 "$sla_dir/first.out"
rm -rf "$sla_dir"
cargo run -q -p backfill-examples --example quickstart > /dev/null
ice_dir="$(mktemp -d /tmp/backfill-iceberg.XXXXXX)"
cargo run -q -p backfill-examples --example iceberg_restatement -- --warehouse "$ice_dir" > "$ice_dir/out" 2>&1 || {
  cat "$ice_dir/out" >&2; exit 1; }
[ "$(tail -n 1 "$ice_dir/out")" = "iceberg table sales.daily_region_amounts" ] || { cat "$ice_dir/out" >&2; exit 1; }
rm -rf "$ice_dir"
if [ -n "${BACKFILL_TEST_KAFKA_BROKERS:-}" ]; then
  kafka_dir="$(mktemp -d /tmp/backfill-kafka.XXXXXX)"
  topic="orders.ci.$$"
  cargo run -q -p backfill-examples --example kafka_replay -- --brokers "$BACKFILL_TEST_KAFKA_BROKERS" \
    --data-dir "$kafka_dir" --source-topic "$topic" --target-topic "$topic.backfill" > "$kafka_dir/out" 2>&1 || {
    cat "$kafka_dir/out" >&2; exit 1; }
  last="$(tail -n 1 "$kafka_dir/out")"
  case "$last" in "published "*" records to $topic.backfill") ;; *) cat "$kafka_dir/out" >&2; exit 1 ;; esac
  n="${last#published }"; n="${n%% *}"
  seen="$(kcat -C -b "$BACKFILL_TEST_KAFKA_BROKERS" -t "$topic.backfill" -o beginning -e -q \
    -X isolation.level=read_committed -f '%k\n' | sort -u | wc -l)"
  [ "$seen" -eq "$n" ] || { echo "kcat read $seen distinct keys of $topic.backfill, the example published $n" >&2; exit 1; }
  echo "$last (kcat: $seen distinct keys)"
  rm -rf "$kafka_dir"
fi

api_out="$(mktemp /tmp/backfill-api.XXXXXX)"
cargo run -q -p backfill-http --example api_backfill > "$api_out" 2>&1 || { cat "$api_out" >&2; exit 1; }
case "$(tail -n 1 "$api_out")" in "published "*" records from "*" pages") tail -n 1 "$api_out" ;; *) cat "$api_out" >&2; exit 1 ;; esac
rm -f "$api_out"
files_out="$(mktemp /tmp/backfill-files.XXXXXX)"
cargo run -q -p backfill-files --example file_backfill > "$files_out" 2>&1 || { cat "$files_out" >&2; exit 1; }
case "$(tail -n 1 "$files_out")" in "published "*" rows from "*" files") tail -n 1 "$files_out" ;; *) cat "$files_out" >&2; exit 1 ;; esac
rm -f "$files_out"

step "fault campaign: every fault kind once on every engine (scripts/chaos.sh; RELIABILITY.md has the long one)"
scripts/chaos.sh --trials 11 --seed "${BACKFILL_CHAOS_SEED:-$(date +%s)}"

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "all checks passed"
