//! [`FaultyStore`]: a run store that fails one chosen write of the publication window.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backfill_core::ids::RunId;
use backfill_core::manifest::StoredManifest;
use backfill_core::plan::ResolvedPlan;
use backfill_core::state::{RunState, Transition};
use backfill_core::store::{
    AcceptedPointer, ChunkLease, ChunkOutcome, ChunkRecord, Evidence, EvidenceKind, EvidenceRecord,
    RunFilter, RunRecord, RunStore,
};
use backfill_core::Result;
use chrono::{DateTime, Utc};

use super::{inject, Budget, FaultKind};

/// Which store write a [`FaultyStore`] fails. Calls are counted per operation, from 0, over the
/// wrapper's lifetime; a fault fires at its call (or the first matching one) and, while its budget
/// lasts, at the following matching calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreFault {
    /// The `k`-th call of `transition`.
    Transition(u32),
    /// The first transition (of any run) into this state, such as `Published` (a publication) or
    /// `RolledBack` (a rollback).
    TransitionTo(RunState),
    /// The `k`-th call of `append_evidence`.
    AppendEvidence(u32),
    /// The first evidence record of this kind, such as `Published` (the target's receipt) or
    /// `PointerMoved`.
    Evidence(EvidenceKind),
    /// The `k`-th call of `swap_accepted` (the store's accepted pointer).
    SwapAccepted(u32),
}

/// A run store that injects a [`StoreFault`] into the store it wraps: the write fails before the
/// wrapped store changes, or, with [`after_commit`](Self::after_commit), after it committed. Reads
/// and every other write pass through.
#[derive(Debug)]
pub struct FaultyStore<S: ?Sized> {
    inner: Arc<S>,
    fault: StoreFault,
    kind: FaultKind,
    after_commit: bool,
    halt: bool,
    budget: Budget,
    transitions: AtomicU32,
    appends: AtomicU32,
    swaps: AtomicU32,
}

impl<S: ?Sized> FaultyStore<S> {
    /// Wraps `inner` (an `Arc<dyn RunStore>` works too); the fault fires once, as `kind`, before the
    /// wrapped store changes.
    pub fn new(inner: Arc<S>, fault: StoreFault, kind: FaultKind) -> Self {
        Self {
            inner,
            fault,
            kind,
            after_commit: false,
            halt: false,
            budget: Budget::new(),
            transitions: AtomicU32::new(0),
            appends: AtomicU32::new(0),
            swaps: AtomicU32::new(0),
        }
    }

    /// Fires the fault `times` times in all (0: a pass-through).
    pub fn times(mut self, times: u32) -> Self {
        self.budget.set_times(times);
        self
    }

    /// Lets the wrapped store commit the write before the call fails.
    pub fn after_commit(mut self) -> Self {
        self.after_commit = true;
        self
    }

