//! Publication and rollback, converging after a crash at any point.
//!
//! The target is the authority: [`Publisher::inspect`] and [`Publisher::inspect_rollback`] say what
//! it committed, and every later step (evidence, transitions, the store's accepted pointer, moved
//! last) is skipped when already done. Calling `publish` or `rollback` again after a crash in any
//! window therefore finishes the same change once, and store and target end on one pointer.

use std::time::Instant;

use super::{not_found, Control};
use crate::context::ExecutionMode;
use crate::digest::PartitionDigests;
use crate::error::{Error, ErrorKind, Result};
use crate::evidence::{Evidence, EvidenceRecord};
use crate::ids::RunId;
use crate::publish::{ChunkArtifact, PublishReceipt, PublishRequest, RollbackRequest};
use crate::state::{Event, RunState};
use crate::store::{AcceptedPointer, ChunkStatus};
use crate::telemetry::RunMetrics;

impl Control {
    /// The done chunks' artifacts (plan order) and merged digests, from the ledger.
    pub async fn ledger(&self, run_id: &RunId) -> Result<(Vec<ChunkArtifact>, PartitionDigests)> {
        let chunks = self.store.chunks(run_id).await?;
        let mut digests = PartitionDigests::default();
        let mut artifacts = Vec::with_capacity(chunks.len());
        for c in chunks.iter().filter(|c| c.status == ChunkStatus::Done) {
            digests.merge(&c.digests);
            artifacts.push(ChunkArtifact {
                chunk_id: c.chunk_id.clone(),
                attempt: c.attempts,
                rows: c.output_count,
                artifact: c.artifact.clone(),
            });
        }
        Ok((artifacts, digests))
    }

    /// Publishes a validated run, moves the accepted pointer and supersedes the previous run. Calling
    /// it for a run that is already published returns its receipt and finishes whatever an
    /// interrupted publication left undone.
    ///
    /// Two processes publishing the same run at once both succeed with the same receipt: the one
    /// that loses a compare-and-set (the run's state, the accepted pointer) looks again, and finds
    /// the publication done.
    pub async fn publish(&self, run_id: &RunId, by: &str) -> Result<PublishReceipt> {
        let mut tries = 0;
        loop {
            match self.publish_step(run_id, by).await {
                Err(e) if e.root().kind() == ErrorKind::Conflict && tries < 3 => {
                    tries += 1;
                    tracing::info!(run_id = %run_id, error = %e, "publication raced another; looking again");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
                }
                r => return r,
            }
        }
    }

