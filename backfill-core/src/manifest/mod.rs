//! The run manifest: the approved, immutable statement of what a run may read, compute and change.
//!
//! A [`RunManifest`] is a draft until [`RunManifest::approve`] binds an [`Approval`] to its
//! [`ManifestDigest`]; the result, an [`ApprovedManifest`], exposes no way to change it. A change of
//! scope is a new version made by [`ApprovedManifest::amend`] that `supersedes` the old one.

mod approval;
mod canonical;
mod check;
mod load;
mod range;
mod schema;
mod sections;
mod shorthand;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use approval::{Approval, ApprovedManifest, StoredManifest};
pub use canonical::{canonical_json, ManifestDigest};
pub use check::{Finding, Findings, Severity, CHECKLIST};
pub use range::{InputRange, OffsetRange};
pub use sections::{
    DuplicateFilePolicy, Limits, ManifestRef, Mutation, PrivacySpec, ReferenceData,
    ReferenceSemantics, SafetySpec, SideEffectPolicy, SourceSpec, TargetSpec, TransformSpec,
    ValidationPlan,
};

/// The manifest schema version this release writes and the newest it reads.
///
/// A manifest without `schema_version` is version 1. A manifest with a newer version is refused
/// with [`Error::InvalidManifest`] on the field `schema_version`: an older release cannot know
/// what the newer fields mean, and guessing would change what was approved.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

use crate::context::ExecutionMode;
use crate::error::{Error, Result};
use crate::ids::RunId;

/// What kind of historical change a run is.
///
/// Also read in upper case, as the seed writes it (`BACKFILL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Produce missing or newly required historical output.
    #[serde(alias = "BACKFILL")]
    Backfill,
    /// Read old input again from a log or source.
    #[serde(alias = "REPLAY")]
    Replay,
    /// Re-run a transformation over existing input.
    #[serde(alias = "REPROCESSING")]
    Reprocessing,
    /// Publish corrected output that supersedes earlier accepted output.
    #[serde(alias = "RESTATEMENT")]
    Restatement,
    /// Fix a bounded, corrupted subset.
    #[serde(alias = "REPAIR")]
    Repair,
    /// Populate a new target from an old source.
    #[serde(alias = "MIGRATION")]
    Migration,
    /// Initial load before streaming begins.
    #[serde(alias = "BOOTSTRAP")]
    Bootstrap,
    /// Compare source and target to detect mismatch.
    #[serde(alias = "RECONCILIATION")]
    Reconciliation,
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
///
/// # Reading manifests
/// [`from_json`](Self::from_json), [`from_yaml`](Self::from_yaml), [`from_toml`](Self::from_toml)
/// and [`load`](Self::load) (by file extension) refuse unknown fields in every section and name the
/// offending field by its path (`safety.manual_publsh`). Besides the canonical snake_case form
/// they read the seed's camelCase spellings and shorthands (`runId`, `"kind": "BACKFILL"`,
/// `"publishMode": "REPLACE_PARTITIONS"`, `"sideEffectsAllowed": false`, a Kafka source's
/// `topic`/`partitions`); see each section's docs. What is written, digested and described by
/// [`json_schema`](Self::json_schema) is always the canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunManifest {
    /// Version of the manifest format, [`MANIFEST_SCHEMA_VERSION`] when written by this release;
    /// 1 when absent. A newer version than this release knows is refused.
    #[serde(
        default = "one",
        alias = "schemaVersion",
        deserialize_with = "shorthand::schema_version"
    )]
    #[schemars(with = "u32", range(min = 1, max = MANIFEST_SCHEMA_VERSION))]
    pub schema_version: u32,
    /// Run identity.
    #[serde(alias = "runId")]
    pub run_id: RunId,
    /// Manifest version, starting at 1.
    #[serde(default = "one")]
    pub version: u32,
    /// The manifest version this one amends, if any.
    #[serde(default)]
    pub supersedes: Option<ManifestRef>,
    /// What kind of change this is.
    pub kind: RunKind,
    /// Execution mode stamped on every output; `backfill` when absent (the seed stamps replays
    /// `processingMode=BACKFILL` too). Read in any case.
    #[serde(
        default = "backfill_mode",
        alias = "processingMode",
        alias = "processing_mode",
        deserialize_with = "shorthand::execution_mode"
    )]
    #[schemars(with = "ExecutionMode")]
    pub mode: ExecutionMode,
    /// The business reason.
    #[serde(default)]
    pub reason: String,
    /// Who asked for it.
    #[serde(default, alias = "requestedBy")]
    pub requested_by: String,
    /// The owner who must approve this manifest (the seed's `approvedBy`). When set,
    /// [`approve`](Self::approve) and [`StoredManifest::verify`] refuse any other approver; the
    /// approval itself is still the separate [`Approval`] record bound to the digest.
    #[serde(default, alias = "approvedBy", skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The input.
    #[serde(default)]
    pub source: SourceSpec,
    /// The range whose output may be published (narrower than the input when there is warm-up).
    #[serde(
        default,
        alias = "publishRange",
        deserialize_with = "shorthand::input_range"
    )]
    #[schemars(with = "Option<InputRange>")]
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

fn backfill_mode() -> ExecutionMode {
    ExecutionMode::Backfill
}

impl RunManifest {
    /// A draft with the given identity and everything else empty.
    pub fn new(run_id: impl Into<RunId>, kind: RunKind, mode: ExecutionMode) -> Self {
        Self {
            schema_version: MANIFEST_SCHEMA_VERSION,
            run_id: run_id.into(),
            version: 1,
            supersedes: None,
            kind,
            mode,
            reason: String::new(),
            requested_by: String::new(),
            approved_by: None,
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

    /// The duplicate-file policy of a file source, or a typed error naming
    /// `source.duplicate_files` when the manifest does not state one.
    pub fn duplicate_file_policy(&self) -> Result<DuplicateFilePolicy> {
        self.source.duplicate_files.ok_or_else(|| {
            // Before it was a typed field the policy was a label; say where it went.
            let moved = if self.labels.contains_key("duplicate_files") {
                "; the label `duplicate_files` is no longer read, state the policy here"
            } else {
                ""
            };
            Error::InvalidManifest {
                run_id: self.run_id.clone(),
                field: "source.duplicate_files".into(),
                message: format!(
                    "missing: a file backfill must say what it does with duplicate files \
                     (ignore, reprocess, correction or reject){moved}"
                ),
            }
        })
    }
}
