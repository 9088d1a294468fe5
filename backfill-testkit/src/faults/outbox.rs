//! [`FaultyOutbox`]: faults in a correction outbox's write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::correction::{CorrectionEvent, CorrectionOutbox};
use backfill_core::ids::RunId;
use backfill_core::publish::PublishReceipt;
use backfill_core::sink::SinkDescriptor;
use backfill_core::Result;

use super::{inject, Budget, FaultKind};

/// Where a [`FaultyOutbox`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxFault {
    /// `write`: the wrapped outbox commits, then the call fails: the caller cannot know it did.
    CommitThenFail,
    /// `write` fails before the wrapped outbox is called.
    BeforeCommit,
}

/// A [`CorrectionOutbox`] that injects an [`OutboxFault`] into the outbox it wraps and counts the
/// writes that reached it.
#[derive(Debug)]
pub struct FaultyOutbox<O: ?Sized> {
    inner: Arc<O>,
    fault: OutboxFault,
    kind: FaultKind,
    budget: Budget,
    writes: AtomicUsize,
}

impl<O: ?Sized> FaultyOutbox<O> {
    /// Wraps `inner` (an `Arc<dyn CorrectionOutbox>` works too); the fault fires on the first
    /// write, as `kind`.
    pub fn new(inner: Arc<O>, fault: OutboxFault, kind: FaultKind) -> Self {
        Self {
            inner,
            fault,
            kind,
            budget: Budget::new(),
            writes: AtomicUsize::new(0),
        }
    }

    /// Fires the fault on the first `times` writes (0: a pass-through that counts).
    pub fn times(mut self, times: u32) -> Self {
        self.budget.set_times(times);
        self
    }

    /// The wrapped outbox.
    pub fn inner(&self) -> &Arc<O> {
        &self.inner
    }

    /// How many `write` calls reached the wrapped outbox and returned `Ok` there.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// How many times the fault fired.
    pub fn fired(&self) -> u32 {
        self.budget.fired()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<O: CorrectionOutbox + ?Sized> CorrectionOutbox for FaultyOutbox<O> {
    fn descriptor(&self) -> SinkDescriptor {
        self.inner.descriptor()
    }

    async fn write(
        &self,
        run_id: &RunId,
        events: &[CorrectionEvent],
        receipt: &PublishReceipt,
    ) -> Result<PublishReceipt> {
        let fire = self.budget.take();
        let what = format!("outbox write of run {run_id}");
        let after = self.fault == OutboxFault::CommitThenFail;
        let log = |ok: bool| {
            if ok {
                self.writes.fetch_add(1, Ordering::SeqCst);
            }
        };
        let write = self.inner.write(run_id, events, receipt);
        inject(self.kind, fire, after, what, write, log).await
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        self.inner.inspect(run_id).await
    }
}
