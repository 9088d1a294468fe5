//! The estimate when a run starts: kept as evidence, in the cost gauge, and held against
//! `safety.max_cost_usd` before any chunk; the meter that holds the cost so far against it.

use super::Executor;
use crate::error::Result;
use crate::estimate::{CostMeter, Estimate};
use crate::evidence::EvidenceRecord;
use crate::manifest::ApprovedManifest;
use crate::plan::ResolvedPlan;
use crate::state::{Event, RunState};
use crate::store::{ChunkRecord, ChunkStatus};
use crate::telemetry::RunMetrics;
use crate::transform::DeterministicTransform;

impl<T: DeterministicTransform> Executor<T> {
    /// Estimates the persisted plan, records the estimate (once per distinct estimate) and sets
    /// the cost gauge; a run whose estimate is over `safety.max_cost_usd` is failed here, before
    /// any chunk, with [`Error::LimitExceeded`](crate::Error::LimitExceeded). Returns the meter
    /// the workers charge records read to, when the manifest has a ceiling and prices.
    pub(super) async fn estimate_at_start(
        &self,
        approved: &ApprovedManifest,
        plan: &ResolvedPlan,
        chunks: &[ChunkRecord],
        metrics: &RunMetrics,
    ) -> Result<Option<CostMeter>> {
        let m = approved.manifest();
        let run_id = approved.run_id();
        let estimate = Estimate::of_plan(m, plan, self.source.as_ref()).await?;
        let store = self.control.store();
        let known = store
            .evidence(run_id)
            .await?
            .into_iter()
            .any(|e| matches!(&e.record, EvidenceRecord::Estimated(old) if **old == estimate));
        if !known {
            let record = EvidenceRecord::Estimated(Box::new(estimate.clone()));
            store
                .append_evidence(run_id, self.control.clock().now(), &self.actor(), &record)
                .await?;
        }
        if let Some(cost) = estimate.cost_usd {
            metrics.cost.set(cost);
        }
        if let Err(e) = estimate.check_budget() {
            tracing::warn!(run_id = %run_id, error = %e, "the estimate is over the cost ceiling: refused before any chunk");
            let state = self.control.run(run_id).await?.state;
            if state == RunState::Running {
                self.step(run_id, state, Event::Fail, &e.to_string())
                    .await?;
            }
            return Err(e);
        }
        let done = chunks
            .iter()
            .filter(|c| c.status == ChunkStatus::Done)
            .map(|c| (&c.chunk_id, c.input_count));
        Ok(CostMeter::new(m, &estimate, done))
    }
}
