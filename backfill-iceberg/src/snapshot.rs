//! Snapshot production: the manifests, manifest list and snapshot of one commit, on any branch,
//! appending or replacing the partitions of the added files.
//!
//! iceberg 0.10's own actions only fast-append to `main`; upstream is reworking snapshot production,
//! so this sits behind [`SnapshotProducer`] and can be swapped for upstream actions when they land.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::Result;
use iceberg::spec::{
    DataFile, ManifestContentType, ManifestListWriter, ManifestWriterBuilder, Operation, Snapshot,
    SnapshotReference, SnapshotRetention, SnapshotSummaryCollector, Struct, Summary,
};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};
use uuid::Uuid;

use crate::commit::TableChange;
use crate::error::ice;

/// What one snapshot should do.
#[derive(Debug, Clone)]
pub struct SnapshotRequest<'a> {
    /// The branch the snapshot is committed to (`main`, or a run's audit branch). A branch that
    /// does not exist yet is created at the new snapshot.
    pub branch: &'a str,
    /// Data files to add.
    pub files: Vec<DataFile>,
    /// Delete the live files of every partition an added file belongs to (dynamic overwrite; an
    /// empty file list replaces nothing).
    pub replace_partitions: bool,
    /// Publish partitions (see [`partition_label`](crate::partition_label)) replaced as well, even
    /// where no added file belongs to them (with `replace_partitions` only).
    pub also_replace: Vec<String>,
    /// Summary properties (run id, transform version).
    pub properties: HashMap<String, String>,
}

/// A produced, not yet committed snapshot.
#[derive(Debug, Clone)]
pub struct ProducedSnapshot {
    /// Its id.
    pub snapshot_id: i64,
    /// The branch head it was produced on (its parent).
    pub parent: Option<i64>,
    /// The change that commits it (add snapshot, move the branch; requires the branch unmoved).
    pub change: TableChange,
}

/// Writes the manifests of a snapshot and returns the change that commits it.
///
/// # Contract
/// 1. Nothing is visible until the returned change is committed; the files written (manifests,
///    manifest list) are unreferenced until then.
/// 2. The change requires the table's uuid and the branch's current head, so a commit after another
///    writer moved the branch loses instead of overwriting; produce again from the reloaded table.
/// 3. With `replace_partitions`, exactly the partitions of the added files lose their live files;
///    other partitions keep every file.
/// 4. The snapshot's summary holds the request's properties and the totals of the branch after it.
#[async_trait]
pub trait SnapshotProducer: fmt::Debug + Send + Sync + 'static {
    /// Produces the snapshot `req` describes on `table` as loaded.
    async fn produce(&self, table: &Table, req: SnapshotRequest<'_>) -> Result<ProducedSnapshot>;
}

/// The default producer: format-v2 manifests written with the iceberg crate's manifest writers.
///
/// Limits: files of the table's default partition spec only (older specs' files are kept, never
/// replaced), no delete files (backfill never writes any), unencrypted tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct ManifestProducer;

