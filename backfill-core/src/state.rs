//! The run lifecycle state machine.
//!
//! ```text
//! Draft → Approved → Running → Staged → Validated ─────────→ Published → Superseded
//!                      ↑  │        │  ↘ AwaitingReview ↗  │      ↑   ↘ RolledBack
//!                      └─ Failed   └→ Rejected     ↘ Rejected    └── (reinstated by rollback)
//! any state before Published → Cancelled
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
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
    /// Validation failed or an owner rejected the result.
    Rejected,
    /// Stopped by an operator.
    Cancelled,
}

impl RunState {
    /// Every state.
    pub const ALL: [Self; 12] = [
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
        Self::Rejected,
        Self::Cancelled,
    ];

    /// Whether the machine allows `self → to`.
    pub fn can_transition_to(self, to: Self) -> bool {
        use RunState::*;
        matches!(
            (self, to),
            (Draft, Approved)
                | (Approved, Running)
                | (Running, Staged)
                | (Running, Failed)
                | (Failed, Running)
                | (Staged, Validated)
                | (Staged, AwaitingReview)
                | (Staged, Rejected)
                | (Staged, Failed)
                | (AwaitingReview, Validated)
                | (AwaitingReview, Rejected)
                | (Validated, Published)
                | (Published, Superseded)
                | (Published, RolledBack)
                | (Superseded, Published)
                | (
                    Draft | Approved | Running | Staged | Validated | AwaitingReview | Failed,
                    Cancelled
                )
        )
    }

    /// Checks a transition, returning the typed error for an illegal one.
    pub fn check_transition(self, to: Self, run_id: &RunId) -> Result<()> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(Error::IllegalTransition {
                run_id: run_id.clone(),
                from: self,
                to,
            })
        }
    }

    /// Whether no further work happens in this state without an operator.
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
