//! Partial-failure checks: a run that meets a fault, retries and resumes must end exactly where an
//! uninterrupted run ends, must never publish twice, and a publication or rollback interrupted at
//! any point must converge when retried.
//!
//! A [`Scenario`] holds an approved manifest, a transform and a source. It runs backfill-core's
//! [`Executor`] and [`Control`] plane over a fresh [`MemoryStore`] per run, with a staging sink and
//! its paired publisher from a factory (memory ones by default; give your adapter's with
//! [`Scenario::with_adapters`] or [`Scenario::with_pair`] to check it). Each invocation is a fresh
//! `Control` and `Executor`, as a restarted process; invocations repeat until the run reaches a
//! resting state.
//!
//! - [`Scenario::check_sink_fault`] wraps the sink in a [`FaultySink`] and checks that the ledger's
//!   digests, the rows made visible and the final state equal the uninterrupted run's.
//! - [`Scenario::check_unknown_publish_outcome`] wraps the publisher in a [`FaultyPublisher`] that
//!   commits and then reports an error, and checks that recovery asked
//!   [`Publisher::inspect`](backfill_core::publish::Publisher::inspect) before publishing again and
//!   that the target committed exactly once.
//! - [`Scenario::check_publish_crash`] and [`Scenario::check_rollback_crash`] interrupt a
//!   publication (over an earlier published run) or a rollback at one of the [`Crash`] windows, with
//!   a [`FaultyPublisher`] or a [`FaultyStore`], retry through a fresh
//!   [`Control`], and check convergence: the store's accepted pointer is what the target says, one
//!   receipt is recorded, run states and transitions agree, the target committed once, and readers
//!   see what an uninterrupted sequence shows.

mod crash;
mod failure;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backfill_core::context::FixedClock;
use backfill_core::control::Control;
use backfill_core::digest::PartitionDigests;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::manifest::ApprovedManifest;
use backfill_core::memory::{MemoryPublisher, MemorySink, MemoryStore};
use backfill_core::runner::{Executor, RetryPolicy, RunReport, RunnerOptions};
use backfill_core::sink::StagingSink;
use backfill_core::source::BackfillSource;
use backfill_core::store::{ChunkStatus, EvidenceKind, EvidenceRecord, RunStore};
use backfill_core::transform::DeterministicTransform;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::TryStreamExt;

pub use crash::Crash;
pub use failure::PartialFailure;

use crate::conformance::{publisher_of, reader_of, PublishTarget};
use crate::faults::{
    FaultKind, FaultyPublisher, FaultySink, FaultyStore, PublishFault, PublisherCall, SinkFault,
    StoreFault,
};

/// A staging sink and the target that publishes what it staged, fresh and empty.
pub type Adapters<R> = (Arc<dyn StagingSink<R>>, Arc<dyn PublishTarget<R>>);
type AdapterFactory<R> = Arc<dyn Fn() -> BoxFuture<'static, Adapters<R>> + Send + Sync>;

/// Where a run came to rest, and what it left.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The final report (state, ledger digests, counts).
    pub report: RunReport,
    /// Digests of the rows readers see, per partition of the ledger and of the manifest's target.
    pub visible: PartitionDigests,
    /// Invocations made (of `Executor::run`, or the crashed call and its retry).
    pub invocations: u32,
    /// The last error an invocation returned, if any.
    pub last_error: Option<String>,
}

/// A run to break: an approved manifest, a transform, a source, an instant, and a factory for the
/// staging sink and its paired target (fresh, empty ones per call).
pub struct Scenario<T: DeterministicTransform> {
    approved: ApprovedManifest,
    base: Option<ApprovedManifest>,
    transform: Arc<T>,
    source: Arc<dyn BackfillSource<T::Input>>,
    at: DateTime<Utc>,
    adapters: AdapterFactory<T::Output>,
    max_invocations: u32,
}

impl<T: DeterministicTransform> fmt::Debug for Scenario<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("run_id", self.approved.run_id())
            .field("transform", &self.transform)
            .field("source", &self.source)
            .field("max_invocations", &self.max_invocations)
            .finish_non_exhaustive()
    }
}

impl<T: DeterministicTransform> Scenario<T> {
    /// A scenario over memory staging and a memory target named after the manifest's target, at
    /// most five invocations per run.
    pub fn new(
        approved: ApprovedManifest,
        transform: Arc<T>,
        source: Arc<dyn BackfillSource<T::Input>>,
        at: DateTime<Utc>,
    ) -> Self {
        let target = approved.manifest().target.name.clone();
        let memory: AdapterFactory<T::Output> = Arc::new(move || {
            let sink = Arc::new(MemorySink::new("testkit_staging"));
            let publisher = Arc::new(MemoryPublisher::new(target.clone(), &sink));
            let pair: Adapters<T::Output> = (sink, publisher);
            futures::future::ready(pair).boxed()
        });
        Self {
            approved,
            base: None,
            transform,
            source,
            at,
            adapters: memory,
            max_invocations: 5,
        }
    }

