//! Fault injection: retry and resume converge to the uninterrupted run; recovery inspects the target
//! before publishing again; staging is idempotent. Broken sinks and publishers are caught.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::ids::{ChunkId, PartitionKey, RunId};
use backfill_core::memory::MemoryStore;
use backfill_core::memory::{ChunkBy, MemoryPublisher, MemorySink, MemorySource};
use backfill_core::prelude::*;
use backfill_core::publish::{PublishRequest, RollbackRequest};
use backfill_core::sink::StageRequest;
use backfill_testkit::faults::{
    FaultKind, FaultySink, FaultyStore, PublisherCall, SinkFault, StoreFault,
};
use backfill_testkit::idempotency::check_idempotent_staging;
use backfill_testkit::partial_failure::Adapters;
use backfill_testkit::partial_failure::{Crash, PartialFailure, Scenario};
use backfill_testkit::strategy::{valid_manifest, Keyed};
use chrono::{TimeZone, Utc};
use common::{day, records, AppendingSink};
use futures::stream::{BoxStream, StreamExt};

type Rec = Keyed<i64>;

/// Doubles values; named as `valid_manifest` expects.
#[derive(Debug)]
struct Double;

impl DeterministicTransform for Double {
    type Input = Rec;
    type Output = Rec;
    fn name(&self) -> &str {
        "test"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        r: &Rec,
        _: &TransformContext,
        out: &mut Vec<Rec>,
    ) -> Result<(), TransformError> {
        out.push(Keyed {
            value: r.value * 2,
            ..r.clone()
        });
        Ok(())
    }
}

fn scenario() -> Scenario<Double> {
    let at = Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap();
    let m = valid_manifest(
        "bf-faults",
        ExecutionMode::Backfill,
        day(1, 1),
        day(4, 1),
        None,
    );
    let source = MemorySource::by_date(records(), |r: &Rec| r.day)
        .chunk_by(ChunkBy::Days(10))
        .batch_size(7);
    Scenario::new(
        m.approve("owner", at).unwrap(),
        Arc::new(Double),
        Arc::new(source),
        at,
    )
}

#[tokio::test]
async fn retry_and_resume_converge_to_the_uninterrupted_run() {
    let s = scenario();
    let clean = s.uninterrupted().await.unwrap();
    assert_eq!(clean.report.state, RunState::Published);
    assert_eq!(clean.report.output_rows, 180);
    for (fault, kind) in [
        (SinkFault::AtStageCall(2), FaultKind::Transient),
        (SinkFault::AtStageCall(1), FaultKind::Fatal),
        (SinkFault::AtBatch(5), FaultKind::Transient),
        (SinkFault::AtBatch(11), FaultKind::Fatal),
        // A crash between staging and the ledger's record of it.
        (SinkFault::AfterStage(3), FaultKind::Fatal),
        (SinkFault::AfterStage(0), FaultKind::Transient),
    ] {
        let out = s
            .check_sink_fault(fault, kind)
            .await
            .unwrap_or_else(|f| panic!("{fault:?}/{kind:?}: {f}"));
        assert_eq!(out.report.digests, clean.report.digests);
        if kind == FaultKind::Fatal {
            assert!(
                out.invocations >= 2,
                "{fault:?}: a fatal fault needs a resume"
            );
        }
    }
}

#[tokio::test]
async fn a_worker_dying_between_ledger_and_evidence_leaves_every_chunk_in_the_trail() {
    let s = scenario();
    for kind in [FaultKind::Fatal, FaultKind::Transient] {
        let out = s
            .check_store_fault(
                StoreFault::Evidence(backfill_core::store::EvidenceKind::ChunkStaged),
                kind,
            )
            .await
            .unwrap_or_else(|f| panic!("{kind:?}: {f}"));
        assert_eq!(out.report.state, RunState::Published);
        assert!(out.invocations >= 2, "the lost record needs a resume");
    }
    // Any other evidence write lost on the way (the eighth append, whatever it records) converges
    // with a complete trail too.
    let out = s
        .check_store_fault(StoreFault::AppendEvidence(7), FaultKind::Fatal)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out.report.state, RunState::Published);
}

#[tokio::test]
async fn a_fault_that_never_fires_is_reported() {
    let f = scenario()
        .check_sink_fault(SinkFault::AtStageCall(1_000), FaultKind::Fatal)
        .await
        .unwrap_err();
    assert!(matches!(f, PartialFailure::FaultNeverFired { .. }), "{f}");
}

