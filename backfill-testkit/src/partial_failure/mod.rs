//! Partial-failure checks: a run that meets a fault, retries and resumes must end exactly where an
//! uninterrupted run ends, and must never publish twice.
//!
//! A [`Scenario`] holds an approved manifest, a transform and a source. It runs backfill-core's
//! [`Runner`] over a fresh [`MemoryStore`] per run, with staging sinks and publishers from factories
//! (memory ones by default; give your adapter's with [`Scenario::with_sink`] and
//! [`Scenario::with_publisher`] to check it). Each invocation of `run` is a new `Runner`, as a restarted
//! process; invocations repeat until the run reaches a resting state.
//!
//! - [`Scenario::check_sink_fault`] wraps the sink in a [`FaultySink`] and checks that the ledger's
//!   digests, the rows made visible and the final state equal the uninterrupted run's.
//! - [`Scenario::check_unknown_publish_outcome`] wraps the publisher in a [`FaultyPublisher`] that
//!   commits and then reports an error, and checks that recovery asked [`Publisher::inspect`] before
//!   publishing again and that the target committed exactly once.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backfill_core::context::FixedClock;
use backfill_core::digest::PartitionDigests;
use backfill_core::ids::PartitionKey;
use backfill_core::manifest::ApprovedManifest;
use backfill_core::memory::{MemoryPublisher, MemorySink, MemoryStore};
use backfill_core::publish::Publisher;
use backfill_core::runner::{RetryPolicy, RunReport, Runner, RunnerOptions};
use backfill_core::sink::StagingSink;
use backfill_core::source::BackfillSource;
use backfill_core::state::RunState;
use backfill_core::transform::DeterministicTransform;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::TryStreamExt;

use crate::faults::{
    FaultKind, FaultyPublisher, FaultySink, PublishFault, PublisherCall, SinkFault,
};

type SinkFactory<R> = Arc<dyn Fn() -> Arc<dyn StagingSink<R>> + Send + Sync>;
type PublisherFactory<R> = Arc<dyn Fn() -> Arc<dyn Publisher<R>> + Send + Sync>;
/// A staging sink and the publisher that reads from it, fresh and empty.
pub type Adapters<R> = (Arc<dyn StagingSink<R>>, Arc<dyn Publisher<R>>);
type AdapterFactory<R> = Arc<dyn Fn() -> BoxFuture<'static, Adapters<R>> + Send + Sync>;

/// How a faulty run failed to converge to the uninterrupted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartialFailure {
    /// The uninterrupted run itself did not finish (the scenario is wrong, not the adapter).
    Baseline {
        /// The error.
        error: String,
    },
    /// The injected fault never fired (the scenario has fewer chunks or batches than the fault needs).
    FaultNeverFired {
        /// The fault.
        fault: String,
    },
    /// The run still failed after the last allowed invocation.
    DidNotConverge {
        /// Invocations made.
        invocations: u32,
        /// The last error.
        last_error: String,
    },
    /// The run came to rest in another state than the uninterrupted run.
    StateDiverged {
        /// The uninterrupted run's state.
        expected: RunState,
        /// The faulty run's state.
        actual: RunState,
        /// The last error seen on the way, if any.
        last_error: Option<String>,
    },
    /// The ledger's digests of one partition differ.
    LedgerDiverged {
        /// The partition.
        partition: PartitionKey,
        /// The uninterrupted run's digest (`rows:hash`, or `none`).
        expected: String,
        /// The faulty run's digest.
        actual: String,
    },
    /// The rows readers see in one partition differ.
    TargetDiverged {
        /// The partition.
        partition: PartitionKey,
        /// The uninterrupted run's visible digest.
        expected: String,
        /// The faulty run's visible digest.
        actual: String,
    },
    /// The target committed the run more than once.
    PublishedTwice {
        /// Commits counted on the wrapped publisher.
        commits: usize,
        /// Every publisher call, in order.
        calls: Vec<PublisherCall>,
    },
    /// After the unknown outcome, recovery did not ask the target whether the run had published.
    NotInspected {
        /// Every publisher call, in order.
        calls: Vec<PublisherCall>,
    },
}