    /// Builds each run's staging sink and target together with `make` (each call: a fresh, empty
    /// pair, the target publishing what the sink stages).
    pub fn with_pair(
        mut self,
        make: impl Fn() -> Adapters<T::Output> + Send + Sync + 'static,
    ) -> Self {
        self.adapters = Arc::new(move || futures::future::ready(make()).boxed());
        self
    }

    /// Builds each run's staging sink and target together with `make`, for adapters whose setup is
    /// async or shared (a fresh database schema per run, with a sink and a publisher on it).
    ///
    /// ```no_run
    /// # #![allow(dead_code)]
    /// # use std::sync::Arc;
    /// # use backfill_core::memory::{MemoryPublisher, MemorySink};
    /// # use backfill_testkit::partial_failure::{Adapters, Scenario};
    /// # use backfill_testkit::TestRow;
    /// # fn demo<T: backfill_core::prelude::DeterministicTransform<Output = TestRow>>(s: Scenario<T>) -> Scenario<T> {
    /// s.with_adapters(|| async {
    ///     // Here: create a schema, connect, build your sink and publisher on it. The publisher's
    ///     // descriptor name must be the manifest's target name.
    ///     let sink = Arc::new(MemorySink::new("staging"));
    ///     let publisher = Arc::new(MemoryPublisher::new("testkit_target", &sink));
    ///     let pair: Adapters<TestRow> = (sink, publisher);
    ///     pair
    /// })
    /// # }
    /// ```
    pub fn with_adapters<F, Fut>(mut self, make: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Adapters<T::Output>> + Send + 'static,
    {
        self.adapters = Arc::new(move || make().boxed());
        self
    }

    /// The earlier run the crash checks publish first (on the same target), so that a publication
    /// supersedes it and a rollback restores it. By default: the scenario's manifest under the run
    /// id `<run id>-base`, approved by the same owner.
    pub fn with_base(mut self, base: ApprovedManifest) -> Self {
        self.base = Some(base);
        self
    }

    /// Allows `n` invocations per run.
    pub fn max_invocations(mut self, n: u32) -> Self {
        self.max_invocations = n.max(1);
        self
    }

    /// A fresh sink and target for one run.
    async fn fresh(&self) -> Adapters<T::Output> {
        (self.adapters)().await
    }

    /// The earlier run of the crash checks.
    fn base(&self) -> Result<ApprovedManifest, PartialFailure> {
        if let Some(b) = &self.base {
            return Ok(b.clone());
        }
        let mut m = self.approved.manifest().clone();
        m.run_id = RunId::from(format!("{}-base", self.approved.run_id()));
        m.approve(&self.approved.approval().approved_by, self.at)
            .map_err(|e| PartialFailure::Baseline {
                error: format!("approving the base run: {e}"),
            })
    }

    /// A fresh control plane over `store` with `target` registered, at the scenario's instant.
    fn control(
        &self,
        store: Arc<dyn RunStore>,
        target: &Arc<dyn PublishTarget<T::Output>>,
    ) -> Result<Control, PartialFailure> {
        let name = target.descriptor().name;
        let wanted = &self.approved.manifest().target.name;
        if name != *wanted {
            return Err(PartialFailure::Baseline {
                error: format!(
                    "the publisher's descriptor name is `{name}`, the manifest's target is `{wanted}`"
                ),
            });
        }
        Control::new(store)
            .with_clock(Arc::new(FixedClock(self.at)))
            .with_target(publisher_of(target))
            .map_err(|e| PartialFailure::Baseline {
                error: e.to_string(),
            })
    }

    /// A fresh executor (a restarted worker).
    fn executor(
        &self,
        control: Control,
        sink: &Arc<dyn StagingSink<T::Output>>,
        target: &Arc<dyn PublishTarget<T::Output>>,
    ) -> Executor<T> {
        Executor::builder(
            control,
            Arc::clone(&self.source),
            Arc::clone(&self.transform),
            Arc::clone(sink),
            reader_of(target),
        )
        .options(
            RunnerOptions::worker("testkit")
                .with_lease(Duration::from_secs(30))
                .with_retry(RetryPolicy::new(3, Duration::from_millis(1))),
        )
        .build()
    }

    /// Runs the scenario once, without faults.
    pub async fn uninterrupted(&self) -> Result<Outcome, PartialFailure> {
        let (sink, target) = self.fresh().await;
        baseline(self.run_with(sink, target).await)
    }

    /// Runs with `sink` and `target` over a fresh store, invoking a fresh executor again after each
    /// error, until the run rests (published, validated for a manual publish or dry run, or refused).
    pub async fn run_with(
        &self,
        sink: Arc<dyn StagingSink<T::Output>>,
        target: Arc<dyn PublishTarget<T::Output>>,
    ) -> Result<Outcome, PartialFailure> {
        let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
        self.drive(&store, &sink, &target, &self.approved).await
    }

    /// Submits `approved` and runs it to rest with fresh executors over `store`.
    async fn drive(
        &self,
        store: &Arc<dyn RunStore>,
        sink: &Arc<dyn StagingSink<T::Output>>,
        target: &Arc<dyn PublishTarget<T::Output>>,
        approved: &ApprovedManifest,
    ) -> Result<Outcome, PartialFailure> {
        let run_id = approved.run_id();
        self.control(Arc::clone(store), target)?
            .submit(approved)
            .await
            .map_err(|e| PartialFailure::Baseline {
                error: format!("submit: {e}"),
            })?;
        let mut last_error = None;
        for n in 1..=self.max_invocations {
            let executor = self.executor(self.control(Arc::clone(store), target)?, sink, target);
            match executor.run(run_id).await {
                Ok(report) => {
                    let visible = self.visible(target.as_ref(), &report).await;
                    return Ok(Outcome {
                        report,
                        visible,
                        invocations: n,
                        last_error,
                    });
                }
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        Err(PartialFailure::DidNotConverge {
            invocations: self.max_invocations,
            last_error: last_error.unwrap_or_default(),
        })
    }

    async fn visible(
        &self,
        target: &dyn PublishTarget<T::Output>,
        report: &RunReport,
    ) -> PartitionDigests {
        let partitions: BTreeSet<PartitionKey> = report
            .digests
            .0
            .keys()
            .chain(&self.approved.manifest().target.partitions)
            .cloned()
            .collect();
        let mut out = PartitionDigests::default();
        for p in &partitions {
            let rows: Vec<T::Output> = target
                .read_current(p)
                .try_concat()
                .await
                .unwrap_or_default();
            out.merge(&PartitionDigests::of_rows(&rows));
        }
        out
    }

    /// Runs with `fault` injected into the staging sink, as `kind`, and checks that the run converges to
    /// the uninterrupted run: same state, same ledger digests, same visible rows.
    pub async fn check_sink_fault(
        &self,
        fault: SinkFault,
        kind: FaultKind,
    ) -> Result<Outcome, PartialFailure> {
        let clean = self.uninterrupted().await?;
        let (sink, target) = self.fresh().await;
        let faulty = Arc::new(FaultySink::new(sink, fault, kind));
        let out = self.run_with(Arc::clone(&faulty) as _, target).await?;
        if faulty.fired() == 0 {
            return Err(PartialFailure::FaultNeverFired {
                fault: format!("{fault:?}"),
            });
        }
        converged(&clean, &out)?;
        Ok(out)
    }

    /// Runs with a publisher that commits and then fails (the unknown outcome), and checks that
    /// recovery inspected the target before publishing again, that the target committed exactly once,
    /// and that the run converges to the uninterrupted run.
    pub async fn check_unknown_publish_outcome(&self) -> Result<Outcome, PartialFailure> {
        let clean = self.uninterrupted().await?;
        let (sink, target) = self.fresh().await;
        let faulty = Arc::new(FaultyPublisher::new(
            target,
            PublishFault::CommitThenFail,
            FaultKind::Transient,
        ));
        let out = self.run_with(sink, Arc::clone(&faulty) as _).await?;
        if faulty.fired() == 0 {
            return Err(PartialFailure::FaultNeverFired {
                fault: "CommitThenFail".into(),
            });
        }
        committed_once_after_inspecting(&faulty)?;
        converged(&clean, &out)?;
        Ok(out)
    }

    /// Runs with `fault` injected into the run store, as `kind`, and checks that the run converges to
    /// the uninterrupted run and that its evidence names every chunk the ledger holds as done exactly
    /// once, for the attempt that staged it. `StoreFault::Evidence(EvidenceKind::ChunkStaged)` is a
    /// worker dying between recording a chunk in the ledger and appending its evidence.
    pub async fn check_store_fault(
        &self,
        fault: StoreFault,
        kind: FaultKind,
    ) -> Result<Outcome, PartialFailure> {
        let clean = self.uninterrupted().await?;
        let (sink, target) = self.fresh().await;
        let inner = Arc::new(MemoryStore::new());
        let faulty = Arc::new(FaultyStore::new(Arc::clone(&inner), fault, kind));
        let store: Arc<dyn RunStore> = Arc::clone(&faulty) as _;
        let out = self.drive(&store, &sink, &target, &self.approved).await?;
        if faulty.fired() == 0 {
            return Err(PartialFailure::FaultNeverFired {
                fault: format!("{fault:?}"),
            });
        }
        converged(&clean, &out)?;
        chunks_in_evidence(inner.as_ref(), self.approved.run_id()).await?;
        Ok(out)
    }
}

/// Every done chunk of the ledger has exactly one `chunk_staged` record, for its last attempt.
async fn chunks_in_evidence(store: &dyn RunStore, run_id: &RunId) -> Result<(), PartialFailure> {
    let read = |e: backfill_core::Error| PartialFailure::RetryFailed {
        error: format!("reading run {run_id}: {e}"),
    };
    let evidence = store.evidence(run_id).await.map_err(read)?;
    for c in store.chunks(run_id).await.map_err(read)? {
        if c.status != ChunkStatus::Done {
            continue;
        }
        let count = evidence
            .iter()
            .filter(|e| {
                matches!(&e.record, EvidenceRecord::ChunkStaged { chunk_id, attempt, .. }
                    if *chunk_id == c.chunk_id && *attempt == c.attempts)
            })
            .count();
        if count != 1 {
            return Err(PartialFailure::EvidenceCount {
                run_id: run_id.clone(),
                kind: EvidenceKind::ChunkStaged,
                count,
                expected: "exactly one per done chunk",
            });
        }
    }
    Ok(())
}

/// A run that must finish without faults: its failure is the scenario's, not the adapter's.
fn baseline(out: Result<Outcome, PartialFailure>) -> Result<Outcome, PartialFailure> {
    match out {
        Ok(o) if o.last_error.is_none() => Ok(o),
        Ok(o) => Err(PartialFailure::Baseline {
            error: o.last_error.unwrap_or_default(),
        }),
        Err(PartialFailure::DidNotConverge { last_error, .. }) => {
            Err(PartialFailure::Baseline { error: last_error })
        }
        Err(e) => Err(e),
    }
}

/// The target committed exactly once, and after the first (failed) publish call an `inspect` that
/// found the receipt came before any further publish.
fn committed_once_after_inspecting<P: ?Sized>(
    faulty: &FaultyPublisher<P>,
) -> Result<(), PartialFailure> {
    let calls = faulty.calls();
    if faulty.commits() != 1 {
        return Err(PartialFailure::PublishedTwice {
            commits: faulty.commits(),
            calls,
        });
    }
    let first = calls
        .iter()
        .position(|c| matches!(c, PublisherCall::Publish { .. }));
    let after = first.map_or(&[][..], |i| &calls[i + 1..]);
    let inspected = after
        .iter()
        .take_while(|c| !matches!(c, PublisherCall::Publish { .. }))
        .any(|c| matches!(c, PublisherCall::Inspect { found: true, .. }));
    if inspected {
        Ok(())
    } else {
        Err(PartialFailure::NotInspected { calls })
    }
}

fn converged(clean: &Outcome, out: &Outcome) -> Result<(), PartialFailure> {
    if out.report.state != clean.report.state {
        return Err(PartialFailure::StateDiverged {
            expected: clean.report.state,
            actual: out.report.state,
            last_error: out.last_error.clone(),
        });
    }
    if let Some((partition, expected, actual)) = diff(&clean.report.digests, &out.report.digests) {
        return Err(PartialFailure::LedgerDiverged {
            partition,
            expected,
            actual,
        });
    }
    if let Some((partition, expected, actual)) = diff(&clean.visible, &out.visible) {
        return Err(PartialFailure::TargetDiverged {
            partition,
            expected,
            actual,
        });
    }
    Ok(())
}

/// The first partition whose digests differ, with both digests as text.
fn diff(a: &PartitionDigests, b: &PartitionDigests) -> Option<(PartitionKey, String, String)> {
    let keys: BTreeSet<&PartitionKey> = a.0.keys().chain(b.0.keys()).collect();
    let show = |d: Option<&backfill_core::digest::PartitionDigest>| {
        d.map_or_else(|| "none".to_owned(), ToString::to_string)
    };
    keys.into_iter().find_map(|k| {
        let (x, y) = (a.0.get(k), b.0.get(k));
        (x != y).then(|| (k.clone(), show(x), show(y)))
    })
}
