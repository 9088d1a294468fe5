//! The executor: plans, executes and validates runs, recording everything, and hands validated runs
//! to the [`Control`] plane, which publishes (and later rolls back).
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
//! #     m.source.kind = "memory".into(); m.source.name = "events".into(); m.source.snapshot = Some("s1".into());
//! #     m.source.range = Some(InputRange::Dates { from: d(1, 1), to_exclusive: d(3, 1) });
//! #     m.transform.name = "copy".into(); m.transform.version = "1.0.0".into();
//! #     m.target.name = "daily".into(); m.target.mutation = Some(Mutation::ReplacePartitions);
//! #     m.target.partitions = vec!["2025-01".into(), "2025-02".into()];
//! #     m.safety.side_effects = Some(SideEffectPolicy::default());
//! #     m.validation = Some(ValidationPlan { checksum_required: true, ..Default::default() });
//! #     m
//! # };
//! # let at = Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap();
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let records = (1..=59).map(|i| (d(1, 1) + chrono::Days::new(i - 1), i as i64)).collect();
//! let source = MemorySource::by_date(records, |r| r.0).snapshot("s1");
//! let sink = Arc::new(MemorySink::new("daily_staging"));
//! let target = Arc::new(MemoryPublisher::new("daily", &sink));
//! // The control plane: store, targets, clock. Operators need nothing else.
//! let control = Control::new(Arc::new(MemoryStore::new()))
//!     .with_clock(Arc::new(FixedClock(at)))
//!     .with_target(target.clone())?;
//! // The executor: what a worker links, generic over the transform.
//! let executor = Executor::builder(control.clone(), Arc::new(source), Arc::new(Copy1), sink, target)
//!     .build();
//!
//! let approved = manifest.approve("owner-bob", at)?;
//! control.submit(&approved).await?;
//! let report = executor.run(approved.run_id()).await?;
//! assert_eq!(report.state, RunState::Published);
//! assert_eq!(report.output_rows, 59);
//! # Ok::<(), backfill_core::Error>(())
//! # }).unwrap();
//! ```

mod ceilings;
mod estimate;
mod execute;
mod leases;
mod throttle;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::control::Control;
pub use crate::control::RunReport;
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::manifest::RunManifest;
use crate::policy::{DefaultSinkPolicy, SinkPolicy};
use crate::publish::TargetReader;
use crate::sink::StagingSink;
use crate::source::BackfillSource;
use crate::state::{Event, RunState};
use crate::transform::DeterministicTransform;
use crate::validate::Validator;

/// Retry of transient chunk failures, with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per chunk within one invocation of [`Executor::run`].
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
    /// Worker identity in chunk leases. The default ([`default_worker_id`]) is unique per process. A
    /// process started with an explicit id gives back the leases held under it when it starts a
    /// run (a crashed predecessor's), so it need not wait for them to expire.
    pub worker_id: String,
    /// Lease length; heartbeats renew it every third of it.
    pub lease_for: Duration,
    /// Retry of transient errors.
    pub retry: RetryPolicy,
    /// How long [`Executor::run`] goes on after transient failures (a database restarting, a broker
    /// failing over) that outlast a chunk's retries or hit a step between chunks: it waits with
    /// backoff and continues from the run's stored state. Zero (the default): the first such
    /// failure is returned to the caller, who may call `run` again.
    pub transient_budget: Duration,
    /// Workers this process runs, at most the manifest's `max_chunks_in_parallel`, which bounds
    /// the run's leases across every process (a worker waits for a place).
    /// `None` (the default): `max_chunks_in_parallel`.
    pub local_workers: Option<usize>,
}

