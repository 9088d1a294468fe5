//! The sections of a [`RunManifest`](super::RunManifest).
//!
//! Every section refuses fields it does not know (`deny_unknown_fields`): a typo such as
//! `manual_publsh` is an error, never a silently ignored setting. Every multi-word field is written
//! in snake_case and also read under its camelCase spelling (the seed's `snapshotId`, `gitCommit`,
//! `maxRowsExpected`, ...); the serialized (and digested) form is always snake_case.
//!
//! Fields added after the first release (`cluster`, `duplicate_files`, `container_image`,
//! `reference_data_version`) are left out of the serialized form when absent, so they do not change
//! the digest of a manifest that does not use them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::range::InputRange;
use super::shorthand;
use super::ManifestDigest;
use crate::ids::{PartitionKey, RunId};

/// Reference to one version of a manifest, used by `supersedes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestRef {
    /// Run of the referenced manifest.
    #[serde(alias = "runId")]
    pub run_id: RunId,
    /// Its version.
    pub version: u32,
    /// Its digest.
    pub digest: ManifestDigest,
}

/// What a file backfill does with a file it has seen before: the same path, or the same content
/// under another path (the seed's "whether duplicate files are ignored, reprocessed, treated as
/// correction, rejected").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateFilePolicy {
    /// Skip it.
    #[serde(alias = "IGNORE")]
    Ignore,
    /// Process it again.
    #[serde(alias = "REPROCESS")]
    Reprocess,
    /// Process it as a correction of the earlier file (recorded as such).
    #[serde(alias = "CORRECTION")]
    Correction,
    /// Refuse it.
    #[serde(alias = "REJECT")]
    Reject,
}

impl DuplicateFilePolicy {
    /// The policy's name as written in a manifest (`ignore`, `reprocess`, `correction`, `reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "ignore",
            Self::Reprocess => "reprocess",
            Self::Correction => "correction",
            Self::Reject => "reject",
        }
    }
}

/// Where the input comes from and exactly which part of it is read.
///
/// Besides its canonical form the section reads the seed's Kafka shape:
/// `{"type": "KAFKA", "cluster": "prod-a", "topic": "case-events-v1", "partitions": [...]}`, where
/// `type` is `kind`, `topic` is `name` and `partitions` (a list of offset ranges) is an
/// [`InputRange::Offsets`] range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSpec {
    /// Source kind, such as `iceberg_table`, `kafka`, `sql_table`, `memory`.
    #[serde(alias = "type")]
    pub kind: String,
    /// Source name, such as `bronze.case_events`; for a log, the topic.
    #[serde(alias = "topic")]
    pub name: String,
    /// Pinned snapshot (Iceberg snapshot id, database snapshot, export id), if the source has one.
    #[serde(alias = "snapshotId", alias = "snapshot_id")]
    pub snapshot: Option<String>,
    /// The exact input range. Required.
    ///
    /// Also read from the seed's shorthands: `{"eventDateFrom", "eventDateTo"}` (both dates
    /// included) and a bare list of partition offset ranges under `partitions`.
    #[serde(alias = "partitions", deserialize_with = "shorthand::input_range")]
    #[schemars(with = "Option<InputRange>")]
    pub range: Option<InputRange>,
    /// The cluster or server the source lives on, such as the Kafka cluster `prod-a`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// What a file backfill does with duplicate files. A file source must say.
    #[serde(alias = "duplicateFiles", skip_serializing_if = "Option::is_none")]
    pub duplicate_files: Option<DuplicateFilePolicy>,
}

/// Semantics of a reference data version (which truth the run reconstructs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceData {
    /// Name, such as `jurisdiction_calendar`.
    pub name: String,
    /// Pinned version, such as `v2026-06-restated`.
    pub version: String,
    /// Which truth the version stands for.
    pub semantics: ReferenceSemantics,
}

/// The code that computes the output, pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TransformSpec {
    /// Transform name.
    pub name: String,
    /// Semantic version. Required.
    pub version: String,
    /// Git commit of the transform's code.
    #[serde(alias = "gitCommit")]
    pub git_commit: Option<String>,
    /// Container image digest, if it runs in one.
    #[serde(alias = "imageDigest")]
    pub image_digest: Option<String>,
    /// Container image reference, such as `registry/company/case-sla:3.1.0` (the seed's
    /// `containerImage`); `image_digest` pins it.
    #[serde(alias = "containerImage", skip_serializing_if = "Option::is_none")]
    pub container_image: Option<String>,
    /// Hash of the canonical transform configuration.
    #[serde(alias = "configHash")]
    pub config_hash: Option<String>,
    /// Hash of the dependency lock file.
    #[serde(alias = "dependencyLockHash")]
    pub dependency_lock_hash: Option<String>,
    /// Reference data versions the transform reads.
    #[serde(alias = "referenceData")]
    pub reference_data: Vec<ReferenceData>,
    /// One version label for all the reference data the transform reads, such as
    /// `calendar-v2026-06-30` (the seed's `referenceDataVersion`). `reference_data` names sets
    /// one by one and says which truth each stands for; prefer it where it can be given.
    #[serde(
        alias = "referenceDataVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub reference_data_version: Option<String>,
}

