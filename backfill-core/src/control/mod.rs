//! The control plane: every operator action on runs, without a transform, source, sink or row type.
//!
//! [`Control`] holds a [`RunStore`] and a registry of publish targets (`Arc<dyn Publisher>`, keyed by
//! target name). It submits and approves manifests, records owner reviews, cancels and reopens runs,
//! publishes and rolls back, reports status, lists runs and exports evidence. Executing a run's chunks
//! is the [`Executor`](crate::runner::Executor)'s job, the only part generic over a transform.
//!
//! ```
//! use std::sync::Arc;
//! use backfill_core::control::Control;
//! use backfill_core::memory::{MemoryPublisher, MemorySink, MemoryStore};
//! use backfill_core::store::RunFilter;
//! # #[derive(Debug, Clone, serde::Serialize)] struct Row;
//! # impl backfill_core::digest::OutputRow for Row {
//! #     fn partition(&self) -> std::borrow::Cow<'_, str> { "p".into() }
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let sink = MemorySink::<Row>::new("daily_staging");
//! let control = Control::new(Arc::new(MemoryStore::new()))
//!     .with_target(Arc::new(MemoryPublisher::new("daily", &sink)))?;
//! assert!(control.runs(&RunFilter::all()).await?.is_empty());
//! # Ok::<(), backfill_core::Error>(())
//! # }).unwrap();
//! ```

mod estimate;
mod freeze;
mod publish;
mod status;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use status::RunReport;

