//! The run manifest: the approved, immutable statement of what a run may read, compute and change.
//!
//! A [`RunManifest`] is a draft until [`RunManifest::approve`] binds an [`Approval`] to its
//! [`ManifestDigest`]; the result, an [`ApprovedManifest`], exposes no way to change it. A change of
//! scope is a new version made by [`ApprovedManifest::amend`] that `supersedes` the old one.

mod approval;
mod canonical;
mod check;
mod range;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use approval::{Approval, ApprovedManifest, StoredManifest};
pub use canonical::{canonical_json, ManifestDigest};
pub use check::{Finding, Findings, Severity};
pub use range::{InputRange, OffsetRange};

use crate::context::ExecutionMode;
use crate::error::{Error, Result};
use crate::ids::{PartitionKey, RunId};

/// What kind of historical change a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Produce missing or newly required historical output.
    Backfill,
    /// Read old input again from a log or source.
    Replay,
    /// Re-run a transformation over existing input.
    Reprocessing,
    /// Publish corrected output that supersedes earlier accepted output.
    Restatement,
    /// Fix a bounded, corrupted subset.
    Repair,
    /// Populate a new target from an old source.
    Migration,
    /// Initial load before streaming begins.
    Bootstrap,
    /// Compare source and target to detect mismatch.
    Reconciliation,
}

/// Reference to one version of a manifest, used by `supersedes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRef {
    /// Run of the referenced manifest.
    pub run_id: RunId,
    /// Its version.
    pub version: u32,
    /// Its digest.
    pub digest: ManifestDigest,
}

/// Where the input comes from and exactly which part of it is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SourceSpec {
    /// Source kind, such as `iceberg_table`, `kafka`, `sql_table`, `memory`.
    pub kind: String,
    /// Source name, such as `bronze.case_events`.
    pub name: String,
    /// Pinned snapshot (Iceberg snapshot id, database snapshot, export id), if the source has one.
    pub snapshot: Option<String>,
    /// The exact input range. Required.
    pub range: Option<InputRange>,
}

/// Semantics of a reference data version (which truth the run reconstructs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceSemantics {
    /// What the system believed at the time.
    AsRecorded,
    /// What should have been true.
    CorrectedTruth,
    /// The current accepted reference version.
    Current,
    /// The version used by the original decision being audited.
    OriginalDecision,
}

/// One pinned reference data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceData {
    /// Name, such as `jurisdiction_calendar`.
    pub name: String,
    /// Pinned version, such as `v2026-06-restated`.
    pub version: String,
    /// Which truth the version stands for.
    pub semantics: ReferenceSemantics,
}

/// The code that computes the output, pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TransformSpec {
    /// Transform name.
    pub name: String,
    /// Semantic version. Required.
    pub version: String,
    /// Git commit of the transform's code.
    pub git_commit: Option<String>,
    /// Container image digest, if it runs in one.
    pub image_digest: Option<String>,
    /// Hash of the canonical transform configuration.
    pub config_hash: Option<String>,
    /// Hash of the dependency lock file.
    pub dependency_lock_hash: Option<String>,
    /// Reference data versions the transform reads.
    pub reference_data: Vec<ReferenceData>,
}

/// How the target may be changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Mutation {
    /// Append rows tagged with the run id; readers see the accepted run through a view.
    AppendWithRunId,
    /// Replace exactly the manifest's partitions.
    ReplacePartitions,
    /// Merge by business key, guarded by a version column (a stale version never wins).
    MergeByKey {
        /// Business key columns.
        key: Vec<String>,
        /// Version column compared before a row is replaced.
        version_column: String,
    },
    /// Write a shadow table, then swap a pointer or view.
    ShadowSwap,
    /// Write a new output version that coexists with the old ones.
    VersionedOutput,
    /// Publish correction events that reference what they correct.
    CorrectionEvents,
}

impl Mutation {
    /// Short name, as used in evidence and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AppendWithRunId => "append_with_run_id",
            Self::ReplacePartitions => "replace_partitions",
            Self::MergeByKey { .. } => "merge_by_key",
            Self::ShadowSwap => "shadow_swap",
            Self::VersionedOutput => "versioned_output",
            Self::CorrectionEvents => "correction_events",
        }
    }
}

/// What output is allowed to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TargetSpec {
    /// Target kind, such as `sql_table`, `iceberg_table`, `kafka_topic`.
    pub kind: String,
    /// Target (data product) name; the accepted-output pointer is kept per target name.
    pub name: String,
    /// The mutation mode. Required.
    pub mutation: Option<Mutation>,
    /// The publish partitions the run may change. Output rows outside them are refused.
    pub partitions: Vec<PartitionKey>,
    /// Downstream consumers that will see the change.
    pub consumers: Vec<String>,
    /// Whether replace-partitions may empty a declared partition for which the run staged no rows
    /// (by default that is refused at validation: an empty partition is more often a lost input than
    /// a true "none").
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty_partitions: bool,
}

/// Which sinks with external side effects the run may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SideEffectPolicy {
    /// Whether any side-effecting sink is allowed at all.
    pub allowed: bool,
    /// Names of side-effecting sinks explicitly allowed (only meaningful when `allowed`).
    pub allowed_sinks: Vec<String>,
}

/// Throughput limits enforced by the runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Chunks processed at the same time.
    pub max_chunks_in_parallel: u32,
    /// Output rows per minute.
    pub max_rows_per_minute: Option<u64>,
    /// Output bytes (canonical encoding) per minute.
    pub max_bytes_per_minute: Option<u64>,
    /// Staging commits (finished chunks) per hour.
    pub max_sink_commits_per_hour: Option<u64>,
    /// Pause after each chunk (window), in milliseconds.
    pub pause_between_windows_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_chunks_in_parallel: 1,
            max_rows_per_minute: None,
            max_bytes_per_minute: None,
            max_sink_commits_per_hour: None,
            pause_between_windows_ms: 0,
        }
    }
}