/// A worker id unique to this process: host name, process id and start time, so two processes
/// sharing a store never take each other's leases.
pub fn default_worker_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{host}-{}-{:x}", std::process::id(), nanos & 0xff_ffff)
    })
    .clone()
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            lease_for: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            transient_budget: Duration::ZERO,
            local_workers: None,
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

    /// Sets [`transient_budget`](Self::transient_budget).
    pub fn with_transient_budget(mut self, budget: Duration) -> Self {
        self.transient_budget = budget;
        self
    }

    /// Sets [`local_workers`](Self::local_workers).
    pub fn with_local_workers(mut self, n: usize) -> Self {
        self.local_workers = Some(n.max(1));
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

/// Executes runs for one transform: plans, stages chunks, validates, and hands validated runs to the
/// [`Control`] plane to publish. Every operator action lives on [`Control`]; this is what a worker
/// links.
pub struct Executor<T: DeterministicTransform> {
    control: Control,
    source: Arc<dyn BackfillSource<T::Input>>,
    transform: Arc<T>,
    sink: Arc<dyn StagingSink<T::Output>>,
    reader: Arc<dyn TargetReader<T::Output>>,
    validators: Vec<Arc<dyn Validator<T::Output>>>,
    gates: BTreeMap<String, Vec<Arc<dyn Validator<T::Output>>>>,
    policy: Arc<dyn SinkPolicy>,
    options: RunnerOptions,
    cancel: CancelHandle,
    progress: Option<Arc<dyn ProgressListener>>,
}

impl<T: DeterministicTransform> fmt::Debug for Executor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("control", &self.control)
            .field("source", &self.source)
            .field("transform", &self.transform)
            .field("sink", &self.sink)
            .field("validators", &self.validators)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Executor`].
#[derive(Debug)]
pub struct ExecutorBuilder<T: DeterministicTransform> {
    executor: Executor<T>,
}

impl<T: DeterministicTransform> ExecutorBuilder<T> {
    /// Adds a validator. Attached validators always run (in the order added, after the built-in
    /// ones the manifest's validation plan asks for); a name in the plan's `checks` must be one of
    /// them.
    pub fn validator(mut self, v: Arc<dyn Validator<T::Output>>) -> Self {
        self.executor.validators.push(v);
        self
    }

    /// Registers a named quality gate (a set of validators) that a manifest's
    /// `validation.quality_gate` can name.
    pub fn quality_gate(
        mut self,
        name: impl Into<String>,
        validators: Vec<Arc<dyn Validator<T::Output>>>,
    ) -> Self {
        self.executor.gates.insert(name.into(), validators);
        self
    }

    /// Replaces the [`DefaultSinkPolicy`].
    pub fn policy(mut self, policy: Arc<dyn SinkPolicy>) -> Self {
        self.executor.policy = policy;
        self
    }

    /// Sets options.
    pub fn options(mut self, options: RunnerOptions) -> Self {
        self.executor.options = options;
        self
    }

    /// Uses an existing cancel handle (so a listener or signal handler made earlier can cancel).
    pub fn cancel_with(mut self, handle: CancelHandle) -> Self {
        self.executor.cancel = handle;
        self
    }

    /// Sets a progress listener.
    pub fn progress(mut self, listener: Arc<dyn ProgressListener>) -> Self {
        self.executor.progress = Some(listener);
        self
    }

    /// Finishes the executor.
    pub fn build(self) -> Executor<T> {
        self.executor
    }
}

impl<T: DeterministicTransform> Executor<T> {
    /// Starts a builder: the control plane (store, targets, clock), the source, the transform, the
    /// staging sink and a reader of the target's current output (for validators comparing old and new).
    pub fn builder(
        control: Control,
        source: Arc<dyn BackfillSource<T::Input>>,
        transform: Arc<T>,
        sink: Arc<dyn StagingSink<T::Output>>,
        reader: Arc<dyn TargetReader<T::Output>>,
    ) -> ExecutorBuilder<T> {
        ExecutorBuilder {
            executor: Self {
                control,
                source,
                transform,
                sink,
                reader,
                validators: Vec::new(),
                gates: BTreeMap::new(),
                policy: Arc::new(DefaultSinkPolicy),
                options: RunnerOptions::default(),
                cancel: CancelHandle::default(),
                progress: None,
            },
        }
    }

    /// The control plane this executor reports to.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// A handle that cancels this executor's runs between batches (in this process only; use
    /// [`Control::cancel`] to cancel a run everywhere).
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    fn actor(&self) -> String {
        format!("runner:{}", self.options.worker_id)
    }

    fn emit(&self, run_id: &RunId, event: RunEvent) {
        if let Some(p) = &self.progress {
            p.event(run_id, &event);
        }
    }

    /// Moves the run by one event through the control plane and tells the progress listener.
    async fn step(
        &self,
        run_id: &RunId,
        from: RunState,
        event: Event,
        why: &str,
    ) -> Result<RunState> {
        let to = self
            .control
            .apply_now(run_id, from, event, &self.actor(), why)
            .await?;
        self.emit(run_id, RunEvent::State(to));
        Ok(to)
    }

    /// Refuses, before any chunk runs: a transform that is not the manifest's, sinks the policy
    /// forbids, a target without a registered publisher or one that cannot apply the manifest's
    /// mutation, and validation-plan names nothing implements.
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
        let publisher = self.control.publisher_for(m)?;
        self.policy.check(&publisher.descriptor(), m)?;
        self.check_validation_plan(m)
    }

    /// Executes (or resumes) a run as far as it can go: plan, chunks, validation, and publication
    /// unless the manifest requires a manual publish or is a dry run. Safe to call again at any point,
    /// from any number of processes: finished chunks are not re-read and a published run is not
    /// published again. A run cancelled through [`Control::cancel`] stops here too. Transient
    /// failures are waited out for the options' [`transient_budget`](RunnerOptions::transient_budget).
    pub async fn run(&self, run_id: &RunId) -> Result<RunReport> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            match self.run_steps(run_id).await {
                Err(e) if e.is_retryable() && started.elapsed() < self.options.transient_budget => {
                    tracing::warn!(run_id = %run_id, error = %e, retry_in_ms = pause.as_millis() as u64, "transient failure: the run goes on from its stored state");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                r => return r,
            }
        }
    }

    async fn run_steps(&self, run_id: &RunId) -> Result<RunReport> {
        let (approved, record) = self.control.load(run_id).await?;
        let m = approved.manifest();
        self.preflight(m)?;
        let span = tracing::info_span!(
            "backfill.run",
            run_id = %run_id,
            transform_version = %m.transform.version,
            target = %m.target.name,
            processing_mode = %m.mode,
        );
        // Every step, transitions included, logs inside the run's span.
        let steps = async {
            let actor = self.actor();
            let mut state = record.state;
            // Whether another worker moved the run to where it is now (it is working on it).
            let mut moved_elsewhere = false;
            loop {
                let step = match state {
                    RunState::Draft => {
                        return Err(Error::NotApproved {
                            run_id: run_id.clone(),
                            version: record.manifest_version,
                        })
                    }
                    // A freezing run holds its window before its first chunk reads anything.
                    RunState::Approved => match self.control.freeze_window(run_id, m, &actor).await
                    {
                        Ok(()) => self.step(run_id, state, Event::Start, "start").await,
                        Err(e) => Err(e),
                    },
                    RunState::Failed | RunState::Paused => {
                        self.step(run_id, state, Event::Resume, "resume").await
                    }
                    RunState::Running => match self.execute(&approved).await {
                        Ok(()) => {
                            self.step(run_id, state, Event::AllStaged, "every chunk staged")
                                .await
                        }
                        Err(e) => Err(e),
                    },
                    // The worker that staged the last chunk validates; one that saw another move
                    // the run to `Staged` waits for that validation instead of repeating it (it
                    // reads every staged row), and validates itself only if the run stays staged.
                    RunState::Staged if moved_elsewhere => {
                        match self.await_validation(run_id).await? {
                            Some(next) => Ok(next),
                            None => self.validate(&approved).await,
                        }
                    }
                    RunState::Staged => self.validate(&approved).await,
                    // A dry run and a reconciliation are never published; a manual publication
                    // waits for its operator.
                    RunState::Validated
                        if matches!(
                            m.mode,
                            crate::context::ExecutionMode::DryRun
                                | crate::context::ExecutionMode::Reconciliation
                        ) || m.safety.manual_publish =>
                    {
                        break
                    }
                    RunState::Validated => {
                        let published = self.control.publish(run_id, &actor).await;
                        match published {
                            Ok(_) => {
                                self.emit(run_id, RunEvent::State(RunState::Published));
                                Ok(RunState::Published)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    RunState::Published => {
                        // A publication interrupted before the store's pointer moved is finished here
                        // (idempotent: the target is inspected, nothing is published twice).
                        let accepted = self.control.store().accepted(&m.target.name).await?;
                        if accepted.as_ref().map(|p| &p.run_id) != Some(run_id) {
                            self.control.publish(run_id, &actor).await?;
                        }
                        // A crash between the publication and the thaw left the window frozen.
                        self.control
                            .thaw_window(run_id, m, &actor, "published")
                            .await?;
                        self.heal_chunk_evidence(run_id).await?;
                        break;
                    }
                    RunState::AwaitingReview
                    | RunState::Superseded
                    | RunState::RolledBack
                    | RunState::Rejected
                    | RunState::Cancelled => break,
                };
                state = match step {
                    Ok(next) => {
                        moved_elsewhere = false;
                        next
                    }
                    // Another worker (or an operator) moved the run first: continue from where it is
                    // now. A chunk that failed on a conflict (its input changed under it) failed the
                    // run here: that is not a move elsewhere.
                    Err(e)
                        if e.root().kind() == crate::ErrorKind::Conflict
                            && !matches!(e, Error::Chunk { .. }) =>
                    {
                        let now = self.control.run(run_id).await?.state;
                        if now == state {
                            return Err(e);
                        }
                        tracing::info!(run_id = %run_id, from = %state, to = %now, "the run moved elsewhere");
                        moved_elsewhere = true;
                        now
                    }
                    Err(e) => return Err(e),
                };
            }
            self.control.status(run_id).await
        };
        tracing::Instrument::instrument(steps, span).await
    }

    /// Waits, up to one lease, for the run to leave `Staged` (another worker validating it);
    /// answers its new state, or `None` when it is still staged (that worker may have died).
    async fn await_validation(&self, run_id: &RunId) -> Result<Option<RunState>> {
        let started = std::time::Instant::now();
        while started.elapsed() < self.options.lease_for {
            let now = self.control.run(run_id).await?.state;
            if now != RunState::Staged {
                return Ok(Some(now));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    /// The run's status (same as [`Control::status`]).
    pub async fn status(&self, run_id: &RunId) -> Result<RunReport> {
        self.control.status(run_id).await
    }
}