impl fmt::Display for PartialFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Baseline { error } => write!(f, "the uninterrupted run failed: {error}"),
            Self::FaultNeverFired { fault } => write!(f, "the fault {fault} never fired"),
            Self::DidNotConverge {
                invocations,
                last_error,
            } => write!(
                f,
                "the run did not recover in {invocations} invocations: {last_error}"
            ),
            Self::StateDiverged {
                expected,
                actual,
                last_error,
            } => write!(
                f,
                "the run ended {actual}, the uninterrupted run {expected} (last error: {})",
                last_error.as_deref().unwrap_or("none")
            ),
            Self::LedgerDiverged {
                partition,
                expected,
                actual,
            } => write!(
                f,
                "ledger digest of partition {partition} is {actual}, uninterrupted {expected}"
            ),
            Self::TargetDiverged {
                partition,
                expected,
                actual,
            } => write!(
                f,
                "visible rows of partition {partition} digest to {actual}, uninterrupted {expected}"
            ),
            Self::PublishedTwice { commits, calls } => {
                write!(f, "the target committed {commits} times: {calls:?}")
            }
            Self::NotInspected { calls } => write!(
                f,
                "recovery published again without inspecting the target: {calls:?}"
            ),
        }
    }
}

impl std::error::Error for PartialFailure {}

/// Where a run came to rest, and what it left.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The final report (state, ledger digests, counts).
    pub report: RunReport,
    /// Digests of the rows readers see, per partition of the ledger and of the manifest's target.
    pub visible: PartitionDigests,
    /// `Runner::run` invocations made.
    pub invocations: u32,
    /// The last error an invocation returned, if any.
    pub last_error: Option<String>,
}

/// A run to break: an approved manifest, a transform, a source, an instant, and factories for the
/// staging sink and publisher (fresh, empty ones per call).
pub struct Scenario<T: DeterministicTransform> {
    approved: ApprovedManifest,
    transform: Arc<T>,
    source: Arc<dyn BackfillSource<T::Input>>,
    at: DateTime<Utc>,
    sink: SinkFactory<T::Output>,
    publisher: PublisherFactory<T::Output>,
    adapters: Option<AdapterFactory<T::Output>>,
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
    /// A scenario over memory staging and a memory target, at most five invocations per run.
    pub fn new(
        approved: ApprovedManifest,
        transform: Arc<T>,
        source: Arc<dyn BackfillSource<T::Input>>,
        at: DateTime<Utc>,
    ) -> Self {
        let target = approved.manifest().target.name.clone();
        Self {
            approved,
            transform,
            source,
            at,
            sink: Arc::new(|| Arc::new(MemorySink::new("testkit_staging"))),
            publisher: Arc::new(move || Arc::new(MemoryPublisher::new(target.clone()))),
            adapters: None,
            max_invocations: 5,
        }
    }

    /// Builds staging sinks with `make` (each call: a fresh, empty sink).
    pub fn with_sink(
        mut self,
        make: impl Fn() -> Arc<dyn StagingSink<T::Output>> + Send + Sync + 'static,
    ) -> Self {
        self.sink = Arc::new(make);
        self
    }

    /// Builds publishers with `make` (each call: a fresh, empty target).
    pub fn with_publisher(
        mut self,
        make: impl Fn() -> Arc<dyn Publisher<T::Output>> + Send + Sync + 'static,
    ) -> Self {
        self.publisher = Arc::new(make);
        self
    }

