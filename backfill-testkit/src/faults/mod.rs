//! Fault injection by wrappers: [`FaultySink`], [`FaultyPublisher`], [`FaultyOutbox`] and [`FaultyStore`] implement the
//! same trait as the part they wrap and fail where you tell them to, so a real runner and control
//! plane meet the failure where a real backend would produce it.
//!
//! | fault | what the runner or control plane sees |
//! |---|---|
//! | [`SinkFault::AtStageCall`] | the `k`-th stage call (0-based; with one worker, the `k`-th chunk staged) fails before writing |
//! | [`SinkFault::AtBatch`] | the `n`-th batch written (0-based, counted over all calls) is replaced by an error, mid-stream: the wrapped sink sees a failing stream |
//! | [`SinkFault::AfterStage`] | the `k`-th stage call commits in the wrapped sink, then fails: a crash between staging and the ledger's record of it |
//! | [`PublishFault::CommitThenFail`] | publish commits in the target, then fails: the unknown outcome of a timeout after commit |
//! | [`PublishFault::BeforeCommit`] | publish fails before the target changes |
//! | [`PublishFault::RollbackCommitThenFail`] | rollback commits in the target, then fails |
//! | [`PublishFault::RollbackBeforeCommit`] | rollback fails before the target changes |
//! | [`OutboxFault::CommitThenFail`] | a correction outbox's write commits, then fails: its unknown outcome |
//! | [`OutboxFault::BeforeCommit`] | a correction outbox's write fails before the outbox changes |
//! | [`StoreFault::TransitionTo`], [`StoreFault::Transition`] | a lifecycle compare-and-set fails (the target may have committed already) |
//! | [`StoreFault::Evidence`], [`StoreFault::AppendEvidence`] | recording evidence (a receipt, a pointer move) fails |
//! | [`StoreFault::SwapAccepted`] | moving the store's accepted pointer fails |
//!
//! Each fault fires `times` times (once by default; then the wrapper passes calls through), as
//! [`FaultKind::Transient`] (retryable) or [`FaultKind::Fatal`]. The wrappers count what happened so
//! tests can assert on it. A [`FaultyStore`] fault may also fire after the wrapped store committed
//! ([`FaultyStore::after_commit`]), the store's own unknown outcome.

mod outbox;
mod publisher;
mod store;

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::RunId;
use backfill_core::sink::{SinkDescriptor, StageReceipt, StageRequest, StagingSink};
use backfill_core::{Error, Result};
use futures::stream::{BoxStream, StreamExt};

pub use outbox::{FaultyOutbox, OutboxFault};
pub use publisher::{FaultyPublisher, PublishFault, PublisherCall};
pub use store::{FaultyStore, StoreFault};

/// The adapter name injected errors carry.
pub const ADAPTER: &str = "testkit-faults";

/// How many times a fault may still fire.
#[derive(Debug)]
pub(crate) struct Budget {
    times: u32,
    fired: AtomicU32,
}

impl Budget {
    pub(crate) fn new() -> Self {
        Self {
            times: 1,
            fired: AtomicU32::new(0),
        }
    }

    pub(crate) fn fired(&self) -> u32 {
        self.fired.load(Ordering::SeqCst)
    }

    pub(crate) fn set_times(&mut self, times: u32) {
        self.times = times;
    }

    /// Takes one firing if any is left.
    pub(crate) fn take(&self) -> bool {
        self.fired
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                (f < self.times).then_some(f + 1)
            })
            .is_ok()
    }
}

/// Whether an injected error is retryable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// [`Error::Transient`]: the runner retries the chunk within the same invocation.
    Transient,
    /// [`Error::Adapter`]: the invocation fails; a later invocation resumes.
    Fatal,
}

/// The error a fault injects, naming the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    /// What was injected, such as `stage call 2` or `publish committed, then failed`.
    pub what: String,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "injected fault: {}", self.what)
    }
}

impl std::error::Error for InjectedFault {}

/// Runs `write` with a fault injected when `fire`: before it (nothing changes) or, with
/// `after_commit`, after it committed (the caller cannot know it did). `log` hears whether the
/// wrapped call committed.
pub(crate) async fn inject<T>(
    kind: FaultKind,
    fire: bool,
    after_commit: bool,
    what: String,
    write: impl std::future::Future<Output = Result<T>> + Send,
    log: impl FnOnce(bool) + Send,
) -> Result<T> {
    if fire && !after_commit {
        log(false);
        return Err(injected(kind, format!("{what} failed before commit")));
    }
    let result = write.await;
    log(result.is_ok());
    let out = result?;
    if fire {
        return Err(injected(
            kind,
            format!("{what} committed, then failed (unknown outcome)"),
        ));
    }
    Ok(out)
}

