//! After staging: the validation plan, executed.
//!
//! The manifest's plan decides the built-in checks (`checksum_required` → digests of the staged rows
//! against the ledger, `count_tolerance` → staged rows against the accepted output, replace-partitions
//! → no declared partition emptied unless the manifest allows it; a reconciliation run compares with
//! the accepted output), its `quality_gate` names a gate
//! registered on the executor and its `checks` name attached validators; a name nothing implements is
//! refused at preflight, before any chunk runs.

use std::sync::Arc;

use super::Executor;
use crate::context::ExecutionMode;
use crate::error::{Error, Result};
use crate::evidence::EvidenceRecord;
use crate::manifest::{ApprovedManifest, Mutation, RunManifest};
use crate::state::{Event, RunState};
use crate::telemetry::RunMetrics;
use crate::transform::DeterministicTransform;
use crate::validate::{
    AcceptedComparison, CountTolerance, DeclaredPartitionsStaged, DigestMatchesLedger, Expected,
    ValidationContext, Validator, Verdict,
};

impl<T: DeterministicTransform> Executor<T> {
    /// Refuses a validation plan naming a quality gate or a check nothing implements.
    pub(super) fn check_validation_plan(&self, m: &RunManifest) -> Result<()> {
        let Some(plan) = &m.validation else {
            return Ok(());
        };
        if let Some(gate) = &plan.quality_gate {
            if !self.gates.contains_key(gate) {
                return Err(Error::InvalidManifest {
                    run_id: m.run_id.clone(),
                    field: "validation.quality_gate".into(),
                    message: format!(
                        "no quality gate named `{gate}` is registered (registered: {})",
                        list(self.gates.keys().map(String::as_str))
                    ),
                });
            }
        }
        let builtins = self.builtins(m);
        let gate = plan
            .quality_gate
            .as_ref()
            .and_then(|g| self.gates.get(g))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let known: Vec<&str> = self
            .validators
            .iter()
            .chain(&builtins)
            .chain(gate)
            .map(|v| v.name())
            .collect();
        for (i, check) in plan.checks.iter().enumerate() {
            if !known.contains(&check.as_str()) {
                return Err(Error::InvalidManifest {
                    run_id: m.run_id.clone(),
                    field: format!("validation.checks[{i}]"),
                    message: format!(
                        "no validator named `{check}` is attached, built in or in the quality gate (known: {})",
                        list(known.iter().copied())
                    ),
                });
            }
        }
        Ok(())
    }

    /// The built-in validators the manifest's plan asks for.
    fn builtins(&self, m: &RunManifest) -> Vec<Arc<dyn Validator<T::Output>>> {
        let mut out: Vec<Arc<dyn Validator<T::Output>>> = Vec::new();
        let plan = m.validation.clone().unwrap_or_default();
        if plan.checksum_required {
            out.push(Arc::new(DigestMatchesLedger));
        }
        let attached_count = self
            .validators
            .iter()
            .any(|v| v.name() == "count_tolerance");
        if let (Some(tolerance), false) = (plan.count_tolerance, attached_count) {
            out.push(Arc::new(
                CountTolerance::new(Expected::CurrentOutput).with_tolerance(tolerance),
            ));
        }
        if m.target.mutation == Some(Mutation::ReplacePartitions) && !m.target.partitions.is_empty()
        {
            out.push(Arc::new(DeclaredPartitionsStaged));
        }
        if m.mode == ExecutionMode::Reconciliation {
            out.push(Arc::new(AcceptedComparison));
        }
        out
    }

    /// Runs the validators on the staged output and moves the run to Validated, AwaitingReview or
    /// Rejected.
    pub(super) async fn validate(&self, approved: &ApprovedManifest) -> Result<RunState> {
        let m = approved.manifest();
        let run_id = approved.run_id();
        self.heal_chunk_evidence(run_id).await?;
        let store = self.control.store();
        let chunks = store.chunks(run_id).await?;
        let (_, ledger) = self.control.ledger(run_id).await?;
        let accepted = store.accepted(&m.target.name).await?.map(|p| p.run_id);
        let cx = ValidationContext {
            run_id,
            manifest: m,
            chunks: &chunks,
            ledger: &ledger,
            staged: self.sink.as_ref(),
            current: self.reader.as_ref(),
            accepted: accepted.as_ref(),
        };
        let builtins = self.builtins(m);
        let gate = m
            .validation
            .as_ref()
            .and_then(|v| v.quality_gate.as_ref())
            .and_then(|g| self.gates.get(g))
            .cloned()
            .unwrap_or_default();
        let metrics = RunMetrics::new(m);
        let (mut failed, mut review) = (Vec::new(), false);
        for v in builtins.iter().chain(&self.validators).chain(&gate) {
            let outcome = v.validate(&cx).await?;
            tracing::info!(run_id = %run_id, validator = %outcome.validator, verdict = ?outcome.verdict, summary = %outcome.summary, "validation");
            match outcome.verdict {
                Verdict::Pass => {}
                Verdict::Fail => {
                    metrics.validation_failures.increment(1);
                    failed.push(outcome.validator.clone());
                }
                Verdict::NeedsReview => review = true,
            }
            store
                .append_evidence(
                    run_id,
                    self.control.clock().now(),
                    &self.actor(),
                    &EvidenceRecord::Validation(outcome),
                )
                .await?;
        }
        if !failed.is_empty() {
            let why = format!("failed: {}", failed.join(", "));
            self.step(run_id, RunState::Staged, Event::ValidationFailed, &why)
                .await?;
            return Err(Error::ValidationFailed {
                run_id: run_id.clone(),
                failed,
            });
        }
        // A reconciliation reports what would need review; there is nothing to decide on, since
        // it is never published.
        if review && m.mode != ExecutionMode::Reconciliation {
            self.step(
                run_id,
                RunState::Staged,
                Event::NeedsReview,
                "business delta over threshold: owner review required",
            )
            .await
        } else {
            let why = if review {
                "validated; the owner-review findings are the reconciliation's report"
            } else {
                "all validators passed"
            };
            self.step(run_id, RunState::Staged, Event::ValidationPassed, why)
                .await
        }
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
