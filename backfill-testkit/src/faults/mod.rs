//! Fault injection by wrappers: [`FaultySink`] and [`FaultyPublisher`] implement the same trait as the
//! adapter they wrap and fail where you tell them to, so a real runner meets the failure where a real
//! backend would produce it.
//!
//! | fault | what the runner sees |
//! |---|---|
//! | [`SinkFault::AtStageCall`] | the `k`-th stage call (0-based; with one worker, the `k`-th chunk staged) fails before writing |
//! | [`SinkFault::AtBatch`] | the `n`-th batch written (0-based, counted over all calls) is replaced by an error, mid-stream: the wrapped sink sees a failing stream |
//! | [`SinkFault::AfterStage`] | the `k`-th stage call commits in the wrapped sink, then fails: a crash between staging and the ledger's record of it |
//! | [`PublishFault::CommitThenFail`] | publish commits in the target, then fails: the unknown outcome of a timeout after commit |
//! | [`PublishFault::BeforeCommit`] | publish fails before the target changes |
//!
//! Each fault fires `times` times (then the wrapper passes calls through), as [`FaultKind::Transient`]
//! (retryable) or [`FaultKind::Fatal`]. The wrappers count what happened so tests can assert on it.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::publish::{PublishReceipt, PublishRequest, Publisher, RollbackRequest};
use backfill_core::sink::{SinkDescriptor, StageReceipt, StageRequest, StagingSink};
use backfill_core::{Error, Result};
use futures::stream::{BoxStream, StreamExt};

/// The adapter name injected errors carry.
pub const ADAPTER: &str = "testkit-faults";

/// How many times a fault may still fire.
#[derive(Debug)]
struct Budget {
    times: u32,
    fired: AtomicU32,
}

impl Budget {
    fn new() -> Self {
        Self {
            times: 1,
            fired: AtomicU32::new(0),
        }
    }

    fn fired(&self) -> u32 {
        self.fired.load(Ordering::SeqCst)
    }

    /// Takes one firing if any is left.
    fn take(&self) -> bool {
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

fn injected(kind: FaultKind, what: String) -> Error {
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
        self.budget.times = times;
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

/// Where a [`FaultyPublisher`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFault {
    /// The wrapped publisher commits, then the call fails: the caller cannot know it committed.
    CommitThenFail,
    /// The call fails before the wrapped publisher is called.
    BeforeCommit,
}

/// One call a [`FaultyPublisher`] received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherCall {
    /// `publish` of a run; `committed` when the wrapped publisher returned a receipt.
    Publish {
        /// The run.
        run_id: RunId,
        /// Whether the wrapped publisher committed.
        committed: bool,
    },
    /// `inspect` of a run; `found` when the wrapped publisher answered with a receipt.
    Inspect {
        /// The run.
        run_id: RunId,
        /// Whether a receipt was found.
        found: bool,
    },
    /// `rollback` from one run to another.
    Rollback {
        /// The run rolled back.
        from: RunId,
        /// The run restored.
        to: RunId,
    },
}

/// A publisher that injects a [`PublishFault`] into the publisher it wraps and logs every call.
#[derive(Debug)]
pub struct FaultyPublisher<P: ?Sized> {
    inner: Arc<P>,
    fault: PublishFault,
    kind: FaultKind,
    budget: Budget,
    calls: Mutex<Vec<PublisherCall>>,
}

impl<P: ?Sized> FaultyPublisher<P> {
    /// Wraps `inner` (an `Arc<dyn Publisher<R>>` works too); the fault fires on the first publish call,
    /// as `kind`.
    pub fn new(inner: Arc<P>, fault: PublishFault, kind: FaultKind) -> Self {
        Self {
            inner,
            fault,
            kind,
            budget: Budget::new(),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Fires the fault on the first `times` publish calls.
    pub fn times(mut self, times: u32) -> Self {
        self.budget.times = times;
        self
    }

    /// The wrapped publisher.
    pub fn inner(&self) -> &Arc<P> {
        &self.inner
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<PublisherCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// How many publish calls committed in the wrapped publisher.
    pub fn commits(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    PublisherCall::Publish {
                        committed: true,
                        ..
                    }
                )
            })
            .count()
    }

    /// How many times the fault fired.
    pub fn fired(&self) -> u32 {
        self.budget.fired()
    }

    fn log(&self, call: PublisherCall) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
    }

    fn fire(&self) -> bool {
        self.budget.take()
    }
}

#[async_trait]
impl<R: OutputRow, P: Publisher<R> + ?Sized> Publisher<R> for FaultyPublisher<P> {
    fn descriptor(&self) -> SinkDescriptor {
        self.inner.descriptor()
    }

    async fn publish(
        &self,
        req: PublishRequest<'_>,
        staged: &dyn StagingSink<R>,
    ) -> Result<PublishReceipt> {
        let run_id = req.run_id.clone();
        let fire = self.fire();
        if fire && self.fault == PublishFault::BeforeCommit {
            self.log(PublisherCall::Publish {
                run_id: run_id.clone(),
                committed: false,
            });
            return Err(injected(
                self.kind,
                format!("publish of run {run_id} failed before commit"),
            ));
        }
        let result = self.inner.publish(req, staged).await;
        self.log(PublisherCall::Publish {
            run_id: run_id.clone(),
            committed: result.is_ok(),
        });
        let receipt = result?;
        if fire {
            return Err(injected(
                self.kind,
                format!("publish of run {run_id} committed, then failed (unknown outcome)"),
            ));
        }
        Ok(receipt)
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        let found = self.inner.inspect(run_id).await?;
        self.log(PublisherCall::Inspect {
            run_id: run_id.clone(),
            found: found.is_some(),
        });
        Ok(found)
    }

    async fn rollback(&self, req: RollbackRequest<'_>) -> Result<PublishReceipt> {
        self.log(PublisherCall::Rollback {
            from: req.from.clone(),
            to: req.to.clone(),
        });
        self.inner.rollback(req).await
    }

    fn read_current<'a>(&'a self, partition: &'a PartitionKey) -> BoxStream<'a, Result<Vec<R>>> {
        self.inner.read_current(partition)
    }
}