pub(crate) fn injected(kind: FaultKind, what: String) -> Error {
    let e = InjectedFault { what };
    match kind {
        FaultKind::Transient => Error::transient(ADAPTER, e),
        FaultKind::Fatal => Error::adapter(ADAPTER, e),
    }
}

/// Where a [`FaultySink`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFault {
    /// Stage call `k` (0-based) and the following ones, until the fault has fired `times` times, fail
    /// before anything reaches the wrapped sink.
    AtStageCall(u32),
    /// Batch `n` (0-based, counted over every call) is replaced by an error in the stream the wrapped
    /// sink reads; the stream ends there.
    AtBatch(u64),
    /// Stage call `k` (0-based) commits in the wrapped sink and then fails: the runner cannot record a
    /// chunk the sink holds.
    AfterStage(u32),
}

/// A staging sink that injects a [`SinkFault`] into the sink it wraps.
#[derive(Debug)]
pub struct FaultySink<S: ?Sized> {
    inner: Arc<S>,
    fault: SinkFault,
    kind: FaultKind,
    budget: Budget,
    calls: AtomicU32,
    batches: AtomicU64,
}

impl<S: ?Sized> FaultySink<S> {
    /// Wraps `inner` (an `Arc<dyn StagingSink<R>>` works too); the fault fires once, as `kind`.
    pub fn new(inner: Arc<S>, fault: SinkFault, kind: FaultKind) -> Self {
        Self {
            inner,
            fault,
            kind,
            budget: Budget::new(),
            calls: AtomicU32::new(0),
            batches: AtomicU64::new(0),
        }
    }

    /// Fires the fault `times` times in all (consecutive stage calls or batches).
    pub fn times(mut self, times: u32) -> Self {
        self.budget.set_times(times);
        self
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// Stage calls so far.
    pub fn stage_calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many times the fault fired.
    pub fn fired(&self) -> u32 {
        self.budget.fired()
    }

    fn fire(&self) -> bool {
        self.budget.take()
    }
}

#[async_trait]
impl<R: OutputRow, S: StagingSink<R> + ?Sized> StagingSink<R> for FaultySink<S> {
    fn descriptor(&self) -> SinkDescriptor {
        self.inner.descriptor()
    }

    async fn stage(
        &self,
        req: StageRequest<'_>,
        rows: BoxStream<'_, Result<Vec<R>>>,
    ) -> Result<StageReceipt> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let what = |w: &str| format!("{w} (run {}, chunk {})", req.run_id, req.chunk_id);
        match self.fault {
            SinkFault::AtStageCall(k) if call >= k && self.fire() => {
                drop(rows);
                Err(injected(self.kind, what(&format!("stage call {call}"))))
            }
            SinkFault::AtBatch(n) => {
                let (kind, chunk) = (self.kind, req.chunk_id.to_string());
                let faulty = rows.map(move |batch| {
                    let index = self.batches.fetch_add(1, Ordering::SeqCst);
                    if index >= n && self.fire() {
                        Err(injected(kind, format!("batch {index} (chunk {chunk})")))
                    } else {
                        batch
                    }
                });
                // End the stream after an error, as a failing source would.
                let mut failed = false;
                let faulty = faulty.take_while(move |b| {
                    let keep = !failed;
                    failed |= b.is_err();
                    futures::future::ready(keep)
                });
                self.inner.stage(req, faulty.boxed()).await
            }
            SinkFault::AfterStage(k) => {
                let receipt = self.inner.stage(req, rows).await?;
                if call >= k && self.fire() {
                    return Err(injected(
                        self.kind,
                        what(&format!("stage call {call} committed, then failed")),
                    ));
                }
                Ok(receipt)
            }
            SinkFault::AtStageCall(_) => self.inner.stage(req, rows).await,
        }
    }

    fn read_staged<'a>(&'a self, run_id: &'a RunId) -> BoxStream<'a, Result<Vec<R>>> {
        self.inner.read_staged(run_id)
    }

    async fn discard(&self, run_id: &RunId) -> Result<()> {
        self.inner.discard(run_id).await
    }
}
