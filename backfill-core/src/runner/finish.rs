//! After staging: validation, owner review, publication and rollback.

use std::time::Instant;

use serde_json::json;

use super::{not_found, Runner};
use crate::context::ExecutionMode;
use crate::digest::PartitionDigests;
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::manifest::ApprovedManifest;
use crate::publish::{PublishReceipt, PublishRequest, RollbackRequest};
use crate::state::RunState;
use crate::store::{AcceptedPointer, ChunkStatus, EvidenceKind};
use crate::telemetry::RunMetrics;
use crate::transform::DeterministicTransform;
use crate::validate::{DigestMatchesLedger, ValidationContext, Validator, Verdict};

impl<T: DeterministicTransform> Runner<T> {
    async fn ledger_digests(
        &self,
        run_id: &RunId,
    ) -> Result<(Vec<crate::store::ChunkRecord>, PartitionDigests)> {
        let chunks = self.store.chunks(run_id).await?;
        let mut ledger = PartitionDigests::default();
        for c in chunks.iter().filter(|c| c.status == ChunkStatus::Done) {
            ledger.merge(&c.digests);
        }
        Ok((chunks, ledger))
    }

    /// Runs the validators on the staged output and moves the run to Validated, AwaitingReview or
    /// Rejected.
    pub(super) async fn validate(&self, approved: &ApprovedManifest) -> Result<RunState> {
        let m = approved.manifest();
        let run_id = approved.run_id();
        let (chunks, ledger) = self.ledger_digests(run_id).await?;
        let cx = ValidationContext {
            run_id,
            manifest: m,
            chunks: &chunks,
            ledger: &ledger,
            staged: self.sink.as_ref(),
            current: self.publisher.as_ref(),
        };
        let digest_check = DigestMatchesLedger;
        let mut validators: Vec<&dyn Validator<T::Output>> = Vec::new();
        if m.validation.as_ref().is_some_and(|v| v.checksum_required) {
            validators.push(&digest_check);
        }
        validators.extend(self.validators.iter().map(AsRef::as_ref));
        let metrics = RunMetrics::new(m);
        let (mut failed, mut review) = (Vec::new(), false);
        for v in validators {
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
            self.store
                .append_evidence(
                    run_id,
                    self.clock.now(),
                    &self.actor(),
                    EvidenceKind::Validation,
                    json!(outcome),
                )
                .await?;
        }
        let actor = self.actor();
        if !failed.is_empty() {
            self.transition(
                run_id,
                RunState::Staged,
                RunState::Rejected,
                &actor,
                &format!("failed: {}", failed.join(", ")),
            )
            .await?;
            return Err(Error::ValidationFailed {
                run_id: run_id.clone(),
                failed,
            });
        }
        let to = if review {
            RunState::AwaitingReview
        } else {
            RunState::Validated
        };
        let why = if review {
            "business delta over threshold: owner review required"
        } else {
            "all validators passed"
        };
        self.transition(run_id, RunState::Staged, to, &actor, why)
            .await?;
        Ok(to)
    }

    /// An owner's decision on a run waiting in `AwaitingReview`. The reviewer may not be the requester.
    pub async fn review(
        &self,
        run_id: &RunId,
        accept: bool,
        by: &str,
        reason: &str,
    ) -> Result<RunState> {
        let (approved, record) = self.load(run_id).await?;
        if by.trim().is_empty() || by.trim() == approved.manifest().requested_by.trim() {
            return Err(Error::SelfApproval {
                run_id: run_id.clone(),
                principal: by.into(),
            });
        }
        let to = if accept {
            RunState::Validated
        } else {
            RunState::Rejected
        };
        record.state.check_transition(to, run_id)?;
        if record.state != RunState::AwaitingReview {
            return Err(Error::IllegalTransition {
                run_id: run_id.clone(),
                from: record.state,
                to,
            });
        }
        let now = self.clock.now();
        self.store
            .append_evidence(
                run_id,
                now,
                by,
                EvidenceKind::Review,
                json!({"accept": accept, "reason": reason}),
            )
            .await?;
        self.transition(run_id, RunState::AwaitingReview, to, by, reason)
            .await?;
        Ok(to)
    }

    /// Publishes a validated run (the explicit step when the manifest requires a manual publish).
    /// Publishing a run that is already published returns its receipt.
    pub async fn publish(&self, run_id: &RunId, by: &str) -> Result<PublishReceipt> {
        let (approved, record) = self.load(run_id).await?;
        self.preflight(approved.manifest())?;
        match record.state {
            RunState::Validated => self.publish_approved(&approved, by).await,
            RunState::Published => self
                .status(run_id)
                .await?
                .receipt
                .ok_or_else(|| not_found(run_id, "publish receipt")),
            other => Err(Error::PublishRefused {
                run_id: run_id.clone(),
                reason: format!("run is {other}, not validated"),
            }),
        }
    }

