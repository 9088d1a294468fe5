//! What readers should see after a publication, per mutation mode, and the helpers the publisher
//! checks share (staging a run, publishing it, reading the target).

use std::collections::BTreeMap;
use std::sync::Arc;

use backfill_core::context::ExecutionMode;
use backfill_core::digest::PartitionDigests;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::manifest::{Mutation, RunKind, RunManifest};
use backfill_core::publish::{ChunkArtifact, PublishReceipt, PublishRequest, RollbackRequest};
use backfill_core::sink::StagingSink;
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::TryStreamExt;

use crate::conformance::{op, PublishTarget};
use crate::{ConformanceFailure, TestRow};

/// The staging sink and the target of one check.
pub type Pair = (
    Arc<dyn StagingSink<TestRow>>,
    Arc<dyn PublishTarget<TestRow>>,
);

/// The partitions the suite writes.
pub(crate) const ALL: [&str; 3] = ["2025-01", "2025-02", "2025-03"];

/// What readers see, per partition of [`ALL`], sorted.
pub(crate) type View = BTreeMap<&'static str, Vec<TestRow>>;

/// Every mutation mode the testkit knows how to exercise, in the order it exercises them. Merge by
/// key merges on the `key` column, guarded by the `value` column (the suite's later runs carry
/// larger values, so they win).
pub fn known_modes() -> Vec<Mutation> {
    vec![
        Mutation::ReplacePartitions,
        Mutation::AppendWithRunId,
        Mutation::MergeByKey {
            key: vec!["key".into()],
            version_column: "value".into(),
            delete_column: None,
        },
        Mutation::ShadowSwap,
        Mutation::VersionedOutput,
        Mutation::CorrectionEvents,
    ]
}

/// The rows of one partition, sorted.
pub(crate) fn of(rows: &[TestRow], partition: &str) -> Vec<TestRow> {
    let mut v: Vec<TestRow> = rows
        .iter()
        .filter(|r| r.partition == partition)
        .cloned()
        .collect();
    v.sort();
    v
}

/// Bounds on what one partition may show: at least these rows and at most those (multisets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expect {
    at_least: Vec<TestRow>,
    at_most: Vec<TestRow>,
}

impl Expect {
    fn exact(rows: Vec<TestRow>) -> Self {
        Self {
            at_least: rows.clone(),
            at_most: rows,
        }
    }

    pub(crate) fn admits(&self, got: &[TestRow]) -> bool {
        contains(got, &self.at_least) && contains(&self.at_most, got)
    }

    /// Why `got` is not admitted, for a failure message.
    pub(crate) fn explain(&self, partition: &str, got: &[TestRow]) -> String {
        let missing = difference(&self.at_least, got);
        let extra = difference(got, &self.at_most);
        let bound = if self.at_least == self.at_most {
            format!("exactly {}", self.at_least.len())
        } else {
            format!("between {} and {}", self.at_least.len(), self.at_most.len())
        };
        format!(
            "{partition}: {} rows visible, expected {bound}; {} expected rows missing (first {:?}), {} unexpected (first {:?})",
            got.len(),
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first(),
        )
    }
}

fn counts(rows: &[TestRow]) -> BTreeMap<&TestRow, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r).or_insert(0) += 1;
    }
    m
}

/// Whether the multiset `big` contains the multiset `small`.
fn contains(big: &[TestRow], small: &[TestRow]) -> bool {
    difference(small, big).is_empty()
}

/// The rows of `a` that `b` does not account for (multiset difference).
fn difference(a: &[TestRow], b: &[TestRow]) -> Vec<TestRow> {
    let mut left = counts(b);
    let mut out = Vec::new();
    for r in a {
        match left.get_mut(r) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(r.clone()),
        }
    }
    out
}

/// What readers should see in every partition of [`ALL`] after `staged` is published with `mode`
/// over `before`, the run declaring `declared`.
///
/// | mode | declared partitions | other partitions |
/// |---|---|---|
/// | replace_partitions | exactly the run's rows | unchanged |
/// | shadow_swap, versioned_output | exactly the run's rows (the whole table is the run's) | empty |
/// | append_with_run_id, correction_events | at least the run's rows, at most those and what was there | at most what was there |
/// | merge_by_key | what was there, rows with the run's keys replaced by the run's | unchanged |
pub(crate) fn after(
    mode: &Mutation,
    before: &View,
    staged: &[TestRow],
    declared: &[&str],
) -> BTreeMap<&'static str, Expect> {
    ALL.iter()
        .map(|p| {
            let old = before.get(p).cloned().unwrap_or_default();
            let new = of(staged, p);
            let expect = match mode {
                Mutation::ReplacePartitions if declared.contains(p) => Expect::exact(new),
                Mutation::ReplacePartitions => Expect::exact(old),
                Mutation::ShadowSwap | Mutation::VersionedOutput => Expect::exact(new),
                Mutation::MergeByKey { .. } => {
                    let mut merged: Vec<TestRow> = old
                        .into_iter()
                        .filter(|o| !new.iter().any(|n| n.key == o.key))
                        .chain(new.iter().cloned())
                        .collect();
                    merged.sort();
                    Expect::exact(merged)
                }
                Mutation::AppendWithRunId | Mutation::CorrectionEvents => {
                    let mut most = [old, new.clone()].concat();
                    most.sort();
                    Expect {
                        at_least: new,
                        at_most: most,
                    }
                }
            };
            (*p, expect)
        })
        .collect()
}

