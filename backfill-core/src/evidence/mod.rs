//! Typed, versioned evidence: what happened to a run, who did it, when and why.
//!
//! Every record is one variant of [`EvidenceRecord`], stored as JSON tagged with its `type` and the
//! record format version `v`. Status, reports and [`bundle`] read these records typed; nothing
//! re-parses untyped JSON.

pub mod bundle;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::PartitionDigests;
use crate::estimate::Estimate;
use crate::ids::{ChunkId, RunId};
use crate::manifest::{Approval, ManifestDigest, ManifestRef};
use crate::publish::PublishReceipt;
use crate::sink::StagedArtifact;
use crate::state::Transition;
use crate::validate::ValidationOutcome;

/// Version of the evidence record format written by this release.
pub const EVIDENCE_FORMAT: u32 = 1;

/// Kinds of evidence records (the `type` tag), for filtering and for stores that index by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvidenceKind {
    /// A manifest version was stored.
    ManifestStored,
    /// A manifest was approved.
    Approved,
    /// The plan was resolved and persisted.
    PlanResolved,
    /// A lifecycle transition.
    Transition,
    /// A chunk was staged.
    ChunkStaged,
    /// A chunk attempt failed.
    ChunkFailed,
    /// A validator's outcome.
    Validation,
    /// An owner's review decision.
    Review,
    /// A publish receipt.
    Published,
    /// The accepted pointer moved.
    PointerMoved,
    /// A rollback.
    RolledBack,
    /// An operator asked for cancellation.
    CancelRequested,
    /// An attachment: a file or summary a job added (diff CSV hash, report).
    Note,
    /// The estimate before the run: chunks, input size, duration, cost, coverage.
    Estimated,
    /// The run froze its target window against live writes.
    WindowFrozen,
    /// The run's target window thawed.
    WindowThawed,
}

impl EvidenceKind {
    /// snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ManifestStored => "manifest_stored",
            Self::Approved => "approved",
            Self::PlanResolved => "plan_resolved",
            Self::Transition => "transition",
            Self::ChunkStaged => "chunk_staged",
            Self::ChunkFailed => "chunk_failed",
            Self::Validation => "validation",
            Self::Review => "review",
            Self::Published => "published",
            Self::PointerMoved => "pointer_moved",
            Self::RolledBack => "rolled_back",
            Self::CancelRequested => "cancel_requested",
            Self::Note => "note",
            Self::Estimated => "estimated",
            Self::WindowFrozen => "window_frozen",
            Self::WindowThawed => "window_thawed",
        }
    }
}

/// The chunks of a resolved plan, as evidence shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChunkSummary {
    /// Chunk id.
    pub id: ChunkId,
    /// Label.
    pub label: String,
    /// Exact input range, as text.
    pub range: String,
}

/// An input record a chunk kept out of its output: the transform refused it for good (a malformed
/// row, a poison message) and the manifest's quarantine budget allowed the chunk to go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    /// Its position in the chunk's read order (0-based; the same on every read of the chunk).
    pub ordinal: u64,
    /// What the transform named it by (a source position such as `orders/2@1041`, a key).
    pub input: Option<String>,
    /// Why it was refused.
    pub error: String,
}