    /// Instead of failing, the faulted call never returns: the caller stops there, as a process
    /// killed at that point would (abort the caller's task to finish the picture). Nothing reaches
    /// the wrapped store, or, with [`after_commit`](Self::after_commit), the write has committed.
    pub fn halting(mut self) -> Self {
        self.halt = true;
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// How many times the fault fired.
    pub fn fired(&self) -> u32 {
        self.budget.fired()
    }

    /// Whether this call (the `call`-th of its operation) is one the fault fires at.
    fn fires(&self, call: u32, matches: impl FnOnce(StoreFault) -> Option<u32>) -> bool {
        match matches(self.fault) {
            Some(k) if call >= k => self.budget.take(),
            _ => false,
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: RunStore + ?Sized> RunStore for FaultyStore<S> {
    async fn put_manifest(&self, manifest: &StoredManifest) -> Result<()> {
        self.inner.put_manifest(manifest).await
    }

    async fn manifest(&self, run_id: &RunId) -> Result<Option<StoredManifest>> {
        self.inner.manifest(run_id).await
    }

    async fn create_run(&self, run: &RunRecord) -> Result<()> {
        self.inner.create_run(run).await
    }

    async fn run(&self, run_id: &RunId) -> Result<Option<RunRecord>> {
        self.inner.run(run_id).await
    }

    async fn transition(&self, t: &Transition) -> Result<()> {
        let call = self.transitions.fetch_add(1, Ordering::SeqCst);
        let fire = self.fires(call, |f| match f {
            StoreFault::Transition(k) => Some(k),
            StoreFault::TransitionTo(state) if state == t.to => Some(0),
            _ => None,
        });
        let what = format!(
            "transition of run {} from {} to {} (call {call})",
            t.run_id, t.from, t.to
        );
        if fire && self.halt {
            return halt(self.after_commit, self.inner.transition(t)).await;
        }
        inject(
            self.kind,
            fire,
            self.after_commit,
            what,
            self.inner.transition(t),
            drop,
        )
        .await
    }

    async fn transitions(&self, run_id: &RunId) -> Result<Vec<Transition>> {
        self.inner.transitions(run_id).await
    }

    async fn put_plan(&self, plan: &ResolvedPlan) -> Result<()> {
        self.inner.put_plan(plan).await
    }

    async fn plan(&self, run_id: &RunId) -> Result<Option<ResolvedPlan>> {
        self.inner.plan(run_id).await
    }

    async fn claim_chunk(
        &self,
        run_id: &RunId,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Option<ChunkLease>> {
        self.inner.claim_chunk(run_id, worker, now, lease_for).await
    }

    async fn claim_chunk_within(
        &self,
        run_id: &RunId,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
        max_leased: u32,
    ) -> Result<Option<ChunkLease>> {
        self.inner
            .claim_chunk_within(run_id, worker, now, lease_for, max_leased)
            .await
    }

    async fn take_budget(
        &self,
        run_id: &RunId,
        budget: &backfill_core::budget::Budget,
        amount: u64,
        now: DateTime<Utc>,
    ) -> Result<Duration> {
        self.inner.take_budget(run_id, budget, amount, now).await
    }

    async fn tally(
        &self,
        run_id: &RunId,
        name: &'static str,
        chunk_id: &backfill_core::ids::ChunkId,
        value: u64,
    ) -> Result<u64> {
        self.inner.tally(run_id, name, chunk_id, value).await
    }

    async fn heartbeat(
        &self,
        lease: &ChunkLease,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<ChunkLease> {
        self.inner.heartbeat(lease, now, lease_for).await
    }

    async fn complete_chunk(
        &self,
        lease: &ChunkLease,
        outcome: &ChunkOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.inner.complete_chunk(lease, outcome, now).await
    }

    async fn fail_chunk(&self, lease: &ChunkLease, error: &str, now: DateTime<Utc>) -> Result<()> {
        self.inner.fail_chunk(lease, error, now).await
    }

    async fn chunks(&self, run_id: &RunId) -> Result<Vec<ChunkRecord>> {
        self.inner.chunks(run_id).await
    }

    async fn append_evidence(
        &self,
        run_id: &RunId,
        at: DateTime<Utc>,
        by: &str,
        record: &EvidenceRecord,
    ) -> Result<u64> {
        let call = self.appends.fetch_add(1, Ordering::SeqCst);
        let fire = self.fires(call, |f| match f {
            StoreFault::AppendEvidence(k) => Some(k),
            StoreFault::Evidence(kind) if kind == record.kind() => Some(0),
            _ => None,
        });
        let what = format!(
            "appending {} evidence to run {run_id} (call {call})",
            record.kind().as_str()
        );
        let write = self.inner.append_evidence(run_id, at, by, record);
        if fire && self.halt {
            return halt(self.after_commit, write).await;
        }
        inject(self.kind, fire, self.after_commit, what, write, drop).await
    }

    async fn evidence(&self, run_id: &RunId) -> Result<Vec<Evidence>> {
        self.inner.evidence(run_id).await
    }

    async fn accepted(&self, target: &str) -> Result<Option<AcceptedPointer>> {
        self.inner.accepted(target).await
    }

    async fn swap_accepted(&self, expected: Option<&RunId>, new: &AcceptedPointer) -> Result<()> {
        let call = self.swaps.fetch_add(1, Ordering::SeqCst);
        let fire = self.fires(call, |f| match f {
            StoreFault::SwapAccepted(k) => Some(k),
            _ => None,
        });
        let what = format!(
            "moving the accepted pointer of {} to run {} (call {call})",
            new.target, new.run_id
        );
        let write = self.inner.swap_accepted(expected, new);
        if fire && self.halt {
            return halt(self.after_commit, write).await;
        }
        inject(self.kind, fire, self.after_commit, what, write, drop).await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.inner.runs(filter).await
    }
}

/// Never returns (a halting fault): runs `write` first when the fault fires after the commit.
async fn halt<T>(
    after_commit: bool,
    write: impl std::future::Future<Output = Result<T>> + Send,
) -> Result<T> {
    if after_commit {
        let _ = write.await;
    }
    std::future::pending().await
}