    async fn publish_step(&self, run_id: &RunId, by: &str) -> Result<PublishReceipt> {
        let (approved, record) = self.load(run_id).await?;
        let m = approved.manifest();
        if matches!(
            m.mode,
            ExecutionMode::DryRun | ExecutionMode::Reconciliation
        ) {
            return Err(Error::PublishRefused {
                run_id: run_id.clone(),
                reason: if m.mode == ExecutionMode::DryRun {
                    "a dry run is never published".into()
                } else {
                    "a reconciliation run is never published: it compares with the accepted output"
                        .into()
                },
            });
        }
        // A worker that was away (paused past its lease) may ask to publish a run another worker
        // published and a later run has since superseded: that publication happened; answer with
        // its receipt and touch nothing (publishing it again would undo the later run).
        if record.state == RunState::Superseded {
            let evidence = self.store.evidence(run_id).await?;
            if let Some(receipt) = published_receipt(&evidence) {
                tracing::info!(run_id = %run_id, "already published and since superseded: nothing to publish");
                return Ok(receipt);
            }
        }
        if !matches!(record.state, RunState::Validated | RunState::Published) {
            return Err(Error::PublishRefused {
                run_id: run_id.clone(),
                reason: format!("run is {}, not validated", record.state),
            });
        }
        let publisher = self.publisher_for(m)?;
        let started = Instant::now();
        let evidence = self.store.evidence(run_id).await?;
        let current = self.store.accepted(&m.target.name).await?;
        let recorded = recorded_previous(&evidence);
        // Already published, and the pointer names a run that is neither this one nor the one it
        // replaced: a later run was published since this run's state was read (a worker paused
        // between the two reads). This publication is done; answer its receipt and touch nothing
        // (taking the pointer back would undo the later run and supersede it).
        if record.state == RunState::Published {
            let later = current
                .as_ref()
                .is_some_and(|p| p.run_id != *run_id && Some(&p.run_id) != recorded.as_ref());
            if let (true, Some(receipt)) = (later, published_receipt(&evidence)) {
                tracing::info!(run_id = %run_id, "already published and a later run took the pointer: nothing to publish");
                return Ok(receipt);
            }
        }
        // A run being published replaces the pointer's run; one already published, the run its
        // publication recorded.
        let previous = match &current {
            Some(p) if p.run_id != *run_id && record.state == RunState::Validated => {
                Some(p.run_id.clone())
            }
            _ => recorded,
        };
        let receipt = match publisher.inspect(run_id).await? {
            Some(receipt) => receipt,
            None if record.state == RunState::Published => {
                return Err(Error::Conflict {
                    run_id: run_id.clone(),
                    what: format!("publication on target {}", m.target.name),
                    expected: "the target to hold the run's receipt".into(),
                    found: "no receipt".into(),
                })
            }
            None => {
                self.check_window(run_id, m, &evidence).await?;
                let (artifacts, digests) = self.ledger(run_id).await?;
                let req = PublishRequest {
                    run_id,
                    manifest: m,
                    digests: &digests,
                    artifacts: &artifacts,
                    previous: previous.as_ref(),
                    at: self.clock.now(),
                };
                publisher.publish(req).await?
            }
        };
        let now = self.clock.now();
        if !evidence
            .iter()
            .any(|e| matches!(e.record, EvidenceRecord::Published { .. }))
        {
            let record = EvidenceRecord::Published {
                receipt: receipt.clone(),
                previous: previous.clone(),
            };
            self.store.append_evidence(run_id, now, by, &record).await?;
        }
        if record.state == RunState::Validated {
            self.apply(
                run_id,
                RunState::Validated,
                Event::Publish,
                by,
                "published",
                now,
            )
            .await?;
        }
        if let Some(prev) = &previous {
            if let Some(rec) = self.store.run(prev).await? {
                if rec.state == RunState::Published {
                    self.apply(
                        prev,
                        RunState::Published,
                        Event::Supersede,
                        by,
                        &format!("superseded by run {run_id}"),
                        now,
                    )
                    .await?;
                }
            }
        }
        let moved = EvidenceRecord::PointerMoved {
            target: m.target.name.clone(),
            from: previous.clone(),
            to: run_id.clone(),
        };
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
            self.store.append_evidence(run_id, now, by, &moved).await?;
        } else if !pointer_recorded(&evidence, run_id) {
            // The pointer moved but a crash lost its record: record it now.
            self.store.append_evidence(run_id, now, by, &moved).await?;
        }
        self.thaw_window(run_id, m, by, "published").await?;
        RunMetrics::new(m)
            .publish_seconds
            .record(started.elapsed().as_secs_f64());
        Ok(receipt)
    }

    /// Rolls `run_id` back to the run it superseded (which must still be `Superseded`).
    pub async fn rollback_run(
        &self,
        run_id: &RunId,
        by: &str,
        reason: &str,
    ) -> Result<PublishReceipt> {
        let record = self.run(run_id).await?;
        let evidence = self.store.evidence(run_id).await?;
        let to = recorded_previous(&evidence).ok_or_else(|| Error::PublishRefused {
            run_id: run_id.clone(),
            reason: "the run replaced no earlier run, so there is nothing to roll back to".into(),
        })?;
        self.rollback(&record.target, &to, by, reason).await
    }

    /// Moves a target back to an earlier accepted run `to`: the publisher restores its output, the
    /// current run becomes `RolledBack`, `to` becomes `Published` again and the pointer moves back.
    /// Idempotent: after a crash at any point, calling it again finishes the same rollback once.
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
        if current.run_id == *to {
            // Done already (the pointer moves last), or there is nothing to roll back.
            let evidence = self.store.evidence(to).await?;
            let done = evidence.iter().rev().find_map(|e| match &e.record {
                EvidenceRecord::RolledBack { from, receipt, .. } => {
                    Some((from.clone(), receipt.clone()))
                }
                _ => None,
            });
            let Some((from, receipt)) = done else {
                return Err(Error::IllegalEvent {
                    run_id: to.clone(),
                    state: RunState::Published,
                    event: Event::Reinstate,
                });
            };
            if !pointer_recorded(&evidence, to) {
                // The pointer moved back but a crash lost its record: record it now.
                let moved = EvidenceRecord::PointerMoved {
                    target: target.into(),
                    from: Some(from),
                    to: to.clone(),
                };
                self.store
                    .append_evidence(to, self.clock.now(), by, &moved)
                    .await?;
            }
            return Ok(receipt);
        }
        let from = current.run_id.clone();
        let (from_manifest, from_record) = self.load(&from).await?;
        let to_record = self.run(to).await?;
        if to_record.target != target {
            return Err(Error::PublishRefused {
                run_id: to.clone(),
                reason: format!("run belongs to target {}, not {target}", to_record.target),
            });
        }
        if !matches!(to_record.state, RunState::Superseded | RunState::Published) {
            return Err(Error::IllegalEvent {
                run_id: to.clone(),
                state: to_record.state,
                event: Event::Reinstate,
            });
        }
        let publisher = self.publisher_for(from_manifest.manifest())?;
        let now = self.clock.now();
        let receipt = match publisher.inspect_rollback(&from, to).await? {
            Some(r) => r,
            None => {
                publisher
                    .rollback(RollbackRequest {
                        from: &from,
                        to,
                        manifest: from_manifest.manifest(),
                        at: now,
                    })
                    .await?
            }
        };
        let rolled = EvidenceRecord::RolledBack {
            target: target.into(),
            from: from.clone(),
            to: to.clone(),
            reason: reason.into(),
            receipt: receipt.clone(),
        };
        for run in [&from, to] {
            let evidence = self.store.evidence(run).await?;
            if rollback_receipt(&evidence, Some(&from), to).is_none() {
                self.store.append_evidence(run, now, by, &rolled).await?;
            }
        }
        if from_record.state == RunState::Published {
            self.apply(&from, RunState::Published, Event::RollBack, by, reason, now)
                .await?;
        }
        if to_record.state == RunState::Superseded {
            self.apply(
                to,
                RunState::Superseded,
                Event::Reinstate,
                by,
                &format!("reinstated by rollback of {from}: {reason}"),
                now,
            )
            .await?;
        }
        let pointer = AcceptedPointer {
            target: target.into(),
            run_id: to.clone(),
            accepted_at: now,
            accepted_by: by.into(),
        };
        self.store.swap_accepted(Some(&from), &pointer).await?;
        let moved = EvidenceRecord::PointerMoved {
            target: target.into(),
            from: Some(from.clone()),
            to: to.clone(),
        };
        self.store.append_evidence(to, now, by, &moved).await?;
        Ok(receipt)
    }
}