/// The view after a publication, exactly: `before` where the model allows only what was there.
pub(crate) fn unchanged(before: &View) -> BTreeMap<&'static str, Expect> {
    ALL.iter()
        .map(|p| {
            (
                *p,
                Expect::exact(before.get(p).cloned().unwrap_or_default()),
            )
        })
        .collect()
}

/// Checks `got` against `expect`, partition by partition.
pub(crate) fn compare(
    check: &'static str,
    clause: &'static str,
    when: &str,
    expect: &BTreeMap<&'static str, Expect>,
    got: &View,
) -> Result<(), ConformanceFailure> {
    for (p, e) in expect {
        let rows = got.get(p).map(Vec::as_slice).unwrap_or_default();
        if !e.admits(rows) {
            return Err(crate::conformance::fail(
                check,
                clause,
                format!("{when}: {}", e.explain(p, rows)),
            ));
        }
    }
    Ok(())
}

/// A fixed instant, `day` days after 2026-07-04.
pub(crate) fn at(day: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::days(day)
}

/// A restatement manifest for the target of `p`: `mode` over `declared`.
pub(crate) fn manifest(p: &Pair, mode: &Mutation, run: &str, declared: &[&str]) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
    m.target.name = p.1.descriptor().name;
    m.target.mutation = Some(mode.clone());
    m.target.partitions = declared.iter().map(|d| PartitionKey::from(*d)).collect();
    m
}

/// A run staged and ready to publish: its manifest, rows and the artifacts of its chunks.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub(crate) manifest: RunManifest,
    pub(crate) rows: Vec<TestRow>,
    pub(crate) artifacts: Vec<ChunkArtifact>,
}

impl Staged {
    pub(crate) fn run_id(&self) -> &RunId {
        &self.manifest.run_id
    }
}

/// Stages the rows of `data` in `declared` as two chunks of run `run`.
pub(crate) async fn stage_run(
    p: &Pair,
    mode: &Mutation,
    run: &str,
    declared: &[&str],
    data: &[TestRow],
) -> Result<Staged, ConformanceFailure> {
    stage_chunks(p, mode, run, declared, data, 2).await
}

/// Stages the rows of `data` in `declared` as `chunks` chunks (`c0`, `c1`, ...) of run `run`.
pub(crate) async fn stage_chunks(
    p: &Pair,
    mode: &Mutation,
    run: &str,
    declared: &[&str],
    data: &[TestRow],
    chunks: usize,
) -> Result<Staged, ConformanceFailure> {
    const C: &str = "publish (setup)";
    let manifest = manifest(p, mode, run, declared);
    let rows: Vec<TestRow> = data
        .iter()
        .filter(|r| declared.contains(&r.partition.as_str()))
        .cloned()
        .collect();
    let size = rows.len().div_ceil(chunks.max(1)).max(1);
    let mut artifacts = Vec::new();
    for (i, part) in rows.chunks(size).enumerate() {
        let chunk = format!("c{i}");
        let chunk = chunk.as_str();
        let receipt = op(
            C,
            "stage",
            crate::sink::stage(p.0.as_ref(), &manifest.run_id, chunk, 1, part.to_vec(), 50).await,
        )?;
        artifacts.push(ChunkArtifact {
            chunk_id: chunk.into(),
            attempt: 1,
            rows: receipt.rows,
            artifact: receipt.artifact,
        });
    }
    Ok(Staged {
        manifest,
        rows,
        artifacts,
    })
}

/// Publishes a staged run (its ledger digests computed from its rows) at `at`.
pub(crate) async fn publish(
    p: &Pair,
    s: &Staged,
    previous: Option<&RunId>,
    at: DateTime<Utc>,
) -> backfill_core::Result<PublishReceipt> {
    let digests = PartitionDigests::of_rows(&s.rows);
    p.1.publish(PublishRequest {
        run_id: s.run_id(),
        manifest: &s.manifest,
        digests: &digests,
        artifacts: &s.artifacts,
        previous,
        at,
    })
    .await
}

/// Stages and publishes a run.
pub(crate) async fn stage_and_publish(
    p: &Pair,
    mode: &Mutation,
    run: &str,
    declared: &[&str],
    data: &[TestRow],
    previous: Option<&RunId>,
) -> Result<(Staged, PublishReceipt), ConformanceFailure> {
    let staged = stage_run(p, mode, run, declared, data).await?;
    let receipt = op(
        "publish (setup)",
        "publish",
        publish(p, &staged, previous, at(0)).await,
    )?;
    Ok((staged, receipt))
}

/// Rolls `from` back to `to`.
pub(crate) async fn rollback(
    p: &Pair,
    from: &Staged,
    to: &RunId,
) -> backfill_core::Result<PublishReceipt> {
    p.1.rollback(RollbackRequest {
        from: from.run_id(),
        to,
        manifest: &from.manifest,
        at: at(1),
    })
    .await
}

/// One partition as readers see it, sorted.
pub(crate) async fn visible(p: &Pair, partition: &str) -> backfill_core::Result<Vec<TestRow>> {
    let key = PartitionKey::from(partition);
    let mut v: Vec<TestRow> = p.1.read_current(&key).try_concat().await?;
    v.sort();
    Ok(v)
}

/// Every partition of [`ALL`] as readers see it.
pub(crate) async fn view(p: &Pair) -> backfill_core::Result<View> {
    let mut out = View::new();
    for part in ALL {
        out.insert(part, visible(p, part).await?);
    }
    Ok(out)
}
