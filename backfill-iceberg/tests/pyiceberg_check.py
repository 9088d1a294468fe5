"""PyIceberg as an independent reader of a table backfill-iceberg wrote.

Usage: python pyiceberg_check.py CATALOG_DB WAREHOUSE NAMESPACE.TABLE EXPECTED_JSON

Opens the SQL catalog `backfill` on the SQLite file CATALOG_DB (warehouse WAREHOUSE, a directory),
loads the table and reads what `main` holds with PyIceberg's own scan planning and Parquet reader
(pyarrow): nothing of iceberg-rust is involved. Prints one JSON object with what it saw:

  snapshot_id      main's current snapshot id
  run_id           that snapshot's summary property `backfill.run-id`
  operation        that snapshot's operation (append, overwrite, ...)
  parent_id        its parent snapshot id
  refs             names of the table's refs (branches and tags)
  rows             rows per month partition (`YYYY-MM` of the date column), from a full scan
  lineage          distinct `produced_by_run_id` values per month partition, from the same scan
  partition_rows   rows per month partition from PyIceberg's partitions metadata table
  amounts          sum of the amount column per month partition
  snapshots        every snapshot of the table, oldest first: snapshot_id, parent_id, run_id,
                   operation, and rows and lineage per month partition read at that snapshot
                   (time travel)

then compares it with EXPECTED_JSON, an object with any of those keys (plus `date_column`, default
`event_date`, and `amount_column`, default `amount`); every key given must be equal. Exits 0 when
all are, 1 (with one `MISMATCH` line per difference on stderr) when not, 2 on usage errors.
"""

import json
import sys
from collections import defaultdict
from datetime import date


def month_of_ordinal(months_since_epoch):
    """Iceberg's month transform value (months since 1970-01) as `YYYY-MM`."""
    y, m = divmod(int(months_since_epoch), 12)
    return "%04d-%02d" % (1970 + y, m + 1)


def observe(catalog_db, warehouse, ident, date_column, amount_column):
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(
        "backfill",
        uri="sqlite:///" + catalog_db,
        warehouse="file://" + warehouse,
    )
    tbl = catalog.load_table(ident)
    snap = tbl.current_snapshot()
    seen = {
        "snapshot_id": snap.snapshot_id if snap else None,
        "run_id": None,
        "operation": None,
        "parent_id": snap.parent_snapshot_id if snap else None,
        "refs": sorted(tbl.metadata.refs.keys()),
        "rows": {},
        "lineage": {},
        "partition_rows": {},
        "amounts": {},
        "snapshots": [],
    }
    if snap is None:
        return seen
    summary = snap.summary
    seen["operation"] = str(summary.operation.value) if summary is not None else None
    seen["run_id"] = summary.get("backfill.run-id") if summary is not None else None

    has_amount = any(f.name == amount_column for f in tbl.schema().fields)
    rows, lineage, amounts = read_months(tbl, None, date_column, amount_column if has_amount else None)
    seen["rows"], seen["lineage"] = rows, lineage
    if has_amount:
        seen["amounts"] = amounts

    # The same counts from the manifests' metadata: the partition values the writer recorded.
    parts = tbl.inspect.partitions().to_pylist()
    by_partition = {}
    for p in parts:
        values = list(p["partition"].values())
        if len(values) != 1:
            raise SystemExit("expected one partition field, got %r" % (p["partition"],))
        by_partition[month_of_ordinal(values[0])] = p["record_count"]
    seen["partition_rows"] = dict(sorted(by_partition.items()))

    snapshots = []
    for s in sorted(tbl.metadata.snapshots, key=lambda s: (s.sequence_number, s.timestamp_ms)):
        rows, lineage, _ = read_months(tbl, s.snapshot_id, date_column, None)
        snapshots.append({
            "snapshot_id": s.snapshot_id,
            "parent_id": s.parent_snapshot_id,
            "run_id": s.summary.get("backfill.run-id") if s.summary is not None else None,
            "operation": str(s.summary.operation.value) if s.summary is not None else None,
            "rows": rows,
            "lineage": lineage,
        })
    seen["snapshots"] = snapshots
    return seen


def read_months(tbl, snapshot_id, date_column, amount_column):
    """Rows, distinct `produced_by_run_id` values and amount sums per month, read by a PyIceberg scan
    of `snapshot_id` (None: main's current snapshot)."""
    columns = [date_column, "produced_by_run_id"]
    if amount_column is not None:
        columns.append(amount_column)
    arrow = tbl.scan(selected_fields=tuple(columns), snapshot_id=snapshot_id).to_arrow()
    rows = defaultdict(int)
    lineage = defaultdict(set)
    amounts = defaultdict(int)
    for r in arrow.to_pylist():
        d = r[date_column]
        if not isinstance(d, date):
            raise SystemExit("column %s is %r, not a date" % (date_column, type(d)))
        month = d.strftime("%Y-%m")
        rows[month] += 1
        lineage[month].add(r["produced_by_run_id"])
        if amount_column is not None:
            amounts[month] += r[amount_column]
    return (
        dict(sorted(rows.items())),
        {m: sorted(v) for m, v in sorted(lineage.items())},
        dict(sorted(amounts.items())),
    )


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    catalog_db, warehouse, ident, expected_text = argv[1:]
    expected = json.loads(expected_text)
    date_column = expected.pop("date_column", "event_date")
    amount_column = expected.pop("amount_column", "amount")
    seen = observe(catalog_db, warehouse, ident, date_column, amount_column)
    print(json.dumps(seen, sort_keys=True))
    failed = False
    for key, want in sorted(expected.items()):
        if key not in seen:
            print("MISMATCH %s: unknown key" % key, file=sys.stderr)
            failed = True
        elif seen[key] != want:
            print("MISMATCH %s: expected %s, PyIceberg saw %s" % (key, json.dumps(want), json.dumps(seen[key])),
                  file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
