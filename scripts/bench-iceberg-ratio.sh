#!/usr/bin/env bash
# Q1 (backfill-iceberg/benches/staging.rs): the staging sink writing N rows (default 1,000,000) into
# zstd Parquet data files of a month-partitioned Iceberg table, against pyarrow.parquet writing the
# same rows and columns (lineage included), one file per month, zstd, alternating in one session;
# then the publish latency of a replace-partitions run.
#
# Usage: scripts/bench-iceberg-ratio.sh [--runs N] [--rows N]
#   Python with pyarrow: $BACKFILL_TEST_PYICEBERG (scripts/services.sh installs it) or python3.
#   Both sides are timed from rows in memory (Rust structs / Python tuples) to files closed; the
#   pyarrow figure without building the Arrow table (columns already in Arrow) is printed too.
# Goal: staging throughput >= 1.0 x pyarrow's.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3
rows=1000000
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --rows) rows="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$runs" -ge 3 ] || { echo "--runs must be at least 3" >&2; exit 2; }
py="${BACKFILL_TEST_PYICEBERG:-python3}"
"$py" -c 'import pyarrow' || { echo "$py has no pyarrow" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build -q --release -p backfill-iceberg --bench staging
bench="$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/staging-* | grep -v '\.d$' | head -1)"

cat >"$work/pyarrow_write.py" <<'PY'
import datetime as dt, sys, time
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
n, out = int(sys.argv[1]), sys.argv[2]
start = dt.date(2025, 1, 1)
regions = ["eu", "us", "apac"]
rows = [(f"s{i:08d}", start + dt.timedelta(days=i % 120), regions[i % 3], (i * 37) % 10000) for i in range(n)]
schema = pa.schema([
    ("id", pa.string()), ("day", pa.date32()), ("region", pa.string()), ("amount", pa.int64()),
    ("produced_by_run_id", pa.string()), ("produced_by_transform", pa.string()),
    ("transform_version", pa.string()), ("processing_mode", pa.string()), ("input_range", pa.string()),
    ("input_snapshot_id", pa.string()), ("reference_data_version", pa.string()),
    ("produced_at", pa.timestamp("us", tz="UTC")),
])
lineage = ["bf-q1", "bench", "1.0.0", "BACKFILL", "2025-01-01..2025-05-01", "1", "",
           dt.datetime(2026, 12, 4, 9, tzinfo=dt.timezone.utc)]
def write(table, tag):
    month = pc.strftime(table["day"], format="%Y-%m")
    for m in sorted(set(month.to_pylist())):
        part = table.filter(pc.equal(month, m))
        pq.write_table(part, f"{out}/{tag}-{m}.parquet", compression="zstd")
t0 = time.perf_counter()
cols = list(zip(*rows))
arrays = [pa.array(cols[0], pa.string()), pa.array(cols[1], pa.date32()),
          pa.array(cols[2], pa.string()), pa.array(cols[3], pa.int64())]
arrays += [pa.array([v] * n, schema.field(4 + i).type) for i, v in enumerate(lineage)]
table = pa.Table.from_arrays(arrays, schema=schema)
write(table, "rows")
t1 = time.perf_counter()
write(table, "arrow")
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
PY

declare -a P A S T
for i in $(seq 1 "$runs"); do
  read -r p a < <("$py" "$work/pyarrow_write.py" "$rows" "$work")
  P+=("$p"); A+=("$a")
  out="$("$bench" "$work/wh$i" "$rows" serde)"; S+=("${out##*seconds=}")
  out="$("$bench" "$work/wh$i" "$rows" arrow)"; T+=("${out##*seconds=}")
  echo "run $i: pyarrow from rows ${p}s (write only ${a}s), sink serde ${S[-1]}s, sink typed ${T[-1]}s"
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)] " (" a[1] "-" a[NR] ")"}'; }
echo "rows=$rows runs=$runs"
echo "pyarrow from rows:  $(med "${P[@]}") s"
echo "pyarrow write only: $(med "${A[@]}") s"
echo "sink, serde rows:   $(med "${S[@]}") s"
echo "sink, typed rows:   $(med "${T[@]}") s"
ratio() { echo "scale=2; $(printf '%s\n' "$1" | cut -d' ' -f1) / $(printf '%s\n' "$2" | cut -d' ' -f1)" | bc; }
echo "throughput vs pyarrow from rows: serde $(ratio "$(med "${P[@]}")" "$(med "${S[@]}")")x, typed $(ratio "$(med "${P[@]}")" "$(med "${T[@]}")")x"
echo "publish (replace 4 of 12 months, $((rows / 4)) rows): $("$bench" "$work/whp" "$rows" publish)"
