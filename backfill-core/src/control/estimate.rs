//! Estimates before approval, through the control plane: made without running anything, kept as
//! evidence and in the `backfill_cost_estimate` gauge for a submitted run.

use super::{not_found, Control};
use crate::error::{Error, Result};
use crate::estimate::Estimate;
use crate::evidence::EvidenceRecord;
use crate::ids::RunId;
use crate::manifest::RunManifest;
use crate::source::BackfillSource;
use crate::telemetry::RunMetrics;

impl Control {
    /// Plans `manifest`'s input with `source` and estimates it (see [`crate::estimate`]). Nothing
    /// is persisted and no record is read; the manifest need not be submitted or approved.
    pub async fn estimate<I: 'static>(
        &self,
        manifest: &RunManifest,
        source: &dyn BackfillSource<I>,
    ) -> Result<Estimate> {
        Estimate::resolve(manifest, source, self.clock.now()).await
    }

    /// Estimates a submitted run (a draft or an approved one) from its stored manifest and keeps
    /// the estimate ([`record_estimate`](Self::record_estimate)).
    pub async fn estimate_run<I: 'static>(
        &self,
        run_id: &RunId,
        source: &dyn BackfillSource<I>,
        by: &str,
    ) -> Result<Estimate> {
        let manifest = self.stored_manifest(run_id).await?;
        let estimate = self.estimate(&manifest, source).await?;
        self.record_estimate(&estimate, by).await?;
        Ok(estimate)
    }

    /// Keeps a submitted run's estimate as evidence
    /// ([`EvidenceRecord::Estimated`]) and sets its `backfill_cost_estimate` gauge (labels
    /// `run_id`, `mode`, `target`) to the estimated cost. An estimate made from another version of
    /// the manifest is refused ([`Error::Tampered`]).
    pub async fn record_estimate(&self, estimate: &Estimate, by: &str) -> Result<()> {
        let run_id = &estimate.run_id;
        let record = self.run(run_id).await?;
        if record.manifest_digest != estimate.manifest_digest {
            return Err(Error::Tampered {
                run_id: run_id.clone(),
                expected: record.manifest_digest.to_string(),
                actual: format!("estimate made for {}", estimate.manifest_digest),
            });
        }
        let manifest = self.stored_manifest(run_id).await?;
        self.store
            .append_evidence(
                run_id,
                self.clock.now(),
                by,
                &EvidenceRecord::Estimated(Box::new(estimate.clone())),
            )
            .await?;
        if let Some(cost) = estimate.cost_usd {
            RunMetrics::new(&manifest).cost.set(cost);
        }
        Ok(())
    }

    async fn stored_manifest(&self, run_id: &RunId) -> Result<RunManifest> {
        self.store
            .manifest(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "manifest"))?
            .manifest()
    }
}