/// One evidence record. Serialized as `{"v": 1, "type": "<kind>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvidenceRecord {
    /// A manifest version was stored.
    ManifestStored {
        /// Its digest.
        digest: ManifestDigest,
        /// Its version.
        version: u32,
        /// The version it amends.
        supersedes: Option<ManifestRef>,
    },
    /// An owner approved the manifest's digest.
    Approved(Approval),
    /// The plan was resolved and persisted.
    PlanResolved {
        /// Source name.
        source: String,
        /// Resolved snapshot.
        snapshot: Option<String>,
        /// The ref it was resolved from.
        resolved_from: Option<String>,
        /// The chunks.
        chunks: Vec<PlannedChunkSummary>,
    },
    /// A lifecycle transition.
    Transition(Transition),
    /// A chunk was staged and recorded.
    ChunkStaged {
        /// The chunk.
        chunk_id: ChunkId,
        /// Attempt.
        attempt: u32,
        /// Input records read.
        input: u64,
        /// Output rows staged.
        output: u64,
        /// Per-partition digests.
        digests: PartitionDigests,
        /// What the sink staged.
        artifact: StagedArtifact,
        /// What the source says the read stood on ([`BackfillSource::chunk_evidence`](crate::source::BackfillSource::chunk_evidence)),
        /// such as an API capture's digest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<serde_json::Value>,
        /// Input records kept out of the output under the manifest's
        /// `safety.max_rejected_per_chunk` budget, with where they were.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        quarantined: Vec<QuarantinedRecord>,
        /// Milliseconds the attempt waited for each run-wide budget (`max_rows_per_minute`,
        /// `max_bytes_per_minute`, `max_sink_commits_per_hour`).
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        throttled_ms: BTreeMap<String, u64>,
    },
    /// A chunk attempt failed.
    ChunkFailed {
        /// The chunk.
        chunk_id: ChunkId,
        /// Attempt.
        attempt: u32,
        /// Error message.
        error: String,
        /// Whether it will be retried.
        retryable: bool,
    },
    /// A validator's outcome.
    Validation(ValidationOutcome),
    /// An owner's review decision.
    Review {
        /// Accepted or rejected.
        accept: bool,
        /// Why.
        reason: String,
    },
    /// The target committed the run.
    Published {
        /// The target's receipt.
        receipt: PublishReceipt,
        /// The run it replaced as accepted output.
        previous: Option<RunId>,
    },
    /// The accepted pointer of a target moved.
    PointerMoved {
        /// Target.
        target: String,
        /// Previously accepted run.
        from: Option<RunId>,
        /// Accepted now.
        to: RunId,
    },
    /// The target was rolled back.
    RolledBack {
        /// Target.
        target: String,
        /// The run rolled back.
        from: RunId,
        /// The run visible again.
        to: RunId,
        /// Why.
        reason: String,
        /// The target's receipt.
        receipt: PublishReceipt,
    },
    /// An operator asked for cancellation.
    CancelRequested {
        /// Why.
        reason: String,
    },
    /// Something a job attaches (a diff file's hash, a summary), for people and auditors.
    Note {
        /// Short name, such as `diff_csv`.
        name: String,
        /// Details.
        detail: serde_json::Value,
    },
    /// The estimate made before the run's chunks: what the source sized, the duration and cost
    /// the manifest's rates give, and the plan's coverage.
    Estimated(Box<Estimate>),
    /// The run froze its target window before its first chunk (`target.live_writes: freeze`):
    /// live writes into these partitions are refused until it thaws.
    WindowFrozen {
        /// The target.
        target: String,
        /// Each partition's live-write counter at the freeze: publication refuses when a partition
        /// was written after it.
        watermark: BTreeMap<String, u64>,
    },
    /// The run's window thawed (published, cancelled, or released by an operator).
    WindowThawed {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
}

impl EvidenceRecord {
    /// The record's kind.
    pub fn kind(&self) -> EvidenceKind {
        match self {
            Self::ManifestStored { .. } => EvidenceKind::ManifestStored,
            Self::Approved(_) => EvidenceKind::Approved,
            Self::PlanResolved { .. } => EvidenceKind::PlanResolved,
            Self::Transition(_) => EvidenceKind::Transition,
            Self::ChunkStaged { .. } => EvidenceKind::ChunkStaged,
            Self::ChunkFailed { .. } => EvidenceKind::ChunkFailed,
            Self::Validation(_) => EvidenceKind::Validation,
            Self::Review { .. } => EvidenceKind::Review,
            Self::Published { .. } => EvidenceKind::Published,
            Self::PointerMoved { .. } => EvidenceKind::PointerMoved,
            Self::RolledBack { .. } => EvidenceKind::RolledBack,
            Self::CancelRequested { .. } => EvidenceKind::CancelRequested,
            Self::Note { .. } => EvidenceKind::Note,
            Self::Estimated(_) => EvidenceKind::Estimated,
            Self::WindowFrozen { .. } => EvidenceKind::WindowFrozen,
            Self::WindowThawed { .. } => EvidenceKind::WindowThawed,
        }
    }

    /// The stored form: the record's JSON with the format version `v`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("v".into(), EVIDENCE_FORMAT.into());
        }
        v
    }

    /// Parses the stored form; a record of an unknown format version or shape is an error.
    pub fn from_json(mut value: serde_json::Value) -> crate::Result<Self> {
        let version = value
            .as_object_mut()
            .and_then(|o| o.remove("v"))
            .and_then(|v| v.as_u64());
        if version != Some(u64::from(EVIDENCE_FORMAT)) {
            return Err(crate::Error::corrupt(
                "evidence record",
                format!("format version {version:?}, this release reads {EVIDENCE_FORMAT}"),
            ));
        }
        serde_json::from_value(value).map_err(|e| crate::Error::corrupt("evidence record", e))
    }
}

/// One stored evidence record of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The run.
    pub run_id: RunId,
    /// Sequence number within the run (assigned by the store, from 1).
    pub seq: u64,
    /// When (injected clock).
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// What.
    pub record: EvidenceRecord,
}

impl Evidence {
    /// The record's kind.
    pub fn kind(&self) -> EvidenceKind {
        self.record.kind()
    }
}