    /// Builds each run's staging sink and publisher together with `make`, for adapters whose setup is
    /// async or shared (a fresh database schema per run, with a sink and a publisher on it). Takes
    /// precedence over [`with_sink`](Self::with_sink) and [`with_publisher`](Self::with_publisher).
    ///
    /// ```no_run
    /// # #![allow(dead_code)]
    /// # use std::sync::Arc;
    /// # use backfill_core::memory::{MemoryPublisher, MemorySink};
    /// # use backfill_testkit::partial_failure::{Adapters, Scenario};
    /// # use backfill_testkit::TestRow;
    /// # fn demo<T: backfill_core::prelude::DeterministicTransform<Output = TestRow>>(s: Scenario<T>) -> Scenario<T> {
    /// s.with_adapters(|| async {
    ///     // Here: create a schema, connect, build your sink and publisher on it.
    ///     let pair: Adapters<TestRow> = (
    ///         Arc::new(MemorySink::new("staging")),
    ///         Arc::new(MemoryPublisher::new("target")),
    ///     );
    ///     pair
    /// })
    /// # }
    /// ```
    pub fn with_adapters<F, Fut>(mut self, make: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Adapters<T::Output>> + Send + 'static,
    {
        self.adapters = Some(Arc::new(move || make().boxed()));
        self
    }

    /// A fresh sink and publisher for one run.
    async fn fresh(&self) -> Adapters<T::Output> {
        match &self.adapters {
            Some(make) => make().await,
            None => ((self.sink)(), (self.publisher)()),
        }
    }

    /// Allows `n` invocations of `Runner::run` per run.
    pub fn max_invocations(mut self, n: u32) -> Self {
        self.max_invocations = n.max(1);
        self
    }

    /// Runs the scenario once, without faults.
    pub async fn uninterrupted(&self) -> Result<Outcome, PartialFailure> {
        let (sink, publisher) = self.fresh().await;
        let out = self.run_with(sink, publisher).await;
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

    /// Runs with `sink` and `publisher` over a fresh store, invoking the runner again after each error,
    /// until the run rests (published, validated for a manual publish or dry run, or refused).
    pub async fn run_with(
        &self,
        sink: Arc<dyn StagingSink<T::Output>>,
        publisher: Arc<dyn Publisher<T::Output>>,
    ) -> Result<Outcome, PartialFailure> {
        let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
        let runner = || {
            Runner::builder(
                Arc::clone(&store) as _,
                Arc::clone(&self.source),
                Arc::clone(&self.transform),
                Arc::clone(&sink),
                Arc::clone(&publisher),
            )
            .clock(Arc::new(FixedClock(self.at)))
            .options(
                RunnerOptions::worker("testkit")
                    .with_lease(Duration::from_secs(30))
                    .with_retry(RetryPolicy::new(3, Duration::from_millis(1))),
            )
            .build()
        };
        let run_id = self.approved.run_id();
        runner()
            .submit(&self.approved)
            .await
            .map_err(|e| PartialFailure::Baseline {
                error: format!("submit: {e}"),
            })?;
        let mut last_error = None;
        for n in 1..=self.max_invocations {
            match runner().run(run_id).await {
                Ok(report) => {
                    let visible = self.visible(publisher.as_ref(), &report).await;
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
        publisher: &dyn Publisher<T::Output>,
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
            let rows: Vec<T::Output> = publisher
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
        let (sink, publisher) = self.fresh().await;
        let faulty = Arc::new(FaultySink::new(sink, fault, kind));
        let out = self.run_with(Arc::clone(&faulty) as _, publisher).await?;
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
        let (sink, publisher) = self.fresh().await;
        let faulty = Arc::new(FaultyPublisher::new(
            publisher,
            PublishFault::CommitThenFail,
            FaultKind::Transient,
        ));
        let out = self.run_with(sink, Arc::clone(&faulty) as _).await?;
        let calls = faulty.calls();
        if faulty.fired() == 0 {
            return Err(PartialFailure::FaultNeverFired {
                fault: "CommitThenFail".into(),
            });
        }
        if faulty.commits() != 1 {
            return Err(PartialFailure::PublishedTwice {
                commits: faulty.commits(),
                calls,
            });
        }
        // After the failed publish, an inspect must come before any further publish, and must be there.
        let first = calls
            .iter()
            .position(|c| matches!(c, PublisherCall::Publish { .. }));
        let after = first.map_or(&[][..], |i| &calls[i + 1..]);
        let inspected = after
            .iter()
            .take_while(|c| !matches!(c, PublisherCall::Publish { .. }))
            .any(|c| matches!(c, PublisherCall::Inspect { found: true, .. }));
        if !inspected {
            return Err(PartialFailure::NotInspected { calls });
        }
        converged(&clean, &out)?;
        Ok(out)
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