/// Whether the run's evidence records the pointer moving to it after its latest publication or
/// rollback record.
fn pointer_recorded(evidence: &[Evidence], to: &RunId) -> bool {
    for e in evidence.iter().rev() {
        match &e.record {
            EvidenceRecord::PointerMoved { to: t, .. } if t == to => return true,
            EvidenceRecord::Published { .. } | EvidenceRecord::RolledBack { .. } => return false,
            _ => {}
        }
    }
    false
}

/// The receipt a run's publication recorded.
fn published_receipt(evidence: &[Evidence]) -> Option<PublishReceipt> {
    evidence.iter().rev().find_map(|e| match &e.record {
        EvidenceRecord::Published { receipt, .. } => Some(receipt.clone()),
        _ => None,
    })
}

/// The previous accepted run recorded by this run's publication.
fn recorded_previous(evidence: &[Evidence]) -> Option<RunId> {
    evidence.iter().rev().find_map(|e| match &e.record {
        EvidenceRecord::Published { previous, .. } => previous.clone(),
        _ => None,
    })
}

/// The receipt of a recorded rollback to `to` (from `from`, when given).
fn rollback_receipt(
    evidence: &[Evidence],
    from: Option<&RunId>,
    to: &RunId,
) -> Option<PublishReceipt> {
    evidence.iter().rev().find_map(|e| match &e.record {
        EvidenceRecord::RolledBack {
            from: f,
            to: t,
            receipt,
            ..
        } if t == to && from.is_none_or(|x| x == f) => Some(receipt.clone()),
        _ => None,
    })
}
