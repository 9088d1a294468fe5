//! Crashes inside a publication or a rollback, and the convergence of their retry through a fresh
//! control plane.

use std::sync::Arc;

use backfill_core::control::Control;
use backfill_core::ids::RunId;
use backfill_core::manifest::ApprovedManifest;
use backfill_core::memory::MemoryStore;
use backfill_core::sink::StagingSink;
use backfill_core::state::RunState;
use backfill_core::store::{EvidenceKind, EvidenceRecord, RunStore};
use backfill_core::transform::DeterministicTransform;

use super::{
    baseline, committed_once_after_inspecting, converged, Outcome, PartialFailure, Scenario,
};
use crate::conformance::PublishTarget;
use crate::faults::{FaultKind, FaultyPublisher, FaultyStore, PublishFault, StoreFault};

/// Where a publication or a rollback is interrupted (the process dies, or a call times out).
///
/// [`Control::publish`] and [`Control::rollback`] change the target first (the authority), then
/// record its receipt, move the run states, and move the store's accepted pointer last; each window
/// below is a crash between two of those steps. A retry through a fresh [`Control`] must finish
/// the same change once.
///
/// | window | publication | rollback |
/// |---|---|---|
/// | [`AfterTargetCommit`](Self::AfterTargetCommit) | the target committed, the publisher's call failed (unknown outcome) | the target rolled back, the call failed |
/// | [`BeforeReceiptRecorded`](Self::BeforeReceiptRecorded) | `Published` evidence not recorded | `RolledBack` evidence not recorded |
/// | [`BeforeStateMoved`](Self::BeforeStateMoved) | the run not moved `validated → published` | the run not moved `published → rolled_back` |
/// | [`BeforeOtherStateMoved`](Self::BeforeOtherStateMoved) | the previous run not moved `published → superseded` | the restored run not moved `superseded → published` |
/// | [`BeforePointerMoved`](Self::BeforePointerMoved) | the store's accepted pointer not swapped | the same |
/// | [`BeforePointerMoveRecorded`](Self::BeforePointerMoveRecorded) | the pointer swapped, `PointerMoved` evidence not recorded | the same |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Crash {
    /// The target committed; the publisher's call then failed.
    AfterTargetCommit,
    /// The target committed; recording its receipt as evidence failed.
    BeforeReceiptRecorded,
    /// The receipt is recorded; moving the run's state failed.
    BeforeStateMoved,
    /// The run's state moved; moving the other run's state failed.
    BeforeOtherStateMoved,
    /// Target, evidence and states moved; swapping the store's accepted pointer failed.
    BeforePointerMoved,
    /// The store's pointer moved; recording the move as evidence failed.
    BeforePointerMoveRecorded,
}

impl Crash {
    /// Every window, in the order the steps happen.
    pub const ALL: [Self; 6] = [
        Self::AfterTargetCommit,
        Self::BeforeReceiptRecorded,
        Self::BeforeStateMoved,
        Self::BeforeOtherStateMoved,
        Self::BeforePointerMoved,
        Self::BeforePointerMoveRecorded,
    ];

