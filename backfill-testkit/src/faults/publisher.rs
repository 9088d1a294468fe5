//! [`FaultyPublisher`]: faults in publish and rollback, and a log of every call.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::publish::{
    PublishReceipt, PublishRequest, Publisher, PublisherCapabilities, RollbackRequest, TargetReader,
};
use backfill_core::sink::SinkDescriptor;
use backfill_core::Result;
use futures::stream::BoxStream;

use super::{inject, Budget, FaultKind};

/// Where a [`FaultyPublisher`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFault {
    /// `publish`: the wrapped publisher commits, then the call fails: the caller cannot know it
    /// committed.
    CommitThenFail,
    /// `publish` fails before the wrapped publisher is called.
    BeforeCommit,
    /// `rollback`: the wrapped publisher rolls back, then the call fails.
    RollbackCommitThenFail,
    /// `rollback` fails before the wrapped publisher is called.
    RollbackBeforeCommit,
}

impl PublishFault {
    fn on_rollback(self) -> bool {
        matches!(
            self,
            Self::RollbackCommitThenFail | Self::RollbackBeforeCommit
        )
    }

    fn after_commit(self) -> bool {
        matches!(self, Self::CommitThenFail | Self::RollbackCommitThenFail)
    }
}

/// One call a [`FaultyPublisher`] received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// `rollback` from one run to another; `committed` when the wrapped publisher returned a
    /// receipt.
    Rollback {
        /// The run rolled back.
        from: RunId,
        /// The run restored.
        to: RunId,
        /// Whether the wrapped publisher committed.
        committed: bool,
    },
    /// `inspect_rollback`; `found` when the wrapped publisher answered with a receipt.
    InspectRollback {
        /// The run rolled back.
        from: RunId,
        /// The run restored.
        to: RunId,
        /// Whether a receipt was found.
        found: bool,
    },
}

/// A publisher that injects a [`PublishFault`] into the publisher it wraps and logs every call.
///
/// It is a [`TargetReader`] too when the wrapped publisher is (reads pass through).
#[derive(Debug)]
pub struct FaultyPublisher<P: ?Sized> {
    inner: Arc<P>,
    fault: PublishFault,
    kind: FaultKind,
    budget: Budget,
    calls: Mutex<Vec<PublisherCall>>,
}

impl<P: ?Sized> FaultyPublisher<P> {
    /// Wraps `inner` (an `Arc<dyn Publisher>` works too); the fault fires on the first call it
    /// concerns (publish or rollback), as `kind`.
    pub fn new(inner: Arc<P>, fault: PublishFault, kind: FaultKind) -> Self {
        Self {
            inner,
            fault,
            kind,
            budget: Budget::new(),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Fires the fault on the first `times` calls it concerns (0: a pass-through that logs).
    pub fn times(mut self, times: u32) -> Self {
        self.budget.set_times(times);
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

    /// How many rollback calls committed in the wrapped publisher.
    pub fn rollback_commits(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    PublisherCall::Rollback {
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
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<P: Publisher + ?Sized> Publisher for FaultyPublisher<P> {
    fn descriptor(&self) -> SinkDescriptor {
        self.inner.descriptor()
    }

    fn capabilities(&self) -> PublisherCapabilities {
        self.inner.capabilities()
    }

    async fn publish(&self, req: PublishRequest<'_>) -> Result<PublishReceipt> {
        let run_id = req.run_id.clone();
        let fire = !self.fault.on_rollback() && self.budget.take();
        let what = format!("publish of run {run_id}");
        let log = |committed| self.log(PublisherCall::Publish { run_id, committed });
        let after = self.fault.after_commit();
        inject(self.kind, fire, after, what, self.inner.publish(req), log).await
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
        let (from, to) = (req.from.clone(), req.to.clone());
        let fire = self.fault.on_rollback() && self.budget.take();
        let what = format!("rollback of run {from} to {to}");
        let log = |committed| {
            self.log(PublisherCall::Rollback {
                from,
                to,
                committed,
            })
        };
        let after = self.fault.after_commit();
        inject(self.kind, fire, after, what, self.inner.rollback(req), log).await
    }

    async fn inspect_rollback(&self, from: &RunId, to: &RunId) -> Result<Option<PublishReceipt>> {
        let found = self.inner.inspect_rollback(from, to).await?;
        self.log(PublisherCall::InspectRollback {
            from: from.clone(),
            to: to.clone(),
            found: found.is_some(),
        });
        Ok(found)
    }
}

#[deny(clippy::missing_trait_methods)]
impl<R: OutputRow, P: TargetReader<R> + ?Sized> TargetReader<R> for FaultyPublisher<P> {
    fn read_current<'a>(&'a self, partition: &'a PartitionKey) -> BoxStream<'a, Result<Vec<R>>> {
        self.inner.read_current(partition)
    }
}