use crate::context::{Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::evidence::EvidenceRecord;
use crate::ids::RunId;
use crate::manifest::{ApprovedManifest, RunManifest, StoredManifest};
use crate::publish::Publisher;
use crate::state::{next, Event, RunState, Transition};
use crate::store::{RunFilter, RunRecord, RunStore};

/// Operator actions over a run store and a registry of targets. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    store: Arc<dyn RunStore>,
    targets: Arc<BTreeMap<String, Arc<dyn Publisher>>>,
    clock: Arc<dyn Clock>,
    windows: Option<Arc<dyn crate::live::TargetWindows>>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("store", &self.store)
            .field("targets", &self.targets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

pub(crate) fn not_found(run_id: &RunId, what: &str) -> Error {
    Error::NotFound {
        run_id: run_id.clone(),
        what: what.into(),
    }
}

impl Control {
    /// A control plane over `store`, with no targets and the system clock.
    pub fn new(store: Arc<dyn RunStore>) -> Self {
        Self {
            store,
            targets: Arc::new(BTreeMap::new()),
            clock: Arc::new(SystemClock),
            windows: None,
        }
    }

    /// Registers a publish target under its descriptor's name (the manifests' `target.name`).
    /// Registering two publishers for one name is a configuration error.
    pub fn with_target(mut self, publisher: Arc<dyn Publisher>) -> Result<Self> {
        let name = publisher.descriptor().name;
        let targets = Arc::make_mut(&mut self.targets);
        if targets.contains_key(&name) {
            return Err(Error::InvalidManifest {
                run_id: RunId::default(),
                field: "target.name".into(),
                message: format!("two publishers registered for target {name}"),
            });
        }
        targets.insert(name, publisher);
        Ok(self)
    }

    /// Replaces the system clock used for bookkeeping (transitions, approvals, evidence).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The run store.
    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.store
    }

    /// The bookkeeping clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The publisher registered for a target name.
    pub fn target(&self, name: &str) -> Option<&Arc<dyn Publisher>> {
        self.targets.get(name)
    }

    /// The registered target names.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(String::as_str)
    }

    /// The manifest's publisher, refusing a manifest it cannot honour: no publisher registered for
    /// the target, a mutation mode it does not support, or (for restatements and repairs, whose
    /// whole point is a reversible change) no rollback.
    pub fn publisher_for(&self, m: &RunManifest) -> Result<&Arc<dyn Publisher>> {
        let publisher = self
            .targets
            .get(&m.target.name)
            .ok_or_else(|| Error::Unsupported {
                run_id: m.run_id.clone(),
                part: format!("the control plane ({} registered)", self.target_list()),
                what: format!(
                    "publish to target `{}`: no publisher is registered for it",
                    m.target.name
                ),
            })?;
        let caps = publisher.capabilities();
        let mutation = m.mutation()?;
        if !caps.supports(mutation.name()) {
            return Err(Error::Unsupported {
                run_id: m.run_id.clone(),
                part: format!("publisher of {}", m.target.name),
                what: format!(
                    "apply mutation {} (it supports {})",
                    mutation.name(),
                    caps.mutations
                        .iter()
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if m.target.partitions.len() > 1 && !caps.atomic_multi_partition {
            return Err(Error::Unsupported {
                run_id: m.run_id.clone(),
                part: format!("publisher of {}", m.target.name),
                what: format!(
                    "publish {} partitions atomically",
                    m.target.partitions.len()
                ),
            });
        }
        Ok(publisher)
    }

    fn target_list(&self) -> String {
        if self.targets.is_empty() {
            "none".into()
        } else {
            self.targets.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// Moves a run by one lifecycle event (compare-and-set on `from`) and records the transition as
    /// evidence. Every state change in the crate goes through here.
    pub(crate) async fn apply(
        &self,
        run_id: &RunId,
        from: RunState,
        event: Event,
        by: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<RunState> {
        let to = next(from, event).ok_or_else(|| Error::IllegalEvent {
            run_id: run_id.clone(),
            state: from,
            event,
        })?;
        let t = Transition {
            run_id: run_id.clone(),
            from,
            to,
            by: by.into(),
            at,
            reason: reason.into(),
        };
        self.store.transition(&t).await?;
        self.store
            .append_evidence(run_id, at, by, &EvidenceRecord::Transition(t))
            .await?;
        tracing::info!(run_id = %run_id, from = %from, to = %to, by, reason, "transition");
        Ok(to)
    }

    /// [`apply`](Self::apply) at the clock's now.
    pub(crate) async fn apply_now(
        &self,
        run_id: &RunId,
        from: RunState,
        event: Event,
        by: &str,
        reason: &str,
    ) -> Result<RunState> {
        self.apply(run_id, from, event, by, reason, self.clock.now())
            .await
    }

    /// The run record, or `NotFound`.
    pub async fn run(&self, run_id: &RunId) -> Result<RunRecord> {
        self.store
            .run(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "run"))
    }

    /// Runs matching a filter, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.store.runs(filter).await
    }

    /// Stores an approved manifest and creates its run in `Approved`. Submitting the same manifest again
    /// returns the existing run; another manifest under the same run id is a `Conflict`. A manifest
    /// that `supersedes` an earlier version cancels that version's run if it has not published.
    pub async fn submit(&self, approved: &ApprovedManifest) -> Result<RunRecord> {
        let stored = approved.to_stored();
        stored.verify()?;
        let run_id = approved.run_id();
        let m = approved.manifest();
        // Workers started together all submit the same approved manifest: one creates the run, and
        // whoever finds it still a draft records the approval (the first to do so wins the
        // transition; the others find the run approved).
        let mut raced = 0;
        loop {
            if let Some(existing) = self.store.run(run_id).await? {
                let existing = same_manifest(existing, &stored)?;
                if existing.state != RunState::Draft {
                    return Ok(existing);
                }
                // A draft of this very manifest: submitted as a draft, or by a worker that has not
                // recorded its approval yet. This approval is as good as theirs.
                self.store.put_manifest(&stored).await?;
                break;
            }
            match self.store_new_run(m, &stored).await {
                Ok(()) => break,
                Err(e) if e.root().kind() == ErrorKind::Conflict && raced < SUBMIT_RACE_WAITS => {
                    raced += 1;
                    tokio::time::sleep(SUBMIT_RACE_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = self.record_approval(approved).await {
            let now = self.run(run_id).await?;
            if e.root().kind() == ErrorKind::Conflict && now.state != RunState::Draft {
                return Ok(now);
            }
            return Err(e);
        }
        if let Some(prev) = &m.supersedes {
            self.cancel_superseded_version(&prev.run_id, run_id).await?;
        }
        self.run(run_id).await
    }

    /// Stores a draft (unapproved) manifest and creates its run in `Draft`, so the request is on record
    /// before an owner looks at it. Executing a draft is refused with [`Error::NotApproved`].
    pub async fn submit_draft(&self, manifest: &RunManifest) -> Result<RunRecord> {
        let stored = StoredManifest::new(manifest, None);
        let mut raced = 0;
        loop {
            if let Some(existing) = self.store.run(&manifest.run_id).await? {
                return same_manifest(existing, &stored);
            }
            match self.store_new_run(manifest, &stored).await {
                Ok(()) => return self.run(&manifest.run_id).await,
                // Submitted by someone else at the same moment: theirs is found on the next look.
                Err(e) if e.root().kind() == ErrorKind::Conflict && raced < SUBMIT_RACE_WAITS => {
                    raced += 1;
                    tokio::time::sleep(SUBMIT_RACE_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Approves a stored draft: checks findings and self-approval, binds the approval to the stored
    /// digest and moves the run from `Draft` to `Approved`.
    pub async fn approve(&self, run_id: &RunId, approver: &str) -> Result<RunRecord> {
        let record = self.run(run_id).await?;
        let stored = self
            .store
            .manifest(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "manifest"))?;
        if let Some(approval) = &stored.approval {
            // The same owner approving the same digest again (a retry, a second worker of one job
            // started at the same moment) gets the approval that stands; anyone else is refused.
            if approval.approved_by == approver && approval.digest == record.manifest_digest {
                return self.approved(&stored.verify()?).await;
            }
        }
        if stored.approval.is_some() || record.state != RunState::Draft {
            return Err(Error::Immutable {
                run_id: run_id.clone(),
                version: stored.version,
            });
        }
        let manifest = stored.manifest()?;
        if manifest.digest() != record.manifest_digest {
            return Err(Error::Tampered {
                run_id: run_id.clone(),
                expected: record.manifest_digest.to_string(),
                actual: manifest.digest().to_string(),
            });
        }
        let approved = manifest.approve(approver, self.clock.now())?;
        match self.store.put_manifest(&approved.to_stored()).await {
            Ok(()) => {}
            // Another process stored an approval first: if it is this owner's, it stands.
            Err(e) if e.kind() == ErrorKind::Conflict || matches!(e, Error::Immutable { .. }) => {
                let theirs = self
                    .store
                    .manifest(run_id)
                    .await?
                    .ok_or_else(|| not_found(run_id, "manifest"))?;
                match &theirs.approval {
                    Some(a) if a.approved_by == approver && a.digest == record.manifest_digest => {
                        return self.approved(&theirs.verify()?).await;
                    }
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        self.approved(&approved).await
    }

    /// Records an approval's transition unless another process already did, and answers the run.
    async fn approved(&self, approved: &ApprovedManifest) -> Result<RunRecord> {
        let run_id = approved.run_id();
        if self.run(run_id).await?.state == RunState::Draft {
            match self.record_approval(approved).await {
                Ok(()) => {}
                // Lost the transition to the process that stored the same approval.
                Err(e) if e.root().kind() == ErrorKind::Conflict => {
                    if self.run(run_id).await?.state == RunState::Draft {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.run(run_id).await
    }

    /// Moves a draft to `Approved` and records the approval, at the approval's instant.
    async fn record_approval(&self, approved: &ApprovedManifest) -> Result<()> {
        let approval = approved.approval();
        self.apply(
            approved.run_id(),
            RunState::Draft,
            Event::Approve,
            &approval.approved_by,
            "approved",
            approval.approved_at,
        )
        .await?;
        self.store
            .append_evidence(
                approved.run_id(),
                approval.approved_at,
                &approval.approved_by,
                &EvidenceRecord::Approved(approval.clone()),
            )
            .await?;
        Ok(())
    }

    async fn store_new_run(&self, m: &RunManifest, stored: &StoredManifest) -> Result<()> {
        let now = self.clock.now();
        self.store.put_manifest(stored).await?;
        self.store
            .create_run(&RunRecord {
                run_id: m.run_id.clone(),
                manifest_version: m.version,
                manifest_digest: stored.digest.clone(),
                target: m.target.name.clone(),
                mode: m.mode,
                requested_by: m.requested_by.clone(),
                state: RunState::Draft,
                created_at: now,
                updated_at: now,
            })
            .await?;
        self.store
            .append_evidence(
                &m.run_id,
                now,
                &m.requested_by,
                &EvidenceRecord::ManifestStored {
                    digest: stored.digest.clone(),
                    version: m.version,
                    supersedes: m.supersedes.clone(),
                },
            )
            .await?;
        Ok(())
    }

    async fn cancel_superseded_version(&self, old: &RunId, new: &RunId) -> Result<()> {
        let Some(rec) = self.store.run(old).await? else {
            return Ok(());
        };
        if next(rec.state, Event::Cancel).is_some() {
            self.apply_now(
                old,
                rec.state,
                Event::Cancel,
                "control",
                &format!("manifest amended by run {new}"),
            )
            .await?;
        }
        Ok(())
    }

    /// Loads a run's manifest and verifies it: digest and approval. Nothing runs before this.
    pub async fn load(&self, run_id: &RunId) -> Result<(ApprovedManifest, RunRecord)> {
        let record = self.run(run_id).await?;
        let stored = self
            .store
            .manifest(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "manifest"))?;
        let approved = stored.verify()?;
        if *approved.digest() != record.manifest_digest {
            return Err(Error::Tampered {
                run_id: run_id.clone(),
                expected: record.manifest_digest.to_string(),
                actual: approved.digest().to_string(),
            });
        }
        Ok((approved, record))
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
        let event = if accept {
            Event::ReviewAccepted
        } else {
            Event::ReviewRejected
        };
        // The same reviewer's same decision, already recorded (a retry, a second worker of one
        // job): it stands. Any other decision after the review is refused below.
        if record.state != RunState::AwaitingReview && self.reviewed_by(run_id, by, accept).await? {
            return Ok(record.state);
        }
        if next(record.state, event).is_none() {
            return Err(Error::IllegalEvent {
                run_id: run_id.clone(),
                state: record.state,
                event,
            });
        }
        let now = self.clock.now();
        self.store
            .append_evidence(
                run_id,
                now,
                by,
                &EvidenceRecord::Review {
                    accept,
                    reason: reason.into(),
                },
            )
            .await?;
        match self
            .apply(run_id, record.state, event, by, reason, now)
            .await
        {
            // Another process recorded the same reviewer's same decision at the same moment.
            Err(e) if e.root().kind() == ErrorKind::Conflict => {
                let now = self.run(run_id).await?.state;
                if now != RunState::AwaitingReview && self.reviewed_by(run_id, by, accept).await? {
                    Ok(now)
                } else {
                    Err(e)
                }
            }
            r => r,
        }
    }

    /// Whether `by` recorded the review decision `accept` for the run.
    async fn reviewed_by(&self, run_id: &RunId, by: &str, accept: bool) -> Result<bool> {
        Ok(self.store.evidence(run_id).await?.iter().any(|e| {
            e.by == by
                && matches!(e.record, EvidenceRecord::Review { accept: a, .. } if a == accept)
        }))
    }

    /// Cancels a run by id. The cancellation is persisted: every worker executing the run stops at
    /// its next batch or lease renewal, and none starts it again until an operator
    /// [`reopen`](Self::reopen)s it. Finished chunks stay in the ledger.
    pub async fn cancel(&self, run_id: &RunId, by: &str, reason: &str) -> Result<RunState> {
        let now = self.clock.now();
        self.store
            .append_evidence(
                run_id,
                now,
                by,
                &EvidenceRecord::CancelRequested {
                    reason: reason.into(),
                },
            )
            .await?;
        let state = self.with_retry(run_id, Event::Cancel, by, reason).await?;
        // A run that froze its window releases it (a draft never froze anything).
        if self.windows.is_some() {
            if let Ok((approved, _)) = self.load(run_id).await {
                self.thaw_window(run_id, approved.manifest(), by, "cancelled")
                    .await?;
            }
        }
        Ok(state)
    }

    /// Reopens a cancelled run: it goes back to `Approved` and the next execution resumes at the first
    /// unfinished chunk.
    pub async fn reopen(&self, run_id: &RunId, by: &str, reason: &str) -> Result<RunState> {
        self.load(run_id).await?;
        self.with_retry(run_id, Event::Reopen, by, reason).await
    }

    /// Applies an event to the run's current state, re-reading it when a worker moved it meanwhile.
    async fn with_retry(
        &self,
        run_id: &RunId,
        event: Event,
        by: &str,
        reason: &str,
    ) -> Result<RunState> {
        let mut tries = 0;
        loop {
            let state = self.run(run_id).await?.state;
            match self.apply_now(run_id, state, event, by, reason).await {
                Err(e) if e.kind() == ErrorKind::Conflict && tries < 5 => tries += 1,
                other => return other,
            }
        }
    }
}

/// How often, and how long between, a submitter that lost the race to create a run looks again
/// for the winner's run (two seconds in all).
const SUBMIT_RACE_WAITS: u32 = 100;
const SUBMIT_RACE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

fn same_manifest(existing: RunRecord, stored: &StoredManifest) -> Result<RunRecord> {
    if existing.manifest_digest == stored.digest {
        Ok(existing)
    } else {
        Err(Error::Conflict {
            run_id: existing.run_id.clone(),
            what: "manifest of existing run".into(),
            expected: stored.digest.to_string(),
            found: existing.manifest_digest.to_string(),
        })
    }
}
