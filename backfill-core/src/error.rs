//! The crate's one error type, sorted into kinds the runner acts on.

use std::fmt;

use crate::finding::Finding;
use crate::ids::{ChunkId, RunId};
use crate::mode::ExecutionMode;
use crate::state::{Event, RunState};
use crate::transform::error::TransformError;

/// A boxed error from an adapter or a user's code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the runner (or a caller) should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Try again later; the same call may succeed (timeouts, lost connections, lock contention).
    Transient,
    /// Someone else changed the state first (a lost compare-and-set); re-read and decide.
    Conflict,
    /// The manifest or configuration is wrong; fix it and amend the manifest.
    Config,
    /// The run is not allowed to do this (unapproved, tampered, forbidden sink, illegal transition).
    Refused,
    /// The output did not pass validation.
    Validation,
    /// A transform produced different output for the same input and context.
    NonDeterministic,
    /// A safety limit of the manifest was hit.
    Limit,
    /// The run was cancelled.
    Cancelled,
    /// Something asked for does not exist.
    NotFound,
    /// The adapter cannot do this operation.
    NotSupported,
    /// A permanent failure in an adapter or transform; retrying will not help.
    Permanent,
    /// The outside world asks the run to stop for a while (a vendor's long rate-limit storm): the
    /// runner pauses the run instead of failing it, and running it again resumes it.
    Paused,
}

