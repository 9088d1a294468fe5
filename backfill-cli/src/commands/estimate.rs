//! `estimate MANIFEST | RUN`: plan and estimate before approval.

use std::path::Path;
use std::process::ExitCode;

use backfill_core::control::Control;
use backfill_core::estimate::Estimate;

use super::{known, CmdResult};
use crate::out::emit;
use crate::registry::Registry;

/// A manifest file: estimated and shown, nothing stored.
pub(super) async fn of_file(reg: &Registry, file: &Path, json: bool) -> CmdResult {
    let m = super::manifest::load(file)?;
    let job = reg.job_for(&m)?;
    let estimate = job.estimate(&m, chrono::Utc::now()).await?;
    Ok(show(&estimate, json))
}

/// A submitted run: estimated from its stored manifest and kept as its evidence.
pub(super) async fn of_run(
    control: &Control,
    reg: &Registry,
    run: &str,
    who: &str,
    json: bool,
) -> CmdResult {
    let id = known(control, run).await?;
    let stored = control
        .store()
        .manifest(&id)
        .await?
        .ok_or_else(|| format!("run {id}: no stored manifest"))?;
    let m = stored.manifest()?;
    let job = reg.job_for(&m)?;
    let estimate = job.estimate(&m, control.clock().now()).await?;
    control.record_estimate(&estimate, who).await?;
    if !json {
        eprintln!("{id}: estimate kept as evidence");
    }
    Ok(show(&estimate, json))
}

/// Prints the estimate; exit 1 when the plan does not cover the input exactly or the estimate is
/// over the cost ceiling.
fn show(estimate: &Estimate, json: bool) -> ExitCode {
    let over = estimate.check_budget().err().map(|e| e.to_string());
    emit(
        json,
        &serde_json::json!({ "estimate": estimate, "over_budget": over }),
        |_| match &over {
            Some(e) => format!("{estimate}\nREFUSED at start: {e}"),
            None => estimate.to_string(),
        },
    );
    if estimate.coverage.is_exact() && over.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
