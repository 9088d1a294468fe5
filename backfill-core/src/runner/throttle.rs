//! The manifest's rate limits, as budgets of the run shared by every worker through the run store.
//!
//! Rows per minute, bytes per minute and sink commits per hour are run-wide [`Budget`]s: every
//! worker, in every process, takes from the same bucket in the [`RunStore`] and waits what the
//! bucket says (see [`crate::budget`]). Per-minute budgets allow a burst of one second's share,
//! commits per hour a burst of one, so the limits hold from the first batch rather than only on
//! average over the first minute or hour. Time spent waiting is counted per budget so the chunk's
//! evidence and the run's status show it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::budget::Budget;
use crate::context::Clock;
use crate::error::Result;
use crate::ids::RunId;
use crate::manifest::Limits;
use crate::store::RunStore;

/// The manifest field names of the budgets, as evidence and status show them.
pub(crate) const ROWS: &str = "max_rows_per_minute";
pub(crate) const BYTES: &str = "max_bytes_per_minute";
pub(crate) const COMMITS: &str = "max_sink_commits_per_hour";

/// The run's budgets and the pause between windows.
#[derive(Debug)]
pub(crate) struct Throttle {
    store: Arc<dyn RunStore>,
    clock: Arc<dyn Clock>,
    run_id: RunId,
    rows: Option<Budget>,
    bytes: Option<Budget>,
    commits: Option<Budget>,
    pause: Duration,
}

/// Milliseconds waited per budget, for one chunk attempt.
pub(crate) type Waited = Mutex<BTreeMap<String, u64>>;

impl Throttle {
    pub(crate) fn new(
        limits: &Limits,
        run_id: &RunId,
        store: Arc<dyn RunStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            store,
            clock,
            run_id: run_id.clone(),
            rows: limits
                .max_rows_per_minute
                .map(|n| Budget::per(ROWS, n, minute, 1.0 / 60.0)),
            bytes: limits
                .max_bytes_per_minute
                .map(|n| Budget::per(BYTES, n, minute, 1.0 / 60.0)),
            commits: limits
                .max_sink_commits_per_hour
                .map(|n| Budget::per(COMMITS, n, Duration::from_secs(3600), 0.0)),
            pause: Duration::from_millis(limits.pause_between_windows_ms),
        }
    }

    /// Checks, before any chunk, that no budget is zero (zero refuses, it is never "no limit") and
    /// that the store can keep the run's budgets.
    pub(crate) async fn check(&self) -> Result<()> {
        for b in [&self.rows, &self.bytes, &self.commits]
            .into_iter()
            .flatten()
        {
            if b.per_second <= 0.0 {
                return Err(crate::Error::LimitExceeded {
                    run_id: self.run_id.clone(),
                    limit: b.name,
                    value: 1,
                    max: 0,
                });
            }
            self.store
                .take_budget(&self.run_id, b, 0, self.clock.now())
                .await?;
        }
        Ok(())
    }

    async fn take(&self, budget: Option<&Budget>, amount: u64, waited: &Waited) -> Result<()> {
        let Some(b) = budget else { return Ok(()) };
        let wait = self
            .store
            .take_budget(&self.run_id, b, amount, self.clock.now())
            .await?;
        if !wait.is_zero() {
            tracing::debug!(run_id = %self.run_id, budget = b.name, wait_ms = wait.as_millis() as u64, "waiting for the run's budget");
            if let Ok(mut w) = waited.lock() {
                *w.entry(b.name.to_owned()).or_default() += wait.as_millis() as u64;
            }
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Waits until `rows` rows of `bytes` bytes may pass.
    pub(crate) async fn admit(&self, rows: u64, bytes: u64, waited: &Waited) -> Result<()> {
        self.take(self.rows.as_ref(), rows, waited).await?;
        self.take(self.bytes.as_ref(), bytes, waited).await
    }

    /// Waits until one more sink commit may happen.
    pub(crate) async fn commit(&self, waited: &Waited) -> Result<()> {
        self.take(self.commits.as_ref(), 1, waited).await
    }

    /// The pause after each window (chunk).
    pub(crate) async fn pause(&self) {
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
    }
}
