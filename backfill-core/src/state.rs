//! The run lifecycle state machine.
//!
//! ```text
//! Draft → Approved → Running → Staged → Validated ─────────→ Published → Superseded
//!                      ↑  │        │  ↘ AwaitingReview ↗  │      ↑   ↘ RolledBack
//!                      └─ Failed   └→ Rejected     ↘ Rejected    └── (reinstated by rollback)
//!                      └─ Paused (an adapter asked to wait; running it again resumes)
//! any state before Published → Cancelled → (reopened) Approved
//! ```
//!
//! [`next`] is the whole machine: every edge is one `(state, event)` pair, and every caller in the
//! crate moves a run through it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::RunId;

/// Where a run is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Manifest written, not approved.
    Draft,
    /// Approved; nothing run yet.
    Approved,
    /// Chunks are being computed and staged.
    Running,
    /// Every chunk is staged.
    Staged,
    /// Validation passed (or an owner accepted the review); ready to publish.
    Validated,
    /// A business delta exceeded its threshold; an owner must accept or reject.
    AwaitingReview,
    /// Visible to readers; the accepted pointer names this run.
    Published,
    /// A later accepted run replaced this one.
    Superseded,
    /// The accepted pointer was moved back off this run.
    RolledBack,
    /// A chunk failed for good (resumable: Failed → Running).
    Failed,
    /// An adapter asked the run to wait (a vendor's long rate-limit storm); no chunk failed.
    /// Running it again resumes it (Paused → Running).
    Paused,
    /// Validation failed or an owner rejected the result.
    Rejected,
    /// Stopped by an operator.
    Cancelled,
}

impl RunState {
    /// Every state.
    pub const ALL: [Self; 13] = [
        Self::Draft,
        Self::Approved,
        Self::Running,
        Self::Staged,
        Self::Validated,
        Self::AwaitingReview,
        Self::Published,
        Self::Superseded,
        Self::RolledBack,
        Self::Failed,
        Self::Paused,
        Self::Rejected,
        Self::Cancelled,
    ];

    /// Whether the machine allows `self → to` by some event.
    pub fn can_transition_to(self, to: Self) -> bool {
        Event::ALL
            .iter()
            .any(|e| next(self, *e).is_some_and(|s| s == to))
    }

    /// Whether no further work happens in this state without an operator (a cancelled run can be
    /// resumed by one).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Rejected | Self::Cancelled | Self::RolledBack)
    }

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Approved => "approved",
            Self::Running => "running",
            Self::Staged => "staged",
            Self::Validated => "validated",
            Self::AwaitingReview => "awaiting_review",
            Self::Published => "published",
            Self::Superseded => "superseded",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::Paused => "paused",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What moves a run from one state to the next. Every edge of the lifecycle is one `(state, event)`
/// pair of [`next`]; nothing else in the crate decides a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An owner approved the draft's digest.
    Approve,
    /// A worker starts executing an approved run.
    Start,
    /// A worker resumes a failed or paused run.
    Resume,
    /// An adapter asked the run to wait (see [`ErrorKind::Paused`](crate::ErrorKind::Paused)).
    Pause,
    /// Every chunk of the plan is staged.
    AllStaged,
    /// A chunk failed for good (or validation could not run).
    Fail,
    /// Every validator passed.
    ValidationPassed,
    /// A business delta needs an owner's decision.
    NeedsReview,
    /// A validator failed.
    ValidationFailed,
    /// The owner accepted the reviewed output.
    ReviewAccepted,
    /// The owner rejected the reviewed output.
    ReviewRejected,
    /// The target committed the run's output.
    Publish,
    /// A later run was published over this one.
    Supersede,
    /// The target was rolled back off this run.
    RollBack,
    /// A rollback of a later run made this one visible again.
    Reinstate,
    /// An operator cancelled the run.
    Cancel,
    /// An operator resumed a cancelled run (it starts again from `Approved`; finished chunks stay).
    Reopen,
}

impl Event {
    /// Every event.
    pub const ALL: [Self; 17] = [
        Self::Approve,
        Self::Start,
        Self::Resume,
        Self::Pause,
        Self::AllStaged,
        Self::Fail,
        Self::ValidationPassed,
        Self::NeedsReview,
        Self::ValidationFailed,
        Self::ReviewAccepted,
        Self::ReviewRejected,
        Self::Publish,
        Self::Supersede,
        Self::RollBack,
        Self::Reinstate,
        Self::Cancel,
        Self::Reopen,
    ];
}

/// The lifecycle: the state an event leads to, or `None` when the event is not allowed in `state`.
///
/// ```
/// use backfill_core::state::{next, Event, RunState};
/// assert_eq!(next(RunState::Staged, Event::NeedsReview), Some(RunState::AwaitingReview));
/// assert_eq!(next(RunState::Published, Event::Start), None);
/// ```
pub fn next(state: RunState, event: Event) -> Option<RunState> {
    use Event as E;
    use RunState::*;
    Some(match (state, event) {
        (Draft, E::Approve) => Approved,
        (Approved, E::Start) => Running,
        (Failed | Paused, E::Resume) => Running,
        (Running, E::Pause) => Paused,
        (Running, E::AllStaged) => Staged,
        (Running | Staged, E::Fail) => Failed,
        (Staged, E::ValidationPassed) => Validated,
        (Staged, E::NeedsReview) => AwaitingReview,
        (Staged, E::ValidationFailed) => Rejected,
        (AwaitingReview, E::ReviewAccepted) => Validated,
        (AwaitingReview, E::ReviewRejected) => Rejected,
        (Validated, E::Publish) => Published,
        (Published, E::Supersede) => Superseded,
        (Published, E::RollBack) => RolledBack,
        (Superseded, E::Reinstate) => Published,
        (
            Draft | Approved | Running | Staged | Validated | AwaitingReview | Failed | Paused,
            E::Cancel,
        ) => Cancelled,
        (Cancelled, E::Reopen) => Approved,
        _ => return None,
    })
}

/// One recorded transition: who moved the run, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The run.
    pub run_id: RunId,
    /// State before.
    pub from: RunState,
    /// State after.
    pub to: RunState,
    /// Who (a person or `runner:<worker>`).
    pub by: String,
    /// When, from the injected clock.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: String,
}