#[async_trait]
impl SnapshotProducer for ManifestProducer {
    async fn produce(&self, table: &Table, req: SnapshotRequest<'_>) -> Result<ProducedSnapshot> {
        let what = || format!("producing a snapshot of {}", table.identifier());
        let md = table.metadata();
        let file_io = table.file_io();
        let schema = Arc::clone(md.current_schema());
        let spec = Arc::clone(md.default_partition_spec());
        let parent = md.snapshot_for_ref(req.branch).cloned();
        let parent_id = parent.as_ref().map(|s| s.snapshot_id());
        let snapshot_id = loop {
            let id = (Uuid::new_v4().as_u64_pair().0 >> 1) as i64;
            if md.snapshot_by_id(id).is_none() {
                break id;
            }
        };
        let seq = md.next_sequence_number();
        let commit_uuid = Uuid::new_v4();
        let replaced: HashSet<Struct> = if req.replace_partitions {
            req.files.iter().map(|f| f.partition().clone()).collect()
        } else {
            HashSet::new()
        };
        let labels: HashSet<&str> = if req.replace_partitions {
            req.also_replace.iter().map(String::as_str).collect()
        } else {
            HashSet::new()
        };
        let replaces = |p: &Struct| -> Result<bool> {
            Ok(replaced.contains(p)
                || (!labels.is_empty()
                    && labels
                        .contains(crate::partition::partition_label(&spec, &schema, p)?.as_str())))
        };
        let mut collector = SnapshotSummaryCollector::default();
        let mut manifests = Vec::new();
        let mut n = 0;
        let mut next_path = || {
            n += 1;
            format!("{}/metadata/{commit_uuid}-m{n}.avro", md.location())
        };
        if let Some(parent) = &parent {
            let list = table
                .manifest_list_reader(parent)
                .load()
                .await
                .map_err(|e| ice(what(), e))?;
            for mf in list.entries() {
                if (replaced.is_empty() && labels.is_empty())
                    || mf.content != ManifestContentType::Data
                    || mf.partition_spec_id != spec.spec_id()
                {
                    manifests.push(mf.clone());
                    continue;
                }
                let manifest = mf
                    .load_manifest(file_io)
                    .await
                    .map_err(|e| ice(what(), e))?;
                let mut hit = false;
                for e in manifest.entries() {
                    if e.is_alive() && replaces(e.data_file().partition())? {
                        hit = true;
                        break;
                    }
                }
                if !hit {
                    manifests.push(mf.clone());
                    continue;
                }
                let mut w = ManifestWriterBuilder::new(
                    file_io
                        .new_output(next_path())
                        .map_err(|e| ice(what(), e))?,
                    Some(snapshot_id),
                    Arc::clone(&schema),
                    spec.as_ref().clone(),
                )
                .build_v2_data();
                for e in manifest.entries() {
                    if !e.is_alive() {
                        // Deleted entries of older snapshots are dropped on rewrite.
                        continue;
                    }
                    let df = e.data_file().clone();
                    let data_seq = e.sequence_number().ok_or_else(|| {
                        crate::error::corrupt(
                            "manifest entry",
                            format!("{} has no sequence number", df.file_path()),
                        )
                    })?;
                    if replaces(df.partition())? {
                        collector.remove_file(&df, Arc::clone(&schema), Arc::clone(&spec));
                        w.add_delete_file(df, data_seq, e.file_sequence_number)
                            .map_err(|e| ice(what(), e))?;
                    } else {
                        let sid = e.snapshot_id().ok_or_else(|| {
                            crate::error::corrupt(
                                "manifest entry",
                                format!("{} has no snapshot id", df.file_path()),
                            )
                        })?;
                        w.add_existing_file(df, sid, data_seq, e.file_sequence_number)
                            .map_err(|e| ice(what(), e))?;
                    }
                }
                manifests.push(w.write_manifest_file().await.map_err(|e| ice(what(), e))?);
            }
        }
        if !req.files.is_empty() {
            let mut w = ManifestWriterBuilder::new(
                file_io
                    .new_output(next_path())
                    .map_err(|e| ice(what(), e))?,
                Some(snapshot_id),
                Arc::clone(&schema),
                spec.as_ref().clone(),
            )
            .build_v2_data();
            for df in req.files {
                collector.add_file(&df, Arc::clone(&schema), Arc::clone(&spec));
                // The data sequence number is inherited from the snapshot at commit.
                w.add_file(df, -1).map_err(|e| ice(what(), e))?;
            }
            manifests.push(w.write_manifest_file().await.map_err(|e| ice(what(), e))?);
        }
        let list_path = format!(
            "{}/metadata/snap-{snapshot_id}-0-{commit_uuid}.avro",
            md.location()
        );
        let out = file_io
            .new_output(&list_path)
            .map_err(|e| ice(what(), e))?
            .writer()
            .await
            .map_err(|e| ice(what(), e))?;
        let mut lw = ManifestListWriter::v2(out, snapshot_id, parent_id, seq);
        lw.add_manifests(manifests.into_iter())
            .map_err(|e| ice(what(), e))?;
        lw.close().await.map_err(|e| ice(what(), e))?;

        let computed = collector.build();
        let prev = parent
            .as_ref()
            .map(|p| p.summary().additional_properties.clone())
            .unwrap_or_default();
        let mut summary = req.properties;
        summary.extend(computed.clone());
        let get = |m: &HashMap<String, String>, k: &str| -> i64 {
            m.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        for (total, add, del) in [
            ("total-data-files", "added-data-files", "deleted-data-files"),
            ("total-records", "added-records", "deleted-records"),
            ("total-files-size", "added-files-size", "removed-files-size"),
        ] {
            let v = get(&prev, total) + get(&computed, add) - get(&computed, del);
            summary.insert(total.to_owned(), v.to_string());
        }
        for k in [
            "total-delete-files",
            "total-position-deletes",
            "total-equality-deletes",
        ] {
            summary.insert(k.to_owned(), get(&prev, k).to_string());
        }
        let replaced_any = computed.get("deleted-data-files").is_some_and(|n| n != "0");
        let operation =
            if req.replace_partitions && (replaced_any || !replaced.is_empty()) && parent.is_some()
            {
                summary.insert("replace-partitions".into(), "true".into());
                Operation::Overwrite
            } else {
                Operation::Append
            };
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(parent_id)
            .with_sequence_number(seq)
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .with_manifest_list(list_path)
            .with_summary(Summary {
                operation,
                additional_properties: summary,
            })
            .with_schema_id(md.current_schema_id())
            .build();
        Ok(ProducedSnapshot {
            snapshot_id,
            parent: parent_id,
            change: TableChange {
                requirements: vec![
                    TableRequirement::UuidMatch { uuid: md.uuid() },
                    TableRequirement::RefSnapshotIdMatch {
                        r#ref: req.branch.to_owned(),
                        snapshot_id: parent_id,
                    },
                ],
                updates: vec![
                    TableUpdate::AddSnapshot { snapshot },
                    TableUpdate::SetSnapshotRef {
                        ref_name: req.branch.to_owned(),
                        reference: SnapshotReference::new(
                            snapshot_id,
                            SnapshotRetention::branch(None, None, None),
                        ),
                    },
                ],
            },
        })
    }
}