/// The error type of `backfill-core` and the type every adapter converts its own errors into.
///
/// Messages are lower case and name the run and, where there is one, the chunk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A manifest could not be read or is not well formed.
    #[error("run {run_id}: invalid manifest field `{field}`: {message}")]
    InvalidManifest {
        /// Run named by the manifest (empty when it could not be read).
        run_id: RunId,
        /// The offending field, as a JSON path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The manifest has blocking findings and cannot be approved or run.
    #[error("run {run_id}: manifest has {} blocking finding(s): {}", findings.len(), list_findings(findings))]
    BlockingFindings {
        /// The run.
        run_id: RunId,
        /// The blocking findings.
        findings: Vec<Finding>,
    },
    /// The stored manifest no longer matches the digest its approval was bound to.
    #[error("run {run_id}: manifest digest mismatch, approved {expected} but stored content hashes to {actual}")]
    Tampered {
        /// The run.
        run_id: RunId,
        /// Digest the approval was bound to.
        expected: String,
        /// Digest of what is stored now.
        actual: String,
    },
    /// The run has no valid approval.
    #[error("run {run_id}: manifest version {version} is not approved")]
    NotApproved {
        /// The run.
        run_id: RunId,
        /// Manifest version.
        version: u32,
    },
    /// The requester tried to approve their own manifest.
    #[error("run {run_id}: {principal} requested this run and cannot also approve it")]
    SelfApproval {
        /// The run.
        run_id: RunId,
        /// Who tried.
        principal: String,
    },
    /// An approved manifest cannot be changed; amend it into a new version instead.
    #[error("run {run_id}: manifest version {version} is approved and immutable; amend it into a new version")]
    Immutable {
        /// The run.
        run_id: RunId,
        /// The approved version.
        version: u32,
    },
    /// An event the lifecycle does not allow in the run's current state.
    #[error("run {run_id}: {event:?} is not allowed in state {state}")]
    IllegalEvent {
        /// The run.
        run_id: RunId,
        /// Current state.
        state: RunState,
        /// The refused event.
        event: Event,
    },
    /// Planning resolved a different input snapshot than the manifest pins.
    #[error(
        "run {run_id}: the manifest pins snapshot {pinned} but the source resolved {resolved}"
    )]
    SnapshotMismatch {
        /// The run.
        run_id: RunId,
        /// The manifest's `source.snapshot`.
        pinned: String,
        /// What the source resolved (`none` when it resolved no snapshot).
        resolved: String,
    },
    /// The plan's chunks do not cover the manifest's input range exactly once.
    #[error("run {run_id}: plan does not cover the input range exactly once: {detail}")]
    PlanCoverage {
        /// The run.
        run_id: RunId,
        /// The gap, overlap or stray chunk.
        detail: String,
    },
    /// A staging write by an attempt that no longer holds the chunk's lease.
    #[error("run {run_id} chunk {chunk_id}: attempt {attempt} is fenced off (current attempt {current})")]
    Fenced {
        /// The run.
        run_id: RunId,
        /// The chunk.
        chunk_id: ChunkId,
        /// The stale attempt.
        attempt: u32,
        /// The attempt that owns the chunk now.
        current: u32,
    },
    /// The target (or another part) cannot honour what the manifest asks for.
    #[error("run {run_id}: {part} cannot {what}")]
    Unsupported {
        /// The run.
        run_id: RunId,
        /// The publisher, target or sink concerned.
        part: String,
        /// What it cannot do.
        what: String,
    },
    /// Stored data (evidence, receipts, artifacts) that does not parse.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was read.
        what: String,
        /// The parse error.
        detail: String,
    },
    /// A compare-and-set lost: the stored value was not the expected one.
    #[error("run {run_id}: conflict on {what}: expected {expected}, found {found}")]
    Conflict {
        /// The run.
        run_id: RunId,
        /// What was being changed.
        what: String,
        /// The expected current value.
        expected: String,
        /// The value actually found.
        found: String,
    },
    /// Something the caller named does not exist.
    #[error("run {run_id}: {what} not found")]
    NotFound {
        /// The run.
        run_id: RunId,
        /// What was looked up.
        what: String,
    },
    /// The sink policy refused a sink in this execution mode.
    #[error("run {run_id}: sink `{sink}` has external side effects and is forbidden in {mode} mode: {reason}")]
    ForbiddenSink {
        /// The run.
        run_id: RunId,
        /// The sink's name.
        sink: String,
        /// The execution mode.
        mode: ExecutionMode,
        /// Why.
        reason: String,
    },
    /// The run may not be published (dry run, wrong state, rejected review).
    #[error("run {run_id}: publish refused: {reason}")]
    PublishRefused {
        /// The run.
        run_id: RunId,
        /// Why.
        reason: String,
    },
    /// A partition of a target is frozen by a backfill: a live write into it is refused until the
    /// run publishes or is cancelled (see [`crate::live`]); a run cannot freeze a partition another
    /// run holds.
    #[error("target {target}: partition {partition} is frozen by run {run_id}")]
    WindowFrozen {
        /// The run holding the freeze.
        run_id: RunId,
        /// The target.
        target: String,
        /// The partition.
        partition: String,
    },
    /// A safety limit in the manifest was exceeded.
    #[error("run {run_id}: limit `{limit}` exceeded: {value} > {max}")]
    LimitExceeded {
        /// The run.
        run_id: RunId,
        /// Name of the limit, as in the manifest.
        limit: &'static str,
        /// Observed value.
        value: u64,
        /// Allowed maximum.
        max: u64,
    },
    /// The transform emitted a row outside the manifest's declared target partitions.
    #[error("run {run_id} chunk {chunk_id}: output row in partition `{partition}` is outside the manifest's target partitions")]
    OutOfScope {
        /// The run.
        run_id: RunId,
        /// The chunk.
        chunk_id: ChunkId,
        /// The undeclared partition.
        partition: String,
    },
    /// Validation did not pass.
    #[error("run {run_id}: validation failed: {}", failed.join(", "))]
    ValidationFailed {
        /// The run.
        run_id: RunId,
        /// Names of failed validators.
        failed: Vec<String>,
    },
    /// The same input and context gave different output.
    #[error("run {run_id}: non-deterministic output: {detail}")]
    NonDeterministic {
        /// The run.
        run_id: RunId,
        /// What differed.
        detail: String,
    },
    /// The run was cancelled.
    #[error("run {run_id}: cancelled")]
    Cancelled {
        /// The run.
        run_id: RunId,
    },
    /// The user's transform failed on an input.
    #[error("run {run_id} chunk {chunk_id}: transform failed: {source}")]
    Transform {
        /// The run.
        run_id: RunId,
        /// The chunk.
        chunk_id: ChunkId,
        /// The transform's error.
        #[source]
        source: TransformError,
    },
    /// An output row could not be encoded canonically, so it can be neither digested nor staged.
    #[error("run {run_id}: {source}")]
    Encode {
        /// The run.
        run_id: RunId,
        /// Why the row could not be encoded.
        #[source]
        source: crate::encode::EncodeError,
    },
    /// An error inside a chunk, wrapped with the run, chunk and attempt it happened in.
    #[error("run {run_id} chunk {chunk_id} attempt {attempt}: {source}")]
    Chunk {
        /// The run.
        run_id: RunId,
        /// The chunk.
        chunk_id: ChunkId,
        /// 1-based attempt number.
        attempt: u32,
        /// The underlying error; its kind is this error's kind.
        #[source]
        source: Box<Self>,
    },
    /// A temporary failure in an adapter.
    #[error("{adapter}: transient failure: {source}")]
    Transient {
        /// Adapter name, such as `"sql"` or `"memory"`.
        adapter: &'static str,
        /// Underlying error.
        #[source]
        source: BoxError,
    },
    /// An adapter asks for the run to be paused rather than failed (see [`ErrorKind::Paused`]).
    #[error("{adapter}: run paused: {reason}")]
    Paused {
        /// Adapter name, such as `"http"`.
        adapter: &'static str,
        /// Why, for the operator (what to wait for before resuming).
        reason: String,
    },
    /// A permanent failure in an adapter.
    #[error("{adapter}: {source}")]
    Adapter {
        /// Adapter name.
        adapter: &'static str,
        /// Underlying error.
        #[source]
        source: BoxError,
    },
    /// The adapter does not support the operation.
    #[error("{adapter}: operation `{operation}` is not supported")]
    NotSupported {
        /// Adapter name.
        adapter: &'static str,
        /// Operation name.
        operation: &'static str,
    },
}

