//! The runner: plans, executes, validates, publishes and rolls back runs, recording everything.
//!
//! ```
//! use std::sync::Arc;
//! use backfill_core::prelude::*;
//! use backfill_core::memory::{MemoryPublisher, MemorySink, MemorySource, MemoryStore};
//! # use std::borrow::Cow;
//! # use chrono::{NaiveDate, TimeZone, Utc};
//! # #[derive(Debug, Clone, serde::Serialize)]
//! # struct Row { id: String, day: NaiveDate, value: i64 }
//! # impl OutputRow for Row { fn partition(&self) -> Cow<'_, str> { Cow::Owned(self.day.format("%Y-%m").to_string()) } }
//! # #[derive(Debug)] struct Copy1;
//! # impl DeterministicTransform for Copy1 {
//! #     type Input = (NaiveDate, i64); type Output = Row;
//! #     fn name(&self) -> &str { "copy" } fn version(&self) -> &str { "1.0.0" }
//! #     fn apply(&self, i: &Self::Input, ctx: &TransformContext, out: &mut Vec<Row>) -> Result<(), TransformError> {
//! #         out.push(Row { id: ctx.output_id(&[&i.0.to_string()]), day: i.0, value: i.1 }); Ok(())
//! #     }
//! # }
//! # let d = |m, d| NaiveDate::from_ymd_opt(2025, m, d).unwrap();
//! # let manifest = {
//! #     let mut m = RunManifest::new("bf-doc-001", RunKind::Backfill, ExecutionMode::Backfill);
//! #     m.reason = "doc".into(); m.requested_by = "alice".into();
//! #     m.source = SourceSpec { kind: "memory".into(), name: "events".into(), snapshot: Some("s1".into()),
//! #         range: Some(InputRange::Dates { from: d(1, 1), to_exclusive: d(3, 1) }), ..SourceSpec::default() };
//! #     m.transform.name = "copy".into(); m.transform.version = "1.0.0".into();
//! #     m.target.name = "daily".into(); m.target.mutation = Some(Mutation::ReplacePartitions);
//! #     m.target.partitions = vec!["2025-01".into(), "2025-02".into()];
//! #     m.safety.side_effects = Some(SideEffectPolicy::default());
//! #     m.validation = Some(ValidationPlan { checksum_required: true, ..Default::default() });
//! #     m
//! # };
//! # let at = Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap();
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let source = MemorySource::by_date((1..=59).map(|i| (d(1, 1) + chrono::Days::new(i - 1), i as i64)).collect(), |r| r.0);
//! let runner = Runner::builder(
//!     Arc::new(MemoryStore::new()),
//!     Arc::new(source),
//!     Arc::new(Copy1),
//!     Arc::new(MemorySink::new("daily_staging")),
//!     Arc::new(MemoryPublisher::new("daily")),
//! )
//! .clock(Arc::new(FixedClock(at)))
//! .build();
//!
//! let approved = manifest.approve("owner-bob", at)?;
//! runner.submit(&approved).await?;
//! let report = runner.run(approved.run_id()).await?;
//! assert_eq!(report.state, RunState::Published);
//! assert_eq!(report.output_rows, 59);
//! # Ok::<(), backfill_core::Error>(())
//! # }).unwrap();
//! ```

mod execute;
mod finish;
mod throttle;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::context::{Clock, SystemClock};
use crate::digest::PartitionDigests;
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::manifest::{ApprovedManifest, RunManifest, StoredManifest};
use crate::policy::{DefaultSinkPolicy, SinkPolicy};
use crate::publish::{PublishReceipt, Publisher};
use crate::sink::StagingSink;
use crate::source::BackfillSource;
use crate::state::{RunState, Transition};
use crate::store::{ChunkStatus, EvidenceKind, RunRecord, RunStore};
use crate::transform::DeterministicTransform;
use crate::validate::{ValidationOutcome, Validator};

