//! Validation on the table itself: what a snapshot holds per partition (rows, digests of the rows
//! read back through Iceberg's own metadata), and the diff of one snapshot against another.

use std::collections::BTreeMap;
use std::fmt;

use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::Result;
use futures::TryStreamExt;
use iceberg::table::Table;

use crate::error::ice;
use crate::partition::partition_label;
use crate::rows::ArrowRows;

/// A live data file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveFile {
    pub(crate) path: String,
    pub(crate) partition: String,
    pub(crate) rows: u64,
}

/// The live data files of `snapshot`, with their publish partitions, sorted by path.
pub(crate) async fn live_files(table: &Table, snapshot: i64) -> Result<Vec<LiveFile>> {
    let what = || format!("planning a scan of {} at {snapshot}", table.identifier());
    let scan = table
        .scan()
        .snapshot_id(snapshot)
        .select_all()
        .build()
        .map_err(|e| ice(what(), e))?;
    let tasks: Vec<_> = scan
        .plan_files()
        .await
        .map_err(|e| ice(what(), e))?
        .try_collect()
        .await
        .map_err(|e| ice(what(), e))?;
    let md = table.metadata();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let spec = t
            .partition_spec
            .clone()
            .unwrap_or_else(|| std::sync::Arc::clone(md.default_partition_spec()));
        let partition = match &t.partition {
            Some(p) => partition_label(&spec, md.current_schema(), p)?,
            None => crate::partition::UNPARTITIONED.to_owned(),
        };
        out.push(LiveFile {
            path: t.data_file_path.clone(),
            partition,
            rows: t.record_count.unwrap_or(0),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

/// Paths of the live files of `snapshot` whose partition passes `keep`.
pub(crate) async fn files_of(
    table: &Table,
    snapshot: i64,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    Ok(live_files(table, snapshot)
        .await?
        .into_iter()
        .filter(|f| keep(&f.partition))
        .map(|f| f.path)
        .collect())
}

/// Digests of the rows `snapshot` holds in the partitions `keep` selects, read from its data files.
pub async fn partition_digests<R: OutputRow, C: ArrowRows<R> + ?Sized>(
    table: &Table,
    snapshot: i64,
    codec: &C,
    keep: impl Fn(&str) -> bool,
) -> Result<PartitionDigests> {
    let mut out = PartitionDigests::default();
    for f in live_files(table, snapshot).await? {
        if !keep(&f.partition) {
            continue;
        }
        let rows: Vec<R> = crate::files::read_rows(table, &f.path, codec).await?;
        out.merge(&PartitionDigests::of_rows(&rows));
    }
    Ok(out)
}

/// Every row `snapshot` holds in the partitions `keep` selects, decoded, file by file in path order.
pub async fn rows_at<R: OutputRow, C: ArrowRows<R> + ?Sized>(
    table: &Table,
    snapshot: i64,
    codec: &C,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<R>> {
    let mut out = Vec::new();
    for f in live_files(table, snapshot).await? {
        if keep(&f.partition) {
            out.extend(crate::files::read_rows::<R, C>(table, &f.path, codec).await?);
        }
    }
    Ok(out)
}

/// Rows per partition before and after a change, from the snapshots' file metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotDiff {
    /// `(rows before, rows after)` per partition that differs.
    pub partitions: BTreeMap<String, (u64, u64)>,
}

impl fmt::Display for SnapshotDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.partitions.is_empty() {
            return f.write_str("no partition changed");
        }
        for (i, (p, (a, b))) in self.partitions.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}: {a} -> {b} rows")?;
        }
        Ok(())
    }
}

/// The partitions whose files differ between `base` (none: an empty table) and `snapshot`.
pub async fn diff(table: &Table, base: Option<i64>, snapshot: i64) -> Result<SnapshotDiff> {
    let per = |files: Vec<LiveFile>| {
        let mut m: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
        for f in files {
            let e = m.entry(f.partition).or_default();
            e.0 += f.rows;
            e.1.push(f.path);
        }
        m
    };
    let before = match base {
        Some(b) => per(live_files(table, b).await?),
        None => BTreeMap::new(),
    };
    let after = per(live_files(table, snapshot).await?);
    let mut out = SnapshotDiff::default();
    for p in before.keys().chain(after.keys()) {
        let (a, b) = (before.get(p), after.get(p));
        if a.map(|x| &x.1) != b.map(|x| &x.1) {
            out.partitions
                .insert(p.clone(), (a.map_or(0, |x| x.0), b.map_or(0, |x| x.0)));
        }
    }
    Ok(out)
}
