//! The execution mode stamped on every output row. A leaf module: it depends on nothing in the crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a run's output must be treated downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// Normal live processing.
    Live,
    /// Producing or changing historical output.
    Backfill,
    /// Re-reading old input.
    Replay,
    /// Compute and validate; make nothing visible.
    DryRun,
    /// Compare source and target.
    Reconciliation,
}

impl ExecutionMode {
    /// Upper-case name, as in lineage headers (`BACKFILL`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "LIVE",
            Self::Backfill => "BACKFILL",
            Self::Replay => "REPLAY",
            Self::DryRun => "DRY_RUN",
            Self::Reconciliation => "RECONCILIATION",
        }
    }
}

impl fmt::Display for ExecutionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