    fn fault(self, rollback: bool) -> Injection {
        match (self, rollback) {
            (Self::AfterTargetCommit, false) => Injection::Publisher(PublishFault::CommitThenFail),
            (Self::AfterTargetCommit, true) => {
                Injection::Publisher(PublishFault::RollbackCommitThenFail)
            }
            (Self::BeforeReceiptRecorded, false) => {
                Injection::Store(StoreFault::Evidence(EvidenceKind::Published))
            }
            (Self::BeforeReceiptRecorded, true) => {
                Injection::Store(StoreFault::Evidence(EvidenceKind::RolledBack))
            }
            (Self::BeforeStateMoved, false) => {
                Injection::Store(StoreFault::TransitionTo(RunState::Published))
            }
            (Self::BeforeStateMoved, true) => {
                Injection::Store(StoreFault::TransitionTo(RunState::RolledBack))
            }
            (Self::BeforeOtherStateMoved, false) => {
                Injection::Store(StoreFault::TransitionTo(RunState::Superseded))
            }
            (Self::BeforeOtherStateMoved, true) => {
                Injection::Store(StoreFault::TransitionTo(RunState::Published))
            }
            (Self::BeforePointerMoved, _) => Injection::Store(StoreFault::SwapAccepted(0)),
            (Self::BeforePointerMoveRecorded, _) => {
                Injection::Store(StoreFault::Evidence(EvidenceKind::PointerMoved))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Injection {
    Publisher(PublishFault),
    Store(StoreFault),
}

/// One store and target with the base run published.
struct World<R: backfill_core::digest::OutputRow> {
    store: Arc<dyn RunStore>,
    sink: Arc<dyn StagingSink<R>>,
    target: Arc<dyn PublishTarget<R>>,
    base: ApprovedManifest,
}

/// The wrappers that inject one crash.
struct Faulty<R: backfill_core::digest::OutputRow> {
    publisher: Arc<FaultyPublisher<dyn PublishTarget<R>>>,
    store: Arc<FaultyStore<dyn RunStore>>,
}

impl<R: backfill_core::digest::OutputRow> Faulty<R> {
    fn new(world: &World<R>, crash: Crash, rollback: bool) -> Self {
        let (publish_fault, store_fault, on_publisher) = match crash.fault(rollback) {
            Injection::Publisher(f) => (f, StoreFault::SwapAccepted(0), true),
            Injection::Store(f) => (PublishFault::BeforeCommit, f, false),
        };
        let publisher =
            FaultyPublisher::new(Arc::clone(&world.target), publish_fault, FaultKind::Fatal)
                .times(u32::from(on_publisher));
        let store = FaultyStore::new(Arc::clone(&world.store), store_fault, FaultKind::Fatal)
            .times(u32::from(!on_publisher));
        Self {
            publisher: Arc::new(publisher),
            store: Arc::new(store),
        }
    }

    fn fired(&self) -> u32 {
        self.publisher.fired() + self.store.fired()
    }

    fn target(&self) -> Arc<dyn PublishTarget<R>> {
        Arc::clone(&self.publisher) as _
    }

    fn store(&self) -> Arc<dyn RunStore> {
        Arc::clone(&self.store) as _
    }
}

impl<T: DeterministicTransform> Scenario<T> {
    /// A fresh store and target with the base run published.
    async fn world(&self) -> Result<World<T::Output>, PartialFailure> {
        let (sink, target) = self.fresh().await;
        let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
        let base = self.base()?;
        let out = baseline(self.drive(&store, &sink, &target, &base).await)?;
        expect_resting(&base, &out, RunState::Published)?;
        Ok(World {
            store,
            sink,
            target,
            base,
        })
    }

    /// The base run, then the scenario's run, published without faults.
    async fn published_pair(&self) -> Result<(World<T::Output>, Outcome), PartialFailure> {
        let w = self.world().await?;
        let out = baseline(
            self.drive(&w.store, &w.sink, &w.target, &self.approved)
                .await,
        )?;
        expect_resting(&self.approved, &out, RunState::Published)?;
        Ok((w, out))
    }

    /// Status and visible rows of `run`, read through a fresh control plane.
    async fn outcome(
        &self,
        control: &Control,
        target: &Arc<dyn PublishTarget<T::Output>>,
        run: &RunId,
        invocations: u32,
        last_error: Option<String>,
    ) -> Result<Outcome, PartialFailure> {
        let report = control
            .status(run)
            .await
            .map_err(|e| PartialFailure::RetryFailed {
                error: format!("status of {run}: {e}"),
            })?;
        let visible = self.visible(target.as_ref(), &report).await;
        Ok(Outcome {
            report,
            visible,
            invocations,
            last_error,
        })
    }

    /// Publishes the base run, then executes the scenario's run with `crash` injected into its
    /// publication, retries the publication through a fresh [`Control`] (as an operator's
    /// `publish` after the crash), and checks convergence:
    ///
    /// - the store's accepted pointer is the run, and the target's `inspect` answers the receipt the
    ///   run's evidence recorded;
    /// - exactly one `Published` record in the run's evidence, exactly one pointer move to it;
    /// - the run is `Published`, the base `Superseded`, and each run's transitions chain from
    ///   `draft` to its state;
    /// - the target committed the run once (after the unknown outcome, only after `inspect`);
    /// - state, ledger digests and visible rows equal an uninterrupted base-then-run sequence's.
    pub async fn check_publish_crash(&self, crash: Crash) -> Result<Outcome, PartialFailure> {
        let clean = {
            let (_, out) = self.published_pair().await?;
            out
        };
        let w = self.world().await?;
        let faulty = Faulty::new(&w, crash, false);
        let run = self.approved.run_id();
        self.control(Arc::clone(&w.store), &w.target)?
            .submit(&self.approved)
            .await
            .map_err(|e| PartialFailure::Baseline {
                error: format!("submit: {e}"),
            })?;
        let crashed = self
            .executor(
                self.control(faulty.store(), &faulty.target())?,
                &w.sink,
                &faulty.target(),
            )
            .run(run)
            .await;
        let error = crashed_with(&faulty, crash, crashed.map(|_| ()))?;
        let fresh = self.control(Arc::clone(&w.store), &faulty.target())?;
        fresh
            .publish(run, "testkit-retry")
            .await
            .map_err(|e| PartialFailure::RetryFailed {
                error: e.to_string(),
            })?;
        if crash == Crash::AfterTargetCommit {
            committed_once_after_inspecting(&faulty.publisher)?;
        } else if faulty.publisher.commits() != 1 {
            return Err(PartialFailure::PublishedTwice {
                commits: faulty.publisher.commits(),
                calls: faulty.publisher.calls(),
            });
        }
        let name = &self.approved.manifest().target.name;
        let store = w.store.as_ref();
        pointer_is(store, name, run).await?;
        let recorded = published_receipt(store, run).await?;
        let at_target = w.target.inspect(run).await.ok().flatten();
        if at_target.as_ref() != Some(&recorded) {
            return Err(PartialFailure::TargetDisagrees {
                run_id: run.clone(),
                detail: format!(
                    "inspect answers {at_target:?}, the evidence recorded {recorded:?}"
                ),
            });
        }
        exactly_one_move(store, run, run, None).await?;
        state_is(store, run, RunState::Published).await?;
        state_is(store, w.base.run_id(), RunState::Superseded).await?;
        for r in [run, w.base.run_id()] {
            chained(store, r).await?;
        }
        let out = self.outcome(&fresh, &w.target, run, 2, Some(error)).await?;
        converged(&clean, &out)?;
        Ok(out)
    }

    /// Publishes the base run and then the scenario's run, rolls the target back to the base with
    /// `crash` injected, retries the rollback through a fresh [`Control`], and checks convergence:
    ///
    /// - the store's accepted pointer is the base again, and the target's `inspect_rollback` answers;
    /// - exactly one `RolledBack` record in each run's evidence, still one `Published` record each,
    ///   exactly one pointer move back to the base;
    /// - the run is `RolledBack`, the base `Published`, and each run's transitions chain from
    ///   `draft` to its state;
    /// - the target rolled back once;
    /// - the base's state, ledger digests and visible rows equal an uninterrupted rollback's.
    pub async fn check_rollback_crash(&self, crash: Crash) -> Result<Outcome, PartialFailure> {
        let clean = {
            let (w, _) = self.published_pair().await?;
            let control = self.control(Arc::clone(&w.store), &w.target)?;
            let name = &self.approved.manifest().target.name;
            control
                .rollback(name, w.base.run_id(), "testkit", "baseline rollback")
                .await
                .map_err(|e| PartialFailure::Baseline {
                    error: format!("rollback: {e}"),
                })?;
            self.outcome(&control, &w.target, w.base.run_id(), 1, None)
                .await?
        };
        let (w, _) = self.published_pair().await?;
        let faulty = Faulty::new(&w, crash, true);
        let (run, base) = (self.approved.run_id(), w.base.run_id());
        let name = &self.approved.manifest().target.name;
        let crashed = self
            .control(faulty.store(), &faulty.target())?
            .rollback(name, base, "testkit", "crash check")
            .await;
        let error = crashed_with(&faulty, crash, crashed.map(|_| ()))?;
        let fresh = self.control(Arc::clone(&w.store), &faulty.target())?;
        fresh
            .rollback(name, base, "testkit-retry", "crash check")
            .await
            .map_err(|e| PartialFailure::RetryFailed {
                error: e.to_string(),
            })?;
        if faulty.publisher.rollback_commits() != 1 {
            return Err(PartialFailure::RolledBackTwice {
                commits: faulty.publisher.rollback_commits(),
                calls: faulty.publisher.calls(),
            });
        }
        let store = w.store.as_ref();
        pointer_is(store, name, base).await?;
        if w.target
            .inspect_rollback(run, base)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            return Err(PartialFailure::TargetDisagrees {
                run_id: run.clone(),
                detail: format!("inspect_rollback({run}, {base}) answers none after the rollback"),
            });
        }
        for r in [run, base] {
            let rolled = count(store, r, |e| {
                matches!(e, EvidenceRecord::RolledBack { from, to, .. } if from == run && to == base)
            })
            .await?;
            exactly_one(r, EvidenceKind::RolledBack, rolled)?;
            published_receipt(store, r).await?;
            chained(store, r).await?;
        }
        exactly_one_move(store, base, base, Some(run)).await?;
        state_is(store, run, RunState::RolledBack).await?;
        state_is(store, base, RunState::Published).await?;
        let out = self
            .outcome(&fresh, &w.target, base, 2, Some(error))
            .await?;
        converged(&clean, &out)?;
        Ok(out)
    }
}

/// The error the crashed call returned, refusing a call that did not crash where asked.
fn crashed_with<R: backfill_core::digest::OutputRow>(
    faulty: &Faulty<R>,
    crash: Crash,
    result: backfill_core::Result<()>,
) -> Result<String, PartialFailure> {
    match (faulty.fired(), result) {
        (0, Ok(())) => Err(PartialFailure::FaultNeverFired {
            fault: format!("{crash:?}"),
        }),
        (0, Err(e)) => Err(PartialFailure::Baseline {
            error: format!("the run failed before the crash {crash:?}: {e}"),
        }),
        (_, Ok(())) => Err(PartialFailure::Baseline {
            error: format!("the crash {crash:?} fired but the call succeeded"),
        }),
        (_, Err(e)) => Ok(e.to_string()),
    }
}

fn expect_resting(
    approved: &ApprovedManifest,
    out: &Outcome,
    state: RunState,
) -> Result<(), PartialFailure> {
    if out.report.state == state {
        Ok(())
    } else {
        Err(PartialFailure::Baseline {
            error: format!(
                "run {} ended {}, not {state}",
                approved.run_id(),
                out.report.state
            ),
        })
    }
}

fn store_error(e: backfill_core::Error) -> PartialFailure {
    PartialFailure::RetryFailed {
        error: format!("reading the store: {e}"),
    }
}

async fn pointer_is(store: &dyn RunStore, target: &str, run: &RunId) -> Result<(), PartialFailure> {
    let pointer = store.accepted(target).await.map_err(store_error)?;
    if pointer.as_ref().map(|p| &p.run_id) == Some(run) {
        Ok(())
    } else {
        Err(PartialFailure::PointerDiverged {
            target: target.into(),
            store: pointer.map(|p| p.run_id),
            expected: run.clone(),
        })
    }
}

async fn state_is(
    store: &dyn RunStore,
    run: &RunId,
    state: RunState,
) -> Result<(), PartialFailure> {
    let actual = store
        .run(run)
        .await
        .map_err(store_error)?
        .map(|r| r.state)
        .ok_or_else(|| PartialFailure::RetryFailed {
            error: format!("run {run} is not in the store"),
        })?;
    if actual == state {
        Ok(())
    } else {
        Err(PartialFailure::RunStateInconsistent {
            run_id: run.clone(),
            expected: state,
            actual,
        })
    }
}

/// The run's transitions chain from `draft` to its current state.
async fn chained(store: &dyn RunStore, run: &RunId) -> Result<(), PartialFailure> {
    let ts = store.transitions(run).await.map_err(store_error)?;
    let state = store.run(run).await.map_err(store_error)?.map(|r| r.state);
    let broken = |detail: String| PartialFailure::TransitionsBroken {
        run_id: run.clone(),
        detail,
    };
    let mut at = RunState::Draft;
    for t in &ts {
        if t.from != at {
            return Err(broken(format!(
                "{} -> {} recorded while the run was {at}",
                t.from, t.to
            )));
        }
        at = t.to;
    }
    if Some(at) == state {
        Ok(())
    } else {
        Err(broken(format!(
            "the transitions end at {at}, the run is {state:?}"
        )))
    }
}

async fn count(
    store: &dyn RunStore,
    run: &RunId,
    pick: impl Fn(&EvidenceRecord) -> bool,
) -> Result<usize, PartialFailure> {
    let evidence = store.evidence(run).await.map_err(store_error)?;
    Ok(evidence.iter().filter(|e| pick(&e.record)).count())
}

fn exactly_one(run: &RunId, kind: EvidenceKind, n: usize) -> Result<(), PartialFailure> {
    if n == 1 {
        Ok(())
    } else {
        Err(PartialFailure::EvidenceCount {
            run_id: run.clone(),
            kind,
            count: n,
            expected: "exactly one",
        })
    }
}

/// The run's one recorded publication receipt.
async fn published_receipt(
    store: &dyn RunStore,
    run: &RunId,
) -> Result<backfill_core::publish::PublishReceipt, PartialFailure> {
    let evidence = store.evidence(run).await.map_err(store_error)?;
    let receipts: Vec<_> = evidence
        .iter()
        .filter_map(|e| match &e.record {
            EvidenceRecord::Published { receipt, .. } => Some(receipt.clone()),
            _ => None,
        })
        .collect();
    match receipts.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(PartialFailure::EvidenceCount {
            run_id: run.clone(),
            kind: EvidenceKind::Published,
            count: receipts.len(),
            expected: "exactly one",
        }),
    }
}

/// Exactly one `PointerMoved` record on `run` moving the pointer to `to` (from `from`, when given).
async fn exactly_one_move(
    store: &dyn RunStore,
    run: &RunId,
    to: &RunId,
    from: Option<&RunId>,
) -> Result<(), PartialFailure> {
    let moves = count(store, run, |e| {
        matches!(e, EvidenceRecord::PointerMoved { to: t, from: f, .. }
            if t == to && from.is_none_or(|x| f.as_ref() == Some(x)))
    })
    .await?;
    if moves == 1 {
        Ok(())
    } else {
        Err(PartialFailure::EvidenceCount {
            run_id: run.clone(),
            kind: EvidenceKind::PointerMoved,
            count: moves,
            expected: "exactly one",
        })
    }
}