/// How the target may be changed.
///
/// Written as an object tagged by `type`; a mode without parameters may also be a bare string, in
/// any case (the seed's `"publishMode": "REPLACE_PARTITIONS"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
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
        #[serde(alias = "versionColumn")]
        version_column: String,
        /// Boolean column marking a staged row as a delete of its key (a tombstone, such as a
        /// change-data-capture delete). A staged delete whose version is at least the target's
        /// removes the key; a stale delete never wins, like a stale update. Absent: every
        /// staged row is an upsert.
        #[serde(
            default,
            alias = "deleteColumn",
            skip_serializing_if = "Option::is_none"
        )]
        delete_column: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSpec {
    /// Target kind, such as `sql_table`, `iceberg_table`, `kafka_topic`.
    #[serde(alias = "type")]
    pub kind: String,
    /// Target (data product) name; the accepted-output pointer is kept per target name.
    pub name: String,
    /// The mutation mode. Required. Also read from the seed's `publishMode`.
    #[serde(
        alias = "publishMode",
        alias = "publish_mode",
        deserialize_with = "shorthand::mutation"
    )]
    #[schemars(with = "Option<Mutation>")]
    pub mutation: Option<Mutation>,
    /// The publish partitions the run may change. Output rows outside them are refused.
    pub partitions: Vec<PartitionKey>,
    /// Downstream consumers that will see the change.
    pub consumers: Vec<String>,
    /// Whether replace-partitions may empty a declared partition for which the run staged no rows
    /// (by default that is refused at validation: an empty partition is more often a lost input than
    /// a true "none").
    #[serde(
        skip_serializing_if = "std::ops::Not::not",
        alias = "allowEmptyPartitions"
    )]
    pub allow_empty_partitions: bool,
    /// How the run shares the target with a live pipeline writing it (seed §12): `none` (the
    /// default), `freeze`, `versioned_writes` or `source_version_merge`; see [`crate::live`].
    #[serde(
        skip_serializing_if = "crate::live::LiveWrites::is_none",
        alias = "liveWrites"
    )]
    pub live_writes: crate::live::LiveWrites,
}

/// Which sinks with external side effects the run may write.
///
/// A bare boolean is read as `{"allowed": <bool>}` (the seed's `"sideEffectsAllowed": false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SideEffectPolicy {
    /// Whether any side-effecting sink is allowed at all.
    pub allowed: bool,
    /// Names of side-effecting sinks explicitly allowed (only meaningful when `allowed`).
    #[serde(alias = "allowedSinks")]
    pub allowed_sinks: Vec<String>,
}

/// Throughput limits enforced by the runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Chunks processed at the same time.
    #[serde(alias = "maxChunksInParallel")]
    pub max_chunks_in_parallel: u32,
    /// Output rows per minute.
    #[serde(alias = "maxRowsPerMinute")]
    pub max_rows_per_minute: Option<u64>,
    /// Output bytes (canonical encoding) per minute.
    #[serde(alias = "maxBytesPerMinute")]
    pub max_bytes_per_minute: Option<u64>,
    /// Staging commits (finished chunks) per hour.
    #[serde(alias = "maxSinkCommitsPerHour")]
    pub max_sink_commits_per_hour: Option<u64>,
    /// Pause after each chunk (window), in milliseconds.
    #[serde(alias = "pauseBetweenWindowsMs")]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SafetySpec {
    /// Side-effect policy. Required. Also read from the seed's boolean `sideEffectsAllowed`.
    #[serde(
        alias = "sideEffects",
        alias = "sideEffectsAllowed",
        alias = "side_effects_allowed",
        deserialize_with = "shorthand::side_effects"
    )]
    #[schemars(with = "Option<SideEffectPolicy>")]
    pub side_effects: Option<SideEffectPolicy>,
    /// The run stops when it produces more output rows than this: all its workers together, within
    /// a batch per worker (on stores with run-wide tallies; see `RunStore::tally`).
    #[serde(alias = "maxRowsExpected")]
    pub max_rows_expected: Option<u64>,
    /// Cost ceiling in whole US dollars. With prices in `cost_model`, a run whose estimate is over
    /// it is refused before any chunk, and a run whose input read so far (by all its workers) costs
    /// more stops.
    #[serde(alias = "maxCostUsd")]
    pub max_cost_usd: Option<u64>,
    /// Declared rates (records and bytes per second, prices) from which the estimate before
    /// approval derives duration and cost (see [`crate::estimate`]).
    #[serde(alias = "costModel", skip_serializing_if = "Option::is_none")]
    pub cost_model: Option<crate::estimate::CostModel>,
    /// Labels of the chunks a dry run runs (such as `2025-03`): the whole input is planned and
    /// its coverage checked, then only these chunks are read, staged and validated. Only in
    /// `dry_run` mode; empty (the default): every chunk.
    #[serde(alias = "dryRunChunks", skip_serializing_if = "Vec::is_empty")]
    pub dry_run_chunks: Vec<String>,
    /// Stop at `Validated` and wait for an explicit publish (the seed's `requiresManualPublish`).
    #[serde(
        alias = "manualPublish",
        alias = "requiresManualPublish",
        alias = "requires_manual_publish"
    )]
    pub manual_publish: bool,
    /// Input records one chunk may quarantine before it fails: records the transform refuses for
    /// good (a malformed bronze row, a poison message) are kept out of the output with their
    /// position, counted in evidence and in `backfill_rejected_records_total`, and the rest of the
    /// chunk goes on. 0 (the default): the first such record fails the chunk.
    #[serde(alias = "maxRejectedPerChunk", skip_serializing_if = "is_zero")]
    pub max_rejected_per_chunk: u64,
    /// Throughput limits.
    pub limits: Limits,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What must be checked before publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationPlan {
    /// Allowed absolute difference between expected and staged row counts.
    #[serde(alias = "countTolerance")]
    pub count_tolerance: Option<u64>,
    /// Recompute per-partition digests from staged rows and compare with the ledger.
    #[serde(alias = "checksumRequired")]
    pub checksum_required: bool,
    /// Business-delta threshold in percent; above it the run waits for owner review.
    #[serde(alias = "businessDeltaMaxPct")]
    pub business_delta_max_pct: Option<u32>,
    /// Named quality gate (the validators the operator attaches).
    #[serde(alias = "qualityGate")]
    pub quality_gate: Option<String>,
    /// Further named checks, for the record.
    pub checks: Vec<String>,
}