/// Bounds on what the run may cost and do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SafetySpec {
    /// Side-effect policy. Required.
    pub side_effects: Option<SideEffectPolicy>,
    /// The run stops when it produces more output rows than this.
    pub max_rows_expected: Option<u64>,
    /// Cost ceiling in whole US dollars (recorded and reported; estimating cost is the operator's).
    pub max_cost_usd: Option<u64>,
    /// Stop at `Validated` and wait for an explicit publish.
    pub manual_publish: bool,
    /// Throughput limits.
    pub limits: Limits,
}

/// What must be checked before publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ValidationPlan {
    /// Allowed absolute difference between expected and staged row counts.
    pub count_tolerance: Option<u64>,
    /// Recompute per-partition digests from staged rows and compare with the ledger.
    pub checksum_required: bool,
    /// Business-delta threshold in percent; above it the run waits for owner review.
    pub business_delta_max_pct: Option<u32>,
    /// Named quality gate (the validators the operator attaches).
    pub quality_gate: Option<String>,
    /// Further named checks, for the record.
    pub checks: Vec<String>,
}

impl ValidationPlan {
    fn is_empty(&self) -> bool {
        self.count_tolerance.is_none()
            && !self.checksum_required
            && self.business_delta_max_pct.is_none()
            && self.quality_gate.is_none()
            && self.checks.is_empty()
    }
}

/// Privacy and retention answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PrivacySpec {
    /// Purpose the data is processed for.
    pub purpose: String,
    /// Whether source retention legality was checked.
    pub retention_checked: bool,
    /// Whether deletions/erasure requests are honoured by the replay.
    pub erasure_checked: bool,
}

/// The run manifest: every section of a backfill's intent.
///
/// ```
/// use backfill_core::manifest::*;
/// use backfill_core::context::ExecutionMode;
///
/// let mut m = RunManifest::new("bf-001", RunKind::Restatement, ExecutionMode::Backfill);
/// m.reason = "fix timezone bug".into();
/// m.requested_by = "data-platform".into();
/// let json = m.to_json_pretty();
/// let back = RunManifest::from_json(&json).unwrap();
/// assert_eq!(back.digest(), m.digest());
/// // Sections that must be answered are missing, so it cannot be approved yet.
/// assert!(m.check().has_blocking());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunManifest {
    /// Run identity.
    pub run_id: RunId,
    /// Manifest version, starting at 1.
    #[serde(default = "one")]
    pub version: u32,
    /// The manifest version this one amends, if any.
    #[serde(default)]
    pub supersedes: Option<ManifestRef>,
    /// What kind of change this is.
    pub kind: RunKind,
    /// Execution mode stamped on every output.
    pub mode: ExecutionMode,
    /// The business reason.
    #[serde(default)]
    pub reason: String,
    /// Who asked for it.
    #[serde(default)]
    pub requested_by: String,
    /// The input.
    #[serde(default)]
    pub source: SourceSpec,
    /// The range whose output may be published (narrower than the input when there is warm-up).
    #[serde(default)]
    pub publish_range: Option<InputRange>,
    /// The code.
    #[serde(default)]
    pub transform: TransformSpec,
    /// The target and how it may change.
    #[serde(default)]
    pub target: TargetSpec,
    /// Safety bounds.
    #[serde(default)]
    pub safety: SafetySpec,
    /// Validation plan. Required.
    #[serde(default)]
    pub validation: Option<ValidationPlan>,
    /// Privacy answers.
    #[serde(default)]
    pub privacy: Option<PrivacySpec>,
    /// Free-form labels (ticket ids, teams).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

impl RunManifest {
    /// A draft with the given identity and everything else empty.
    pub fn new(run_id: impl Into<RunId>, kind: RunKind, mode: ExecutionMode) -> Self {
        Self {
            run_id: run_id.into(),
            version: 1,
            supersedes: None,
            kind,
            mode,
            reason: String::new(),
            requested_by: String::new(),
            source: SourceSpec::default(),
            publish_range: None,
            transform: TransformSpec::default(),
            target: TargetSpec::default(),
            safety: SafetySpec::default(),
            validation: None,
            privacy: None,
            labels: BTreeMap::new(),
        }
    }

    /// Parses a manifest from JSON. Errors name the offending field.
    pub fn from_json(json: &str) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let run_id = serde_json::from_str::<serde_json::Value>(json)
                .ok()
                .and_then(|v| v.get("run_id").and_then(|r| r.as_str()).map(RunId::from))
                .unwrap_or_default();
            Error::InvalidManifest {
                run_id,
                field: e.path().to_string(),
                message: e.inner().to_string(),
            }
        })
    }

    /// Pretty JSON for people. The digest is computed over [`canonical_json`], not this.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The canonical digest of this manifest.
    pub fn digest(&self) -> ManifestDigest {
        ManifestDigest::of(self)
    }

    /// The range outputs may be published for: `publish_range`, or the input range when absent.
    pub fn effective_publish_range(&self) -> Option<&InputRange> {
        self.publish_range.as_ref().or(self.source.range.as_ref())
    }

    /// The target's mutation mode, or a typed error naming the field when it is missing.
    pub fn mutation(&self) -> Result<&Mutation> {
        self.target
            .mutation
            .as_ref()
            .ok_or_else(|| Error::InvalidManifest {
                run_id: self.run_id.clone(),
                field: "target.mutation".into(),
                message: "missing".into(),
            })
    }
}
