//! A dry run on a named subset of chunks.

use crate::context::ExecutionMode;
use crate::error::{Error, Result};
use crate::manifest::RunManifest;
use crate::plan::SourcePlan;

/// Refuses a subset outside a dry run and labels the plan does not have.
fn check(m: &RunManifest, labels: &[&str]) -> Result<()> {
    let wanted = &m.safety.dry_run_chunks;
    if m.mode != ExecutionMode::DryRun {
        return Err(Error::InvalidManifest {
            run_id: m.run_id.clone(),
            field: "safety.dry_run_chunks".into(),
            message: format!(
                "a subset of chunks runs only in dry_run mode (this manifest is {}): a run that may publish runs every chunk",
                m.mode
            ),
        });
    }
    for (i, w) in wanted.iter().enumerate() {
        if !labels.contains(&w.as_str()) {
            return Err(Error::InvalidManifest {
                run_id: m.run_id.clone(),
                field: format!("safety.dry_run_chunks[{i}]"),
                message: format!(
                    "no chunk labelled `{w}` in the plan (labels: {})",
                    labels.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// The source's plan cut down to the manifest's `safety.dry_run_chunks`, after the whole plan's
/// coverage of the input range was checked (so the subset is a subset of a sound plan). Without a
/// subset, the plan as it is.
pub(crate) fn dry_run_subset(m: &RunManifest, plan: SourcePlan) -> Result<SourcePlan> {
    if m.safety.dry_run_chunks.is_empty() {
        return Ok(plan);
    }
    if let Some(range) = &m.source.range {
        let ranges: Vec<_> = plan.chunks.iter().map(|c| &c.range).collect();
        crate::plan::coverage(range, &ranges).map_err(|detail| Error::PlanCoverage {
            run_id: m.run_id.clone(),
            detail,
        })?;
    }
    select(m, plan)
}

/// The source's plan cut down to the subset, coverage unchecked (an estimate reports it).
pub(super) fn select(m: &RunManifest, mut plan: SourcePlan) -> Result<SourcePlan> {
    if m.safety.dry_run_chunks.is_empty() {
        return Ok(plan);
    }
    let labels: Vec<&str> = plan.chunks.iter().map(|c| c.label.as_str()).collect();
    check(m, &labels)?;
    plan.chunks
        .retain(|c| m.safety.dry_run_chunks.contains(&c.label));
    Ok(plan)
}