#[tokio::test]
async fn a_sink_that_appends_on_restage_does_not_converge_after_a_crash() {
    let s = scenario().with_pair(|| {
        let sink = AppendingSink::new();
        let target = MemoryPublisher::new("testkit_target", sink.inner());
        let pair: Adapters<Rec> = (Arc::new(sink), Arc::new(target));
        pair
    });
    // Without faults it looks fine.
    s.uninterrupted().await.unwrap();
    let f = s
        .check_sink_fault(SinkFault::AfterStage(2), FaultKind::Fatal)
        .await
        .unwrap_err();
    // The doubled chunk fails the checksum validation: the run is rejected, not published.
    match &f {
        PartialFailure::StateDiverged {
            expected, actual, ..
        } => {
            assert_eq!(expected, &RunState::Published);
            assert_eq!(actual, &RunState::Rejected);
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn an_unknown_publish_outcome_is_inspected_and_published_once() {
    let out = scenario().check_unknown_publish_outcome().await.unwrap();
    assert_eq!(out.report.state, RunState::Published);
    assert!(out.invocations >= 2);
}

/// A publisher whose `inspect` (or `inspect_rollback`, with `true`) does not answer from the target.
#[derive(Debug)]
struct Forgetful(MemoryPublisher<Rec>, bool);

#[async_trait]
impl Publisher for Forgetful {
    fn descriptor(&self) -> SinkDescriptor {
        self.0.descriptor()
    }
    fn capabilities(&self) -> PublisherCapabilities {
        self.0.capabilities()
    }
    async fn publish(&self, req: PublishRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        self.0.publish(req).await
    }
    async fn inspect(&self, run_id: &RunId) -> backfill_core::Result<Option<PublishReceipt>> {
        if self.1 {
            self.0.inspect(run_id).await
        } else {
            Ok(None)
        }
    }
    async fn rollback(&self, req: RollbackRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        self.0.rollback(req).await
    }
    async fn inspect_rollback(
        &self,
        from: &RunId,
        to: &RunId,
    ) -> backfill_core::Result<Option<PublishReceipt>> {
        if self.1 {
            Ok(None)
        } else {
            self.0.inspect_rollback(from, to).await
        }
    }
}

impl TargetReader<Rec> for Forgetful {
    fn read_current<'a>(
        &'a self,
        p: &'a PartitionKey,
    ) -> BoxStream<'a, backfill_core::Result<Vec<Rec>>> {
        self.0.read_current(p)
    }
}

/// The scenario over a [`Forgetful`] target.
fn forgetful(rollbacks: bool) -> Scenario<Double> {
    scenario().with_pair(move || {
        let sink = Arc::new(MemorySink::new("s"));
        let target = Forgetful(MemoryPublisher::new("testkit_target", &sink), rollbacks);
        let pair: Adapters<Rec> = (sink, Arc::new(target));
        pair
    })
}

#[tokio::test]
async fn a_publisher_that_cannot_inspect_is_published_twice() {
    let s = forgetful(false);
    let f = s.check_unknown_publish_outcome().await.unwrap_err();
    match &f {
        PartialFailure::PublishedTwice { commits, calls } => {
            assert_eq!(commits, &2, "{f}");
            assert!(calls
                .iter()
                .any(|c| matches!(c, PublisherCall::Inspect { found: false, .. })));
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn a_publisher_named_after_another_target_is_refused_up_front() {
    let s = scenario().with_pair(|| {
        let sink = Arc::new(MemorySink::new("s"));
        let pair: Adapters<Rec> = (
            sink.clone(),
            Arc::new(MemoryPublisher::new("elsewhere", &sink)),
        );
        pair
    });
    let f = s.uninterrupted().await.unwrap_err();
    assert!(
        matches!(&f, PartialFailure::Baseline { error } if error.contains("`elsewhere`")),
        "{f}"
    );
}

fn rows() -> Vec<Rec> {
    records().into_iter().take(50).collect()
}

#[tokio::test]
async fn idempotent_staging_passes_on_memory_and_fails_on_appending() {
    let memory = MemorySink::<Rec>::new("s");
    check_idempotent_staging(&memory, &"bf-idem".into(), &rows())
        .await
        .unwrap();
    let f = check_idempotent_staging(&AppendingSink::new(), &"bf-idem".into(), &rows())
        .await
        .unwrap_err();
    assert_eq!(f.check, "idempotent_staging");
    assert!(f.details.contains("staging the chunk again"), "{f}");
}

#[tokio::test]
async fn a_batch_fault_reaches_the_wrapped_sink_as_a_failing_stream() {
    let inner = Arc::new(MemorySink::<Rec>::new("s"));
    let faulty = FaultySink::new(inner.clone(), SinkFault::AtBatch(2), FaultKind::Transient);
    let at = Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap();
    let ctx = TransformContext::fixed("bf-b", ExecutionMode::Backfill, at);
    let chunk = ChunkId::from("c0");
    let req = StageRequest {
        run_id: ctx.run_id(),
        chunk_id: &chunk,
        attempt: 1,
        lineage: ctx.lineage(),
    };
    let batches = || {
        let v: Vec<backfill_core::Result<Vec<Rec>>> =
            rows().chunks(10).map(|b| Ok(b.to_vec())).collect();
        futures::stream::iter(v).boxed()
    };
    let e = faulty.stage(req, batches()).await.unwrap_err();
    assert!(e.is_retryable());
    assert!(e.to_string().contains("batch 2"), "{e}");
    assert!(inner.chunk_rows(ctx.run_id(), &chunk).is_empty());
    // Fired once: the next attempt passes through.
    let ok = faulty.stage(req, batches()).await.unwrap();
    assert_eq!((ok.rows, faulty.fired(), faulty.stage_calls()), (50, 1, 2));
}

// ---- crashes inside publication and rollback ------------------------------------------------------

/// The scenario with another mutation mode.
fn scenario_with(mutation: Mutation) -> Scenario<Double> {
    let at = Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap();
    let mut m = valid_manifest(
        "bf-crash",
        ExecutionMode::Backfill,
        day(1, 1),
        day(4, 1),
        None,
    );
    m.target.mutation = Some(mutation);
    let source = MemorySource::by_date(records(), |r: &Rec| r.day).chunk_by(ChunkBy::Days(30));
    Scenario::new(
        m.approve("owner", at).unwrap(),
        Arc::new(Double),
        Arc::new(source),
        at,
    )
}

const MEMORY_MODES: [Mutation; 4] = [
    Mutation::ReplacePartitions,
    Mutation::AppendWithRunId,
    Mutation::ShadowSwap,
    Mutation::VersionedOutput,
];

#[tokio::test]
async fn a_publication_interrupted_in_any_window_converges_on_retry() {
    for mutation in MEMORY_MODES {
        let s = scenario_with(mutation.clone());
        for crash in Crash::ALL {
            let out = s
                .check_publish_crash(crash)
                .await
                .unwrap_or_else(|f| panic!("{} {crash:?}: {f}", mutation.name()));
            assert_eq!(out.report.state, RunState::Published);
            let error = out.last_error.unwrap_or_default();
            assert!(error.contains("injected fault"), "{crash:?}: {error}");
        }
    }
}

#[tokio::test]
async fn a_rollback_interrupted_in_any_window_converges_on_retry() {
    for mutation in MEMORY_MODES {
        let s = scenario_with(mutation.clone());
        for crash in Crash::ALL {
            let out = s
                .check_rollback_crash(crash)
                .await
                .unwrap_or_else(|f| panic!("{} {crash:?}: {f}", mutation.name()));
            // The base run is visible and accepted again.
            assert_eq!(out.report.state, RunState::Published);
            assert_eq!(out.report.run_id.as_str(), "bf-crash-base");
        }
    }
}

#[tokio::test]
async fn an_unknown_publication_outcome_without_inspect_publishes_twice() {
    let f = forgetful(false)
        .check_publish_crash(Crash::AfterTargetCommit)
        .await
        .unwrap_err();
    assert!(
        matches!(f, PartialFailure::PublishedTwice { commits: 2, .. }),
        "{f}"
    );
}

#[tokio::test]
async fn an_unknown_rollback_outcome_without_inspect_rolls_back_twice() {
    let f = forgetful(true)
        .check_rollback_crash(Crash::AfterTargetCommit)
        .await
        .unwrap_err();
    assert!(
        matches!(f, PartialFailure::RolledBackTwice { commits: 2, .. }),
        "{f}"
    );
}

#[tokio::test]
async fn a_store_fault_fires_at_the_chosen_call_then_passes_through() {
    let at = Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap();
    let run = RunId::from("bf-store");
    let note = |i: u32| backfill_core::store::EvidenceRecord::Note {
        name: format!("n{i}"),
        detail: serde_json::Value::Null,
    };
    let inner = Arc::new(MemoryStore::new());
    let store = FaultyStore::new(
        inner.clone(),
        StoreFault::AppendEvidence(2),
        FaultKind::Fatal,
    );
    let results: Vec<bool> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(store.append_evidence(&run, at, "t", &note(i)).await.is_ok());
        }
        v
    };
    assert_eq!(results, [true, true, false, true, true]);
    assert_eq!(inner.evidence(&run).await.unwrap().len(), 4);
    // After the commit: the record is there, the call fails.
    let store = FaultyStore::new(
        inner.clone(),
        StoreFault::Evidence(backfill_core::store::EvidenceKind::Note),
        FaultKind::Transient,
    )
    .after_commit();
    let e = store
        .append_evidence(&run, at, "t", &note(9))
        .await
        .unwrap_err();
    assert!(
        e.is_retryable() && e.to_string().contains("committed"),
        "{e}"
    );
    assert_eq!(inner.evidence(&run).await.unwrap().len(), 5);
    assert_eq!(store.fired(), 1);
}

/// A source whose reads wait until the gate opens (the first read tells the test it got there).
#[derive(Debug)]
struct Gated {
    inner: MemorySource<Rec>,
    reached: Arc<tokio::sync::Notify>,
    open: Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl BackfillSource<Rec> for Gated {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn plan(
        &self,
        m: &RunManifest,
    ) -> backfill_core::Result<backfill_core::plan::SourcePlan> {
        self.inner.plan(m).await
    }
    fn read(
        &self,
        chunk: &backfill_core::plan::PlannedChunk,
    ) -> BoxStream<'static, backfill_core::Result<Vec<Rec>>> {
        let (reached, open) = (self.reached.clone(), self.open.clone());
        let rows = self.inner.read(chunk);
        futures::stream::once(async move {
            reached.notify_one();
            drop(open.acquire().await);
        })
        .filter_map(|()| async { None })
        .chain(rows)
        .boxed()
    }
}

/// A worker killed between a chunk's ledger commit and its `chunk_staged` record while another
/// worker of the run is past its start (so no start-time recovery sees the loss): the other worker
/// validates the run with a complete trail, the record taken from the ledger before validation.
/// Found by the fault campaign as an evidence bundle that did not verify after such a kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_record_lost_by_a_killed_worker_is_restored_before_validation() {
    let at = Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap();
    let mut m = valid_manifest(
        "bf-heal",
        ExecutionMode::Backfill,
        day(1, 1),
        day(4, 1),
        None,
    );
    m.safety.manual_publish = true;
    // Two places run-wide, one worker in each process: A claims while B holds its first chunk.
    m.safety.limits.max_chunks_in_parallel = 2;
    let approved = m.approve("owner", at).unwrap();
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(MemorySink::new("staging"));
    let publisher = Arc::new(MemoryPublisher::new(
        approved.manifest().target.name.clone(),
        &sink,
    ));
    let source = || {
        MemorySource::by_date(records(), |r: &Rec| r.day)
            .chunk_by(ChunkBy::Days(10))
            .batch_size(7)
    };
    let executor =
        |store: Arc<dyn RunStore>, source: Arc<dyn BackfillSource<Rec>>, worker: &str| {
            Executor::builder(
                Control::new(store).with_target(publisher.clone()).unwrap(),
                source,
                Arc::new(Double),
                sink.clone(),
                publisher.clone(),
            )
            .options(RunnerOptions::worker(worker).with_local_workers(1))
            .build()
        };
    // Worker B starts first and waits inside its first chunk: its start is behind it.
    let reached = Arc::new(tokio::sync::Notify::new());
    let open = Arc::new(tokio::sync::Semaphore::new(0));
    let gated = Arc::new(Gated {
        inner: source(),
        reached: reached.clone(),
        open: open.clone(),
    });
    let b = executor(store.clone(), gated, "b");
    b.control().submit(&approved).await.unwrap();
    let id = approved.run_id().clone();
    let b_task = tokio::spawn(async move { b.run(&id).await });
    reached.notified().await;
    // Worker A stages another chunk, commits it to the ledger and stops for good before its
    // `chunk_staged` record; then it is killed.
    let halting = Arc::new(
        FaultyStore::new(
            store.clone(),
            StoreFault::Evidence(backfill_core::store::EvidenceKind::ChunkStaged),
            FaultKind::Fatal,
        )
        .halting(),
    );
    let a = executor(halting.clone(), Arc::new(source()), "a");
    let id = approved.run_id().clone();
    let a_task = tokio::spawn(async move { a.run(&id).await });
    while halting.fired() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    a_task.abort();
    open.add_permits(1_000);
    let report = b_task.await.unwrap().unwrap();
    assert_eq!(report.state, RunState::Validated);
    let control = Control::new(store.clone());
    let bundle = control.export(approved.run_id()).await.unwrap();
    let v = bundle.verify();
    assert!(v.passed(), "{:?}", v.failures());
}