    /// Publishes, moves the accepted pointer and supersedes the previous accepted run. After an unknown
    /// outcome (crash or timeout after the target committed) it asks the publisher first and never
    /// publishes twice.
    pub(super) async fn publish_approved(
        &self,
        approved: &ApprovedManifest,
        by: &str,
    ) -> Result<PublishReceipt> {
        let m = approved.manifest();
        let run_id = approved.run_id();
        if m.mode == ExecutionMode::DryRun {
            return Err(Error::PublishRefused {
                run_id: run_id.clone(),
                reason: "a dry run is never published".into(),
            });
        }
        let started = Instant::now();
        let current = self.store.accepted(&m.target.name).await?;
        let previous = match &current {
            Some(p) if p.run_id != *run_id => Some(p.run_id.clone()),
            Some(_) => self.recorded_previous(run_id).await?,
            None => None,
        };
        let receipt = match self.publisher.inspect(run_id).await? {
            Some(receipt) => {
                tracing::warn!(run_id = %run_id, "target already holds this run's output: recording it instead of publishing again");
                receipt
            }
            None => {
                let (_, ledger) = self.ledger_digests(run_id).await?;
                let req = PublishRequest {
                    run_id,
                    manifest: m,
                    digests: &ledger,
                    previous: previous.as_ref(),
                    at: self.clock.now(),
                };
                self.publisher.publish(req, self.sink.as_ref()).await?
            }
        };
        let now = self.clock.now();
        self.store
            .append_evidence(
                run_id,
                now,
                by,
                EvidenceKind::Published,
                json!({"receipt": receipt, "previous": previous}),
            )
            .await?;
        if current.as_ref().map(|p| &p.run_id) != Some(run_id) {
            let pointer = AcceptedPointer {
                target: m.target.name.clone(),
                run_id: run_id.clone(),
                accepted_at: now,
                accepted_by: by.into(),
            };
            self.store
                .swap_accepted(current.as_ref().map(|p| &p.run_id), &pointer)
                .await?;
            self.store
                .append_evidence(
                    run_id,
                    now,
                    by,
                    EvidenceKind::PointerMoved,
                    json!({"target": m.target.name, "from": previous, "to": run_id}),
                )
                .await?;
        }
        self.transition(
            run_id,
            RunState::Validated,
            RunState::Published,
            by,
            "published",
        )
        .await?;
        if let Some(prev) = &previous {
            if let Some(rec) = self.store.run(prev).await? {
                if rec.state == RunState::Published {
                    self.transition(
                        prev,
                        RunState::Published,
                        RunState::Superseded,
                        by,
                        &format!("superseded by run {run_id}"),
                    )
                    .await?;
                }
            }
        }
        RunMetrics::new(m)
            .publish_seconds
            .record(started.elapsed().as_secs_f64());
        Ok(receipt)
    }

    /// The previous accepted run recorded by an earlier, interrupted publish of this run.
    async fn recorded_previous(&self, run_id: &RunId) -> Result<Option<RunId>> {
        let evidence = self.store.evidence(run_id).await?;
        Ok(evidence
            .iter()
            .rev()
            .find(|e| e.kind == EvidenceKind::Published)
            .and_then(|e| serde_json::from_value(e.detail["previous"].clone()).ok())
            .flatten())
    }

    /// Moves a target back to an earlier accepted run `to`: the publisher restores its output, the
    /// pointer moves back, the current run becomes `RolledBack` and `to` becomes `Published` again.
    pub async fn rollback(
        &self,
        target: &str,
        to: &RunId,
        by: &str,
        reason: &str,
    ) -> Result<PublishReceipt> {
        let current = self
            .store
            .accepted(target)
            .await?
            .ok_or_else(|| not_found(to, &format!("accepted run of {target}")))?;
        let from = current.run_id.clone();
        let (from_manifest, _) = self.load(&from).await?;
        let to_record = self
            .store
            .run(to)
            .await?
            .ok_or_else(|| not_found(to, "run"))?;
        if from == *to {
            return Err(Error::IllegalTransition {
                run_id: to.clone(),
                from: RunState::Published,
                to: RunState::Published,
            });
        }
        if to_record.target != target {
            return Err(Error::PublishRefused {
                run_id: to.clone(),
                reason: format!("run belongs to target {}, not {target}", to_record.target),
            });
        }
        to_record.state.check_transition(RunState::Published, to)?;
        let now = self.clock.now();
        let receipt = self
            .publisher
            .rollback(RollbackRequest {
                from: &from,
                to,
                manifest: from_manifest.manifest(),
                at: now,
            })
            .await?;
        let pointer = AcceptedPointer {
            target: target.into(),
            run_id: to.clone(),
            accepted_at: now,
            accepted_by: by.into(),
        };
        self.store.swap_accepted(Some(&from), &pointer).await?;
        for run in [&from, to] {
            self.store
                .append_evidence(run, now, by, EvidenceKind::RolledBack, json!({"target": target, "from": from, "to": to, "reason": reason, "receipt": receipt}))
                .await?;
        }
        self.transition(&from, RunState::Published, RunState::RolledBack, by, reason)
            .await?;
        self.transition(
            to,
            RunState::Superseded,
            RunState::Published,
            by,
            &format!("reinstated by rollback of {from}: {reason}"),
        )
        .await?;
        Ok(receipt)
    }
}