fn list_findings(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("{} ({})", f.code, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// What to do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidManifest { .. } | Self::BlockingFindings { .. } => ErrorKind::Config,
            Self::Tampered { .. }
            | Self::NotApproved { .. }
            | Self::SelfApproval { .. }
            | Self::Immutable { .. }
            | Self::IllegalEvent { .. }
            | Self::SnapshotMismatch { .. }
            | Self::PlanCoverage { .. }
            | Self::ForbiddenSink { .. }
            | Self::PublishRefused { .. }
            | Self::OutOfScope { .. } => ErrorKind::Refused,
            Self::Conflict { .. } | Self::Fenced { .. } | Self::WindowFrozen { .. } => {
                ErrorKind::Conflict
            }
            Self::Unsupported { .. } => ErrorKind::NotSupported,
            Self::Corrupt { .. } => ErrorKind::Permanent,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::LimitExceeded { .. } => ErrorKind::Limit,
            Self::ValidationFailed { .. } => ErrorKind::Validation,
            Self::NonDeterministic { .. } => ErrorKind::NonDeterministic,
            Self::Cancelled { .. } => ErrorKind::Cancelled,
            Self::Transform { source, .. } => {
                if source.retryable {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Permanent
                }
            }
            Self::Chunk { source, .. } => source.kind(),
            Self::Transient { .. } => ErrorKind::Transient,
            Self::Paused { .. } => ErrorKind::Paused,
            Self::Adapter { .. } | Self::Encode { .. } => ErrorKind::Permanent,
            Self::NotSupported { .. } => ErrorKind::NotSupported,
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// A transient adapter error.
    pub fn transient(adapter: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Transient {
            adapter,
            source: source.into(),
        }
    }

    /// An adapter's request to pause the run (see [`ErrorKind::Paused`]).
    pub fn paused(adapter: &'static str, reason: impl Into<String>) -> Self {
        Self::Paused {
            adapter,
            reason: reason.into(),
        }
    }

    /// A permanent adapter error.
    pub fn adapter(adapter: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Adapter {
            adapter,
            source: source.into(),
        }
    }

    /// Stored data that does not parse.
    pub fn corrupt(what: impl Into<String>, detail: impl fmt::Display) -> Self {
        Self::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// The innermost error, looking through [`Error::Chunk`] wrappers.
    pub fn root(&self) -> &Self {
        match self {
            Self::Chunk { source, .. } => source.root(),
            other => other,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