impl ValidationPlan {
    pub(super) fn is_empty(&self) -> bool {
        self.count_tolerance.is_none()
            && !self.checksum_required
            && self.business_delta_max_pct.is_none()
            && self.quality_gate.is_none()
            && self.checks.is_empty()
    }
}

/// Privacy and retention answers (the checklist's "Is privacy/retention policy satisfied?").
///
/// A source that holds personal data says so with `personal_data: true`. Then every question of
/// the section must be answered (`purpose`, `retained_from`, `target_classification`,
/// `masked_fields`, `access_role`, `forgotten_registry`): each one left open is a blocking
/// finding of [`RunManifest::check`](super::RunManifest::check) naming its field, so the manifest
/// cannot be approved. A [`Withheld`](crate::privacy::Withheld) source checks the answers against
/// the source owner's [`PrivacyPolicy`](crate::privacy::PrivacyPolicy) when it plans and reads.
/// The fields added for this are left out of the serialized form when absent, so older manifests
/// keep their digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySpec {
    /// Purpose the data is processed for.
    pub purpose: String,
    /// Whether source retention legality was checked.
    #[serde(alias = "retentionChecked")]
    pub retention_checked: bool,
    /// Whether deletions/erasure requests are honoured by the replay.
    #[serde(alias = "erasureChecked")]
    pub erasure_checked: bool,
    /// Whether the source holds personal data. `true` makes every other question of the section
    /// required for approval; absent keeps the section advisory.
    #[serde(alias = "personalData", skip_serializing_if = "Option::is_none")]
    pub personal_data: Option<bool>,
    /// The oldest input the source's retention policy still allows processing, as assessed for
    /// this approval: an input range that starts earlier is a blocking finding.
    #[serde(alias = "retainedFrom", skip_serializing_if = "Option::is_none")]
    pub retained_from: Option<chrono::NaiveDate>,
    /// How the target is classified; it must be at least as strict as the source's data.
    #[serde(
        alias = "targetClassification",
        skip_serializing_if = "Option::is_none"
    )]
    pub target_classification: Option<crate::privacy::DataClass>,
    /// The source fields the transform masks or tokenizes before they reach the target (an empty
    /// list: none). The source's policy names the fields that must be.
    #[serde(alias = "maskedFields", skip_serializing_if = "Option::is_none")]
    pub masked_fields: Option<Vec<String>>,
    /// The role (or principal) the run reads the source as; the source's policy names who may.
    #[serde(alias = "accessRole", skip_serializing_if = "Option::is_none")]
    pub access_role: Option<String>,
    /// The deletion (tombstone) registry the replay consults: subjects it names are never staged.
    #[serde(alias = "forgottenRegistry", skip_serializing_if = "Option::is_none")]
    pub forgotten_registry: Option<String>,
}

impl PrivacySpec {
    /// Whether the section says the source holds personal data.
    pub fn declares_personal_data(&self) -> bool {
        self.personal_data == Some(true)
    }

    /// The questions left open, as field paths inside the section (`purpose`, `retained_from`,
    /// ...), in declaration order. Only meaningful for a source with personal data.
    pub fn unanswered(&self) -> Vec<&'static str> {
        let mut open = Vec::new();
        if self.purpose.trim().is_empty() {
            open.push("purpose");
        }
        if self.retained_from.is_none() {
            open.push("retained_from");
        }
        if self.target_classification.is_none() {
            open.push("target_classification");
        }
        if self.masked_fields.is_none() {
            open.push("masked_fields");
        }
        if self
            .access_role
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
        {
            open.push("access_role");
        }
        if self
            .forgotten_registry
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
        {
            open.push("forgotten_registry");
        }
        open
    }
}
