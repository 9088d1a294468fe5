//! A backfill and the live pipeline writing the same target (seed §12).
//!
//! A manifest says how its run shares the target with live writers in `target.live_writes`:
//!
//! - [`LiveWrites::Freeze`]: the run freezes its window (the target's declared partitions) before
//!   its first chunk. Live writers ask a [`TargetWindows`] registry to admit each write; a write
//!   into a frozen partition is refused with [`Error::WindowFrozen`] until the run publishes (or is
//!   cancelled) and the window thaws. Publication refuses when a partition it replaces was written
//!   by a live writer after the freeze (an operator thawed the window early, say).
//! - [`LiveWrites::VersionedWrites`]: live and backfill write separate output versions
//!   (`versioned_output`); nothing is frozen, and publication selects the accepted version.
//! - [`LiveWrites::SourceVersionMerge`]: both merge by key guarded by the source version
//!   (`merge_by_key`): a row replaces another only when its source version is newer, whoever writes
//!   it and whenever it commits; the live writer uses the same guard.
//!
//! [`crate::memory::MemoryWindows`] is the in-memory registry; `backfill-sql` keeps windows in the
//! run store's database, where a live writer admits its write inside its own transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::manifest::{Mutation, RunManifest};

/// How a run shares its target with a live pipeline writing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiveWrites {
    /// No live writer writes the target while the run is open (the default).
    #[default]
    None,
    /// Live writes into the run's partitions are refused from the run's start until it publishes.
    Freeze,
    /// Live and backfill write separate output versions; publication selects the accepted one.
    VersionedWrites,
    /// Both merge by key; a row wins only with a newer source version (never by processing time).
    SourceVersionMerge,
}

impl LiveWrites {
    /// Whether no live writer is declared.
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    /// Short name, as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Freeze => "freeze",
            Self::VersionedWrites => "versioned_writes",
            Self::SourceVersionMerge => "source_version_merge",
        }
    }

    /// What is wrong with this choice for the manifest's target, as `(code, message)` pairs; each
    /// is a blocking finding of [`RunManifest::check`] on `target.live_writes`.
    pub fn problems(self, m: &RunManifest) -> Vec<(&'static str, String)> {
        let mutation = m.target.mutation.as_ref();
        let name = mutation.map_or("none", Mutation::name);
        match self {
            Self::None => vec![],
            Self::Freeze if m.target.partitions.is_empty() => vec![(
                "live_freeze_without_window",
                "a freeze needs the partitions it freezes: declare target.partitions".into(),
            )],
            Self::VersionedWrites if !matches!(mutation, Some(Mutation::VersionedOutput)) => {
                vec![(
                    "live_versions_need_versioned_output",
                    format!("versioned writes publish a version of their own: the mutation must be versioned_output, not {name}"),
                )]
            }
            Self::SourceVersionMerge if !matches!(mutation, Some(Mutation::MergeByKey { .. })) => {
                vec![(
                    "live_merge_needs_merge_by_key",
                    format!("a source-version merge needs merge_by_key with the source version as its version column, not {name}"),
                )]
            }
            _ => vec![],
        }
    }
}

/// One partition of a target as a [`TargetWindows`] registry sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowState {
    /// The target (the manifests' `target.name`).
    pub target: String,
    /// The partition.
    pub partition: String,
    /// The run holding it frozen, if any.
    pub frozen_by: Option<RunId>,
    /// Live writes admitted into it so far (a counter that only grows).
    pub writes: u64,
    /// Who was admitted last.
    pub last_writer: Option<String>,
    /// When.
    pub last_write_at: Option<DateTime<Utc>>,
}

/// A registry of target windows: which partitions a backfill holds frozen, and how many live writes
/// each partition has admitted.
///
/// # Contract
///
/// - [`freeze`](Self::freeze) is all-or-nothing: when any partition is held by another run it
///   freezes none and answers [`Error::WindowFrozen`] naming that run. Freezing again for the same
///   run is a no-op. Once it returns, no [`admit`](Self::admit) into those partitions succeeds until
///   [`thaw`](Self::thaw), and every write admitted before it has been counted.
/// - It returns each partition's write counter at the freeze (the run records it as evidence, and
///   publication compares it with [`windows`](Self::windows) to find writes made after it).
/// - [`admit`](Self::admit) refuses a write into a frozen partition with [`Error::WindowFrozen`],
///   and otherwise counts one write per partition named; counters never go back.
/// - [`thaw`](Self::thaw) releases the run's partitions and nothing else; thawing twice is a no-op.
#[async_trait]
pub trait TargetWindows: std::fmt::Debug + Send + Sync + 'static {
    /// Freezes `partitions` of `target` for `run_id`; answers their write counters at the freeze.
    async fn freeze(
        &self,
        run_id: &RunId,
        target: &str,
        partitions: &[String],
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>>;

    /// Releases every partition `run_id` holds on `target`.
    async fn thaw(&self, run_id: &RunId, target: &str) -> Result<()>;

    /// Admits one live write by `writer` into `partitions` of `target`, or refuses it when one of
    /// them is frozen.
    async fn admit(
        &self,
        target: &str,
        partitions: &[String],
        writer: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Every known partition of `target`, in partition order.
    async fn windows(&self, target: &str) -> Result<Vec<WindowState>>;
}

/// The partitions written by live writers since `watermark` (the counters at the freeze) that the
/// run no longer holds frozen: what a publication replacing them would overwrite unseen.
pub fn written_since(
    run_id: &RunId,
    windows: &[WindowState],
    watermark: &BTreeMap<String, u64>,
) -> Vec<WindowState> {
    windows
        .iter()
        .filter(|w| {
            watermark
                .get(&w.partition)
                .is_some_and(|&at| w.writes > at && w.frozen_by.as_ref() != Some(run_id))
        })
        .cloned()
        .collect()
}

/// The frozen-window error for `partition`, held by `run_id`.
pub(crate) fn frozen(target: &str, partition: &str, run_id: &RunId) -> Error {
    Error::WindowFrozen {
        run_id: run_id.clone(),
        target: target.into(),
        partition: partition.into(),
    }
}
