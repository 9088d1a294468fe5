//! How a partial-failure check fails: one typed variant per broken expectation.

use std::fmt;

use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::state::RunState;
use backfill_core::store::EvidenceKind;

use crate::faults::PublisherCall;

/// How a faulty run failed to converge to the uninterrupted one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartialFailure {
    /// The uninterrupted run itself did not finish (the scenario is wrong, not the adapter).
    Baseline {
        /// The error.
        error: String,
    },
    /// The injected fault never fired (the scenario has fewer chunks or batches than the fault needs).
    FaultNeverFired {
        /// The fault.
        fault: String,
    },
    /// The run still failed after the last allowed invocation.
    DidNotConverge {
        /// Invocations made.
        invocations: u32,
        /// The last error.
        last_error: String,
    },
    /// The run came to rest in another state than the uninterrupted run.
    StateDiverged {
        /// The uninterrupted run's state.
        expected: RunState,
        /// The faulty run's state.
        actual: RunState,
        /// The last error seen on the way, if any.
        last_error: Option<String>,
    },
    /// The ledger's digests of one partition differ.
    LedgerDiverged {
        /// The partition.
        partition: PartitionKey,
        /// The uninterrupted run's digest (`rows:hash`, or `none`).
        expected: String,
        /// The faulty run's digest.
        actual: String,
    },
    /// The rows readers see in one partition differ.
    TargetDiverged {
        /// The partition.
        partition: PartitionKey,
        /// The uninterrupted run's visible digest.
        expected: String,
        /// The faulty run's visible digest.
        actual: String,
    },
    /// The target committed the run more than once.
    PublishedTwice {
        /// Commits counted on the wrapped publisher.
        commits: usize,
        /// Every publisher call, in order.
        calls: Vec<PublisherCall>,
    },
    /// The target rolled back more than once.
    RolledBackTwice {
        /// Rollbacks committed on the wrapped publisher.
        commits: usize,
        /// Every publisher call, in order.
        calls: Vec<PublisherCall>,
    },
    /// After the unknown outcome, recovery did not ask the target whether the run had published.
    NotInspected {
        /// Every publisher call, in order.
        calls: Vec<PublisherCall>,
    },
    /// Retrying the interrupted publication or rollback through a fresh control plane failed.
    RetryFailed {
        /// The error.
        error: String,
    },
    /// The store's accepted pointer is not the run the target shows.
    PointerDiverged {
        /// The target.
        target: String,
        /// The store's accepted run.
        store: Option<RunId>,
        /// The run the target shows.
        expected: RunId,
    },
    /// The target does not confirm what the store recorded (`inspect` or `inspect_rollback`).
    TargetDisagrees {
        /// The run.
        run_id: RunId,
        /// What differs.
        detail: String,
    },
    /// A run's evidence holds the wrong number of records of one kind.
    EvidenceCount {
        /// The run.
        run_id: RunId,
        /// The record kind.
        kind: EvidenceKind,
        /// Records found.
        count: usize,
        /// What was expected, such as `exactly one`.
        expected: &'static str,
    },
    /// A run is in another state than the converged sequence leaves it in.
    RunStateInconsistent {
        /// The run.
        run_id: RunId,
        /// The state it should be in.
        expected: RunState,
        /// The state it is in.
        actual: RunState,
    },
    /// A run's recorded transitions do not chain from `draft` to its current state.
    TransitionsBroken {
        /// The run.
        run_id: RunId,
        /// Where the chain breaks.
        detail: String,
    },
}

impl fmt::Display for PartialFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Baseline { error } => write!(f, "the uninterrupted run failed: {error}"),
            Self::FaultNeverFired { fault } => write!(f, "the fault {fault} never fired"),
            Self::DidNotConverge {
                invocations,
                last_error,
            } => write!(
                f,
                "the run did not recover in {invocations} invocations: {last_error}"
            ),
            Self::StateDiverged {
                expected,
                actual,
                last_error,
            } => write!(
                f,
                "the run ended {actual}, the uninterrupted run {expected} (last error: {})",
                last_error.as_deref().unwrap_or("none")
            ),
            Self::LedgerDiverged {
                partition,
                expected,
                actual,
            } => write!(
                f,
                "ledger digest of partition {partition} is {actual}, uninterrupted {expected}"
            ),
            Self::TargetDiverged {
                partition,
                expected,
                actual,
            } => write!(
                f,
                "visible rows of partition {partition} digest to {actual}, uninterrupted {expected}"
            ),
            Self::PublishedTwice { commits, calls } => {
                write!(f, "the target committed {commits} times: {calls:?}")
            }
            Self::RolledBackTwice { commits, calls } => {
                write!(f, "the target rolled back {commits} times: {calls:?}")
            }
            Self::NotInspected { calls } => write!(
                f,
                "recovery published again without inspecting the target: {calls:?}"
            ),
            Self::RetryFailed { error } => {
                write!(f, "retrying through a fresh control plane failed: {error}")
            }
            Self::PointerDiverged {
                target,
                store,
                expected,
            } => write!(
                f,
                "the store's accepted pointer of {target} is {}, the target shows run {expected}",
                store.as_ref().map_or("none", |r| r.as_str())
            ),
            Self::TargetDisagrees { run_id, detail } => {
                write!(
                    f,
                    "the target disagrees with the store on run {run_id}: {detail}"
                )
            }
            Self::EvidenceCount {
                run_id,
                kind,
                count,
                expected,
            } => write!(
                f,
                "run {run_id} has {count} {} evidence records, expected {expected}",
                kind.as_str()
            ),
            Self::RunStateInconsistent {
                run_id,
                expected,
                actual,
            } => write!(f, "run {run_id} is {actual}, expected {expected}"),
            Self::TransitionsBroken { run_id, detail } => {
                write!(f, "the transitions of run {run_id} do not chain: {detail}")
            }
        }
    }
}

impl std::error::Error for PartialFailure {}