/// Retry of transient chunk failures, with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per chunk within one invocation of [`Runner::run`].
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Backoff ceiling.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts with the given initial backoff.
    pub fn new(max_attempts: u32, initial_backoff: Duration) -> Self {
        Self {
            max_attempts,
            initial_backoff,
            ..Self::default()
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Runner settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunnerOptions {
    /// Worker identity in chunk leases. A restarted process with the same id takes its own leases back
    /// at once; give every process that shares a store its own id.
    pub worker_id: String,
    /// Lease length; heartbeats renew it every third of it.
    pub lease_for: Duration,
    /// Retry of transient errors.
    pub retry: RetryPolicy,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            worker_id: "local".into(),
            lease_for: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

impl RunnerOptions {
    /// Options with a worker id.
    pub fn worker(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            ..Self::default()
        }
    }

    /// Sets the lease length.
    pub fn with_lease(mut self, lease_for: Duration) -> Self {
        self.lease_for = lease_for;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// Stops a run between batches. Clone it and call [`cancel`](Self::cancel) from anywhere.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Progress events for people watching a long run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunEvent {
    /// Chunks planned; `done` of them were finished by earlier invocations.
    Planned {
        /// Chunks in the plan.
        total: usize,
        /// Already done.
        done: usize,
    },
    /// A chunk was staged.
    ChunkStaged {
        /// Chunk label.
        label: String,
        /// Rows staged.
        rows: u64,
        /// Chunks done so far.
        done: usize,
        /// Chunks in the plan.
        total: usize,
    },
    /// A chunk attempt failed.
    ChunkFailed {
        /// Chunk label.
        label: String,
        /// Error message.
        error: String,
    },
    /// The run moved to a new state.
    State(RunState),
}

/// Receives [`RunEvent`]s (for progress bars and logs).
pub trait ProgressListener: fmt::Debug + Send + Sync + 'static {
    /// Called for every event, from the runner's task; keep it quick.
    fn event(&self, run_id: &RunId, event: &RunEvent);
}

/// The state of a run and what it has produced, rebuilt from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The run.
    pub run_id: RunId,
    /// Current state.
    pub state: RunState,
    /// Target name.
    pub target: String,
    /// Chunks in the plan.
    pub chunks_total: usize,
    /// Chunks done.
    pub chunks_done: usize,
    /// Input records read by done chunks.
    pub input_records: u64,
    /// Output rows staged by done chunks.
    pub output_rows: u64,
    /// Per-partition digests from the ledger.
    pub digests: PartitionDigests,
    /// Latest outcome of every validator.
    pub validations: Vec<ValidationOutcome>,
    /// The publish receipt, once published.
    pub receipt: Option<PublishReceipt>,
}

/// Runs backfills for one transform against one source, staging sink and publisher.
pub struct Runner<T: DeterministicTransform> {
    store: Arc<dyn RunStore>,
    source: Arc<dyn BackfillSource<T::Input>>,
    transform: Arc<T>,
    sink: Arc<dyn StagingSink<T::Output>>,
    publisher: Arc<dyn Publisher<T::Output>>,
    validators: Vec<Arc<dyn Validator<T::Output>>>,
    policy: Arc<dyn SinkPolicy>,
    clock: Arc<dyn Clock>,
    options: RunnerOptions,
    cancel: CancelHandle,
    progress: Option<Arc<dyn ProgressListener>>,
}

impl<T: DeterministicTransform> fmt::Debug for Runner<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("store", &self.store)
            .field("source", &self.source)
            .field("transform", &self.transform)
            .field("sink", &self.sink)
            .field("publisher", &self.publisher)
            .field("validators", &self.validators)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Runner`].
#[derive(Debug)]
pub struct RunnerBuilder<T: DeterministicTransform> {
    runner: Runner<T>,
}

impl<T: DeterministicTransform> RunnerBuilder<T> {
    /// Adds a validator (run in the order added, after the built-in digest check when the manifest
    /// requires checksums).
    pub fn validator(mut self, v: Arc<dyn Validator<T::Output>>) -> Self {
        self.runner.validators.push(v);
        self
    }

    /// Replaces the [`DefaultSinkPolicy`].
    pub fn policy(mut self, policy: Arc<dyn SinkPolicy>) -> Self {
        self.runner.policy = policy;
        self
    }

    /// Replaces the system clock used for bookkeeping (transitions, leases, evidence).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.runner.clock = clock;
        self
    }

    /// Sets options.
    pub fn options(mut self, options: RunnerOptions) -> Self {
        self.runner.options = options;
        self
    }

    /// Uses an existing cancel handle (so a listener or signal handler made earlier can cancel this runner).
    pub fn cancel_with(mut self, handle: CancelHandle) -> Self {
        self.runner.cancel = handle;
        self
    }

    /// Sets a progress listener.
    pub fn progress(mut self, listener: Arc<dyn ProgressListener>) -> Self {
        self.runner.progress = Some(listener);
        self
    }

    /// Finishes the runner.
    pub fn build(self) -> Runner<T> {
        self.runner
    }
}

impl<T: DeterministicTransform> Runner<T> {
    /// Starts a builder with the five parts every runner needs.
    pub fn builder(
        store: Arc<dyn RunStore>,
        source: Arc<dyn BackfillSource<T::Input>>,
        transform: Arc<T>,
        sink: Arc<dyn StagingSink<T::Output>>,
        publisher: Arc<dyn Publisher<T::Output>>,
    ) -> RunnerBuilder<T> {
        RunnerBuilder {
            runner: Self {
                store,
                source,
                transform,
                sink,
                publisher,
                validators: Vec::new(),
                policy: Arc::new(DefaultSinkPolicy),
                clock: Arc::new(SystemClock),
                options: RunnerOptions::default(),
                cancel: CancelHandle::default(),
                progress: None,
            },
        }
    }

    /// A handle that cancels this runner's runs between batches.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.store
    }

    fn actor(&self) -> String {
        format!("runner:{}", self.options.worker_id)
    }

    fn emit(&self, run_id: &RunId, event: RunEvent) {
        if let Some(p) = &self.progress {
            p.event(run_id, &event);
        }
    }

    /// Stores an approved manifest and creates its run in `Approved`. Submitting the same manifest again
    /// returns the existing run; submitting another manifest under the same run id is a `Conflict`.
    /// A manifest that `supersedes` an earlier version cancels that version's run if it has not
    /// published.
    pub async fn submit(&self, approved: &ApprovedManifest) -> Result<RunRecord> {
        let stored = approved.to_stored();
        stored.verify()?;
        let run_id = approved.run_id();
        if let Some(existing) = self.store.run(run_id).await? {
            return self.same_manifest(existing, &stored);
        }
        let m = approved.manifest();
        self.store_new_run(m, &stored).await?;
        let approval = approved.approval();
        self.transition_at(
            run_id,
            RunState::Draft,
            RunState::Approved,
            &approval.approved_by,
            "approved",
            approval.approved_at,
        )
        .await?;
        self.store
            .append_evidence(
                run_id,
                approval.approved_at,
                &approval.approved_by,
                EvidenceKind::Approved,
                json!(approval),
            )
            .await?;
        if let Some(prev) = &m.supersedes {
            self.cancel_superseded_version(&prev.run_id, run_id).await?;
        }
        self.store
            .run(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "run"))
    }

    /// Stores a draft (unapproved) manifest and creates its run in `Draft`, so the request is on record
    /// before an owner looks at it. Running a draft is refused with [`Error::NotApproved`]; an owner
    /// approves it with [`approve_draft`](Self::approve_draft).
    pub async fn submit_draft(&self, manifest: &RunManifest) -> Result<RunRecord> {
        let stored = StoredManifest::new(manifest, None);
        if let Some(existing) = self.store.run(&manifest.run_id).await? {
            return self.same_manifest(existing, &stored);
        }
        self.store_new_run(manifest, &stored).await?;
        self.store
            .run(&manifest.run_id)
            .await?
            .ok_or_else(|| not_found(&manifest.run_id, "run"))
    }

    /// Approves a stored draft: re-checks findings and self-approval, binds the approval to the stored
    /// digest and moves the run from `Draft` to `Approved`.
    pub async fn approve_draft(&self, run_id: &RunId, approver: &str) -> Result<RunRecord> {
        let record = self
            .store
            .run(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "run"))?;
        let stored = self
            .store
            .manifest(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "manifest"))?;
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
        self.store.put_manifest(&approved.to_stored()).await?;
        let approval = approved.approval();
        self.transition_at(
            run_id,
            RunState::Draft,
            RunState::Approved,
            approver,
            "approved",
            approval.approved_at,
        )
        .await?;
        self.store
            .append_evidence(
                run_id,
                approval.approved_at,
                approver,
                EvidenceKind::Approved,
                json!(approval),
            )
            .await?;
        self.store
            .run(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "run"))
    }

    fn same_manifest(&self, existing: RunRecord, stored: &StoredManifest) -> Result<RunRecord> {
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
                EvidenceKind::ManifestStored,
                json!({"digest": stored.digest, "version": m.version, "supersedes": m.supersedes, "manifest": serde_json::from_str::<serde_json::Value>(&stored.json).unwrap_or_default()}),
            )
            .await?;
        Ok(())
    }

    async fn cancel_superseded_version(&self, old: &RunId, new: &RunId) -> Result<()> {
        let Some(rec) = self.store.run(old).await? else {
            return Ok(());
        };
        if rec.state.can_transition_to(RunState::Cancelled) {
            self.transition(
                old,
                rec.state,
                RunState::Cancelled,
                &self.actor(),
                &format!("manifest amended by run {new}"),
            )
            .await?;
        }
        Ok(())
    }

    /// Loads a run's manifest and verifies it: digest, approval, findings. Nothing runs before this.
    pub async fn load(&self, run_id: &RunId) -> Result<(ApprovedManifest, RunRecord)> {
        let record = self
            .store
            .run(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "run"))?;
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

    /// Refuses a transform that is not the manifest's, and sinks the policy forbids.
    fn preflight(&self, m: &RunManifest) -> Result<()> {
        let fp = self.transform.fingerprint();
        let config_mismatch = m
            .transform
            .config_hash
            .as_ref()
            .is_some_and(|h| *h != fp.config_hash);
        if fp.name != m.transform.name || fp.version != m.transform.version || config_mismatch {
            return Err(Error::InvalidManifest {
                run_id: m.run_id.clone(),
                field: "transform".into(),
                message: format!(
                    "manifest pins {}/{} (config {}), the runner has {}/{} (config {})",
                    m.transform.name,
                    m.transform.version,
                    m.transform.config_hash.as_deref().unwrap_or("any"),
                    fp.name,
                    fp.version,
                    fp.config_hash
                ),
            });
        }
        self.policy.check(&self.sink.descriptor(), m)?;
        self.policy.check(&self.publisher.descriptor(), m)
    }

    /// Records a transition (compare-and-set) and its evidence.
    async fn transition(
        &self,
        run_id: &RunId,
        from: RunState,
        to: RunState,
        by: &str,
        reason: &str,
    ) -> Result<()> {
        self.transition_at(run_id, from, to, by, reason, self.clock.now())
            .await
    }

    async fn transition_at(
        &self,
        run_id: &RunId,
        from: RunState,
        to: RunState,
        by: &str,
        reason: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        from.check_transition(to, run_id)?;
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
            .append_evidence(run_id, at, by, EvidenceKind::Transition, json!(t))
            .await?;
        tracing::info!(run_id = %run_id, from = %from, to = %to, by, reason, "transition");
        self.emit(run_id, RunEvent::State(to));
        Ok(())
    }

    /// Runs (or resumes) a run as far as it can go: plan, chunks, validation, and publication unless the
    /// manifest requires a manual publish or is a dry run. Safe to call again at any point: finished
    /// chunks are not re-read and a published run is not published again.
    pub async fn run(&self, run_id: &RunId) -> Result<RunReport> {
        let (approved, record) = self.load(run_id).await?;
        let m = approved.manifest();
        self.preflight(m)?;
        let span = tracing::info_span!(
            "backfill.run",
            run_id = %run_id,
            transform_version = %m.transform.version,
            target = %m.target.name,
            mode = %m.mode,
        );
        let actor = self.actor();
        let mut state = record.state;
        loop {
            let step = match state {
                RunState::Draft => {
                    return Err(Error::NotApproved {
                        run_id: run_id.clone(),
                        version: record.manifest_version,
                    })
                }
                RunState::Approved | RunState::Failed => {
                    let why = if state == RunState::Failed {
                        "resume"
                    } else {
                        "start"
                    };
                    self.transition(run_id, state, RunState::Running, &actor, why)
                        .await
                        .map(|()| RunState::Running)
                }
                RunState::Running => {
                    match tracing::Instrument::instrument(self.execute(&approved), span.clone())
                        .await
                    {
                        Ok(()) => self
                            .transition(
                                run_id,
                                RunState::Running,
                                RunState::Staged,
                                &actor,
                                "every chunk staged",
                            )
                            .await
                            .map(|()| RunState::Staged),
                        Err(e) => Err(e),
                    }
                }
                RunState::Staged => {
                    tracing::Instrument::instrument(self.validate(&approved), span.clone()).await
                }
                RunState::Validated
                    if m.mode == crate::context::ExecutionMode::DryRun
                        || m.safety.manual_publish =>
                {
                    break
                }
                RunState::Validated => tracing::Instrument::instrument(
                    self.publish_approved(&approved, &actor),
                    span.clone(),
                )
                .await
                .map(|_| RunState::Published),
                RunState::AwaitingReview
                | RunState::Published
                | RunState::Superseded
                | RunState::RolledBack
                | RunState::Rejected
                | RunState::Cancelled => break,
            };
            state = match step {
                Ok(next) => next,
                // Another worker moved the run first: continue from where it is now.
                Err(e) if e.kind() == crate::ErrorKind::Conflict => {
                    let now = self
                        .store
                        .run(run_id)
                        .await?
                        .ok_or_else(|| not_found(run_id, "run"))?
                        .state;
                    if now == state {
                        return Err(e);
                    }
                    tracing::info!(run_id = %run_id, from = %state, to = %now, "another worker advanced the run");
                    now
                }
                Err(e) => return Err(e),
            };
        }
        self.status(run_id).await
    }

    /// The run's state and results, from the store.
    pub async fn status(&self, run_id: &RunId) -> Result<RunReport> {
        let record = self
            .store
            .run(run_id)
            .await?
            .ok_or_else(|| not_found(run_id, "run"))?;
        let chunks = self.store.chunks(run_id).await?;
        let evidence = self.store.evidence(run_id).await?;
        let mut digests = PartitionDigests::default();
        let (mut input, mut output, mut done) = (0, 0, 0);
        for c in chunks.iter().filter(|c| c.status == ChunkStatus::Done) {
            digests.merge(&c.digests);
            input += c.input_count;
            output += c.output_count;
            done += 1;
        }
        // Latest outcome per validator, from the last validation round.
        let mut validations: Vec<ValidationOutcome> = Vec::new();
        let mut receipt = None;
        for e in &evidence {
            match e.kind {
                EvidenceKind::Validation => {
                    if let Ok(o) = serde_json::from_value::<ValidationOutcome>(e.detail.clone()) {
                        validations.retain(|v| v.validator != o.validator);
                        validations.push(o);
                    }
                }
                EvidenceKind::Published => {
                    receipt = serde_json::from_value(e.detail["receipt"].clone()).ok();
                }
                _ => {}
            }
        }
        Ok(RunReport {
            run_id: run_id.clone(),
            state: record.state,
            target: record.target,
            chunks_total: chunks.len(),
            chunks_done: done,
            input_records: input,
            output_rows: output,
            digests,
            validations,
            receipt,
        })
    }
}

fn not_found(run_id: &RunId, what: &str) -> Error {
    Error::NotFound {
        run_id: run_id.clone(),
        what: what.into(),
    }
}
