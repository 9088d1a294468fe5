//! Validation before publication: the trait, its context and the built-in validators.

mod compare;
mod delta;
mod rows;
mod totals;

use std::fmt;

use async_trait::async_trait;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

pub use compare::AcceptedComparison;
pub use delta::BusinessDelta;
pub use rows::{AcceptedValues, InRange, NotNull, UniqueKey};
pub use totals::{CountTolerance, DeclaredPartitionsStaged, DigestMatchesLedger, Expected};

use crate::digest::{OutputRow, PartitionDigests};
use crate::error::Result;
use crate::ids::RunId;
use crate::manifest::RunManifest;
use crate::publish::TargetReader;
use crate::sink::StagingSink;
use crate::store::ChunkRecord;

/// A validator's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Passed.
    Pass,
    /// Failed: the run is rejected.
    Fail,
    /// Passed technically but needs an owner's review (business delta over threshold).
    NeedsReview,
}

/// The result of one validator, kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationOutcome {
    /// Validator name.
    pub validator: String,
    /// Verdict.
    pub verdict: Verdict,
    /// One-line summary for people.
    pub summary: String,
    /// Structured details (per-partition numbers, sample offending keys).
    pub details: serde_json::Value,
}

impl ValidationOutcome {
    /// A passing outcome.
    pub fn pass(validator: &str, summary: impl Into<String>, details: serde_json::Value) -> Self {
        Self::new(validator, Verdict::Pass, summary, details)
    }

    /// Builds an outcome.
    pub fn new(
        validator: &str,
        verdict: Verdict,
        summary: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Self {
            validator: validator.into(),
            verdict,
            summary: summary.into(),
            details,
        }
    }
}

/// What a validator can look at.
#[derive(Debug)]
pub struct ValidationContext<'a, R: OutputRow> {
    /// The run.
    pub run_id: &'a RunId,
    /// Its approved manifest.
    pub manifest: &'a RunManifest,
    /// The chunk ledger.
    pub chunks: &'a [ChunkRecord],
    /// Per-partition digests merged from the ledger.
    pub ledger: &'a PartitionDigests,
    /// The staging sink, to read staged rows back.
    pub staged: &'a dyn StagingSink<R>,
    /// The target's reader, to read the currently accepted output.
    pub current: &'a dyn TargetReader<R>,
    /// The run whose output is accepted now (what `current` shows), if any.
    pub accepted: Option<&'a RunId>,
}

impl<R: OutputRow> ValidationContext<'_, R> {
    /// Calls `f` on every staged row of the run (read back from the sink, not from memory).
    pub async fn for_each_staged(&self, mut f: impl FnMut(&R) + Send) -> Result<()> {
        let mut stream = self.staged.read_staged(self.run_id);
        while let Some(batch) = stream.try_next().await? {
            batch.iter().for_each(&mut f);
        }
        Ok(())
    }

    /// The partitions a run may change: the manifest's, or else those in the ledger. A dry run on
    /// a subset of chunks (`safety.dry_run_chunks`) covers only the manifest's partitions its
    /// chunks staged rows in, so comparisons with the accepted output stay within them.
    pub fn partitions(&self) -> Vec<crate::ids::PartitionKey> {
        if self.manifest.target.partitions.is_empty() {
            self.ledger.0.keys().cloned().collect()
        } else if !self.manifest.safety.dry_run_chunks.is_empty() {
            self.manifest
                .target
                .partitions
                .iter()
                .filter(|p| self.ledger.0.contains_key(*p))
                .cloned()
                .collect()
        } else {
            self.manifest.target.partitions.clone()
        }
    }
}

/// A check that runs on staged output before anything is published.
///
/// # Contract
/// 1. `validate` reads what was staged (through the context), not what the runner remembers.
/// 2. It has no side effects on staging or the target.
/// 3. An `Err` means the check could not run (retry later); a failed check is `Ok` with
///    [`Verdict::Fail`].
#[async_trait]
pub trait Validator<R: OutputRow>: fmt::Debug + Send + Sync + 'static {
    /// Name used in evidence.
    fn name(&self) -> &str;

    /// Runs the check.
    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome>;
}

/// Keeps at most this many offending samples in an outcome's details.
pub(crate) const SAMPLES: usize = 10;
