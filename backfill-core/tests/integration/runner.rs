//! The runner end to end over the in-memory implementations.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use backfill_core::memory::{MemoryPublisher, MemorySink};
use backfill_core::prelude::*;
use backfill_core::runner::{CancelHandle, ProgressListener, RetryPolicy, RunEvent};
use backfill_core::store::{ChunkStatus, EvidenceKind};
use common::*;

#[tokio::test]
async fn publishes_with_evidence_and_recorded_transitions() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let approved = approve(manifest("bf-001"));
    runner.control().submit(&approved).await.unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();

    assert_eq!(report.state, RunState::Published);
    assert_eq!(report.chunks_total, 3);
    assert_eq!(report.chunks_done, 3);
    assert_eq!(report.input_records, 270);
    assert_eq!(report.output_rows, 270);
    assert_eq!(report.digests.0.len(), 3);
    let receipt = report.receipt.expect("receipt");
    assert_eq!(receipt.rows, 270);
    assert!(report
        .validations
        .iter()
        .any(|v| v.validator == "digest_matches_ledger" && v.verdict == Verdict::Pass));

    // Visible output equals what the ledger recorded, with lineage.
    let visible = parts.publisher.snapshot();
    let rows: Vec<Row> = visible.values().flatten().cloned().collect();
    assert_eq!(rows.len(), 270);
    assert!(rows.iter().all(|r| r.run_id == "bf-001"));
    assert_eq!(PartitionDigests::of_rows(&rows), report.digests);

    let pointer = parts
        .store
        .accepted("amounts_daily")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pointer.run_id.as_str(), "bf-001");

    // Each transition says who, when (injected clock) and why.
    let ts = parts.store.transitions(approved.run_id()).await.unwrap();
    let path: Vec<_> = ts.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        path,
        vec![
            (RunState::Draft, RunState::Approved),
            (RunState::Approved, RunState::Running),
            (RunState::Running, RunState::Staged),
            (RunState::Staged, RunState::Validated),
            (RunState::Validated, RunState::Published),
        ]
    );
    assert_eq!(ts[0].by, "owner");
    assert!(ts.iter().all(|t| t.at == at() && !t.reason.is_empty()));

    let kinds: Vec<_> = parts
        .store
        .evidence(approved.run_id())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind())
        .collect();
    for k in [
        EvidenceKind::ManifestStored,
        EvidenceKind::Approved,
        EvidenceKind::PlanResolved,
        EvidenceKind::ChunkStaged,
        EvidenceKind::Validation,
        EvidenceKind::Published,
        EvidenceKind::PointerMoved,
    ] {
        assert!(kinds.contains(&k), "missing evidence {k:?}");
    }
}

async fn staged_digests(parts: &Parts, run: &str) -> PartitionDigests {
    let chunks = parts.store.chunks(&RunId::from(run)).await.unwrap();
    let mut rows = Vec::new();
    for c in &chunks {
        rows.extend(parts.sink.chunk_rows(&RunId::from(run), &c.chunk_id));
    }
    PartitionDigests::of_rows(&rows)
}

#[tokio::test]
async fn sink_failure_at_chunk_k_then_resume_matches_uninterrupted_run() {
    // Uninterrupted reference.
    let reference = Parts::new();
    let r = reference
        .runner(Arc::new(source()), Scale::default())
        .build();
    let approved = approve(manifest("bf-002"));
    r.control().submit(&approved).await.unwrap();
    r.run(approved.run_id()).await.unwrap();
    let expected = staged_digests(&reference, "bf-002").await;

    for k in 0..3u32 {
        let parts = Parts::new();
        let src = Arc::new(source());
        let failing = Arc::new(FailingSink::new(parts.sink.clone(), k, 1, false));
        let runner = parts
            .runner_with_sink(src.clone(), Scale::default(), failing)
            .build();
        runner.control().submit(&approved).await.unwrap();
        let err = runner.run(approved.run_id()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
        assert!(
            err.to_string().contains("bf-002") && err.to_string().contains("chunk"),
            "{err}"
        );
        assert_eq!(
            parts
                .store
                .run(approved.run_id())
                .await
                .unwrap()
                .unwrap()
                .state,
            RunState::Failed
        );
        let reads_before = src.read_log().len();
        assert_eq!(reads_before, k as usize + 1);

        // Resume with a healthy sink over the same store and staging.
        let runner = parts.runner(src.clone(), Scale::default()).build();
        let report = runner.run(approved.run_id()).await.unwrap();
        assert_eq!(report.state, RunState::Published);
        let log = src.read_log();
        let plan = parts.store.plan(approved.run_id()).await.unwrap().unwrap();
        for (i, chunk) in plan.chunks.iter().enumerate() {
            let reads = log.iter().filter(|r| **r == chunk.range).count();
            let want = if i == k as usize { 2 } else { 1 };
            assert_eq!(reads, want, "k={k}: chunk {i} read {reads} times");
        }
        assert_eq!(staged_digests(&parts, "bf-002").await, expected, "k={k}");
        assert_eq!(report.digests, expected);
    }
}

#[tokio::test]
async fn crash_mid_chunk_resumes_at_that_chunk() {
    let parts = Parts::new();
    let approved = approve(manifest("bf-003"));
    // A sink that never finishes chunk 1: the process "dies" while staging it.
    #[derive(Debug)]
    struct Hang(Arc<MemorySink<Row>>, std::sync::atomic::AtomicU32);
    #[async_trait::async_trait]
    impl StagingSink<Row> for Hang {
        fn descriptor(&self) -> SinkDescriptor {
            self.0.descriptor()
        }
        async fn stage(
            &self,
            req: backfill_core::sink::StageRequest<'_>,
            rows: futures::stream::BoxStream<'_, backfill_core::Result<Vec<Row>>>,
        ) -> backfill_core::Result<backfill_core::sink::StageReceipt> {
            if self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                futures::future::pending::<()>().await;
            }
            self.0.stage(req, rows).await
        }
        fn read_staged<'a>(
            &'a self,
            run_id: &'a RunId,
        ) -> futures::stream::BoxStream<'a, backfill_core::Result<Vec<Row>>> {
            self.0.read_staged(run_id)
        }
        async fn discard(&self, run_id: &RunId) -> backfill_core::Result<()> {
            self.0.discard(run_id).await
        }
    }
    let src = Arc::new(source());
    let hang = Arc::new(Hang(parts.sink.clone(), Default::default()));
    let runner = parts
        .runner_with_sink(src.clone(), Scale::default(), hang)
        .build();
    runner.control().submit(&approved).await.unwrap();
    let crashed =
        tokio::time::timeout(Duration::from_millis(300), runner.run(approved.run_id())).await;
    assert!(crashed.is_err(), "the run should still be hanging");
    drop(runner);
    let chunks = parts.store.chunks(approved.run_id()).await.unwrap();
    assert_eq!(chunks[0].status, ChunkStatus::Done);
    assert_eq!(chunks[1].status, ChunkStatus::Claimed);
    assert_eq!(
        parts
            .store
            .run(approved.run_id())
            .await
            .unwrap()
            .unwrap()
            .state,
        RunState::Running
    );

    // A restarted process with the same worker id takes its lease back at once.
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    let log = src.read_log();
    let plan = parts.store.plan(approved.run_id()).await.unwrap().unwrap();
    assert_eq!(
        log.iter().filter(|r| **r == plan.chunks[0].range).count(),
        1,
        "chunk 0 re-read"
    );
    assert_eq!(
        log.iter().filter(|r| **r == plan.chunks[1].range).count(),
        2
    );
    let chunks = parts.store.chunks(approved.run_id()).await.unwrap();
    assert_eq!(chunks[1].attempts, 2);
    assert_eq!(staged_digests(&parts, "bf-003").await, report.digests);
}

#[tokio::test]
async fn transient_errors_are_retried_with_backoff() {
    let parts = Parts::new();
    let failing = Arc::new(FailingSink::new(parts.sink.clone(), 1, 2, true));
    let runner = parts
        .runner_with_sink(Arc::new(source()), Scale::default(), failing.clone())
        .options(RunnerOptions::default().with_retry(RetryPolicy::new(3, Duration::from_millis(5))))
        .build();
    let approved = approve(manifest("bf-004"));
    runner.control().submit(&approved).await.unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    let chunks = parts.store.chunks(approved.run_id()).await.unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.attempts).collect::<Vec<_>>(),
        vec![1, 3, 1]
    );
    assert_eq!(
        failing.failures.load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    // With fewer attempts than failures, the run fails and says where.
    let parts = Parts::new();
    let failing = Arc::new(FailingSink::new(parts.sink.clone(), 0, 5, true));
    let runner = parts
        .runner_with_sink(Arc::new(source()), Scale::default(), failing)
        .options(RunnerOptions::default().with_retry(RetryPolicy::new(2, Duration::from_millis(1))))
        .build();
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(matches!(err, Error::Chunk { attempt: 2, .. }), "{err}");
}

#[tokio::test]
async fn an_adapter_pause_pauses_the_run_and_running_again_resumes_it() {
    let reference = Parts::new();
    let r = reference
        .runner(Arc::new(source()), Scale::default())
        .build();
    let approved = approve(manifest("bf-pause"));
    r.control().submit(&approved).await.unwrap();
    r.run(approved.run_id()).await.unwrap();
    let expected = staged_digests(&reference, "bf-pause").await;

    let parts = Parts::new();
    let src = Arc::new(source());
    // Chunk 1 asks to pause, more often than the retry policy would retry a transient error.
    let pausing = Arc::new(FailingSink::new(parts.sink.clone(), 1, 1, true).pausing());
    let runner = parts
        .runner_with_sink(src.clone(), Scale::default(), pausing)
        .options(RunnerOptions::default().with_retry(RetryPolicy::new(5, Duration::from_millis(1))))
        .build();
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert_eq!(err.root().kind(), ErrorKind::Paused, "{err}");
    assert!(
        err.to_string().contains("bf-pause") && err.to_string().contains("vendor asks to wait"),
        "{err}"
    );
    let report = runner.status(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Paused);
    let chunks = parts.store.chunks(approved.run_id()).await.unwrap();
    assert_eq!(chunks[0].status, ChunkStatus::Done);
    assert_ne!(chunks[1].status, ChunkStatus::Done);
    let transitions = parts.store.transitions(approved.run_id()).await.unwrap();
    let last = transitions.last().unwrap();
    assert_eq!((last.from, last.to), (RunState::Running, RunState::Paused));
    assert!(
        last.reason.contains("vendor asks to wait"),
        "{}",
        last.reason
    );

    // Running it again resumes it: the done chunk is not read again, the paused one is.
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    assert_eq!(staged_digests(&parts, "bf-pause").await, expected);
    let plan = parts.store.plan(approved.run_id()).await.unwrap().unwrap();
    let log = src.read_log();
    assert_eq!(
        log.iter().filter(|r| **r == plan.chunks[0].range).count(),
        1
    );
    assert_eq!(
        log.iter().filter(|r| **r == plan.chunks[1].range).count(),
        2
    );
}

#[tokio::test]
async fn a_conflict_that_is_not_a_lost_lease_fails_the_run_instead_of_waiting() {
    let parts = Parts::new();
    let failing = Arc::new(FailingSink::new(parts.sink.clone(), 1, 1, false).conflicting());
    let runner = parts
        .runner_with_sink(Arc::new(source()), Scale::default(), failing)
        .build();
    let approved = approve(manifest("bf-conflict"));
    runner.control().submit(&approved).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), runner.run(approved.run_id()))
        .await
        .expect("the run ends (it used to retry forever)")
        .unwrap_err();
    assert!(matches!(err.root(), Error::Conflict { .. }), "{err}");
    assert_eq!(
        runner.status(approved.run_id()).await.unwrap().state,
        RunState::Failed
    );
}

#[tokio::test]
async fn tampered_manifest_is_refused_before_anything_runs() {
    let parts = Parts::new();
    let src = Arc::new(source());
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let approved = approve(manifest("bf-005"));
    runner.control().submit(&approved).await.unwrap();
    let stored = parts
        .store
        .manifest(approved.run_id())
        .await
        .unwrap()
        .unwrap();
    let widened = stored.json.replace("\"2025-04-01\"", "\"2025-12-01\"");
    assert_ne!(widened, stored.json);
    parts
        .store
        .overwrite_manifest_json(approved.run_id(), &widened)
        .unwrap();

    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(matches!(err, Error::Tampered { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Refused);
    assert!(err.to_string().contains("bf-005"));
    assert!(src.read_log().is_empty());
    assert!(parts.store.plan(approved.run_id()).await.unwrap().is_none());
}

#[tokio::test]
async fn unapproved_and_self_approved_runs_are_refused() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let draft = manifest("bf-006");
    runner.control().submit_draft(&draft).await.unwrap();
    let err = runner.run(&draft.run_id).await.unwrap_err();
    assert!(
        matches!(err, Error::NotApproved { version: 1, .. }),
        "{err}"
    );

    let err = runner
        .control()
        .approve(&draft.run_id, "data-platform")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SelfApproval { .. }), "{err}");
    let err = draft.clone().approve("data-platform", at()).unwrap_err();
    assert!(matches!(err, Error::SelfApproval { .. }), "{err}");

    let first = runner
        .control()
        .approve(&draft.run_id, "owner")
        .await
        .unwrap();
    // The same owner again (a retry, a second worker of one job): the approval stands, once.
    let again = runner
        .control()
        .approve(&draft.run_id, "owner")
        .await
        .unwrap();
    assert_eq!(again, first);
    let approvals = runner
        .control()
        .store()
        .evidence(&draft.run_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            matches!(
                e.record,
                backfill_core::evidence::EvidenceRecord::Approved(_)
            )
        })
        .count();
    assert_eq!(approvals, 1);
    // Anyone else cannot approve an approved manifest.
    let err = runner
        .control()
        .approve(&draft.run_id, "another-owner")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Immutable { .. }), "{err}");
    assert_eq!(
        runner.run(&draft.run_id).await.unwrap().state,
        RunState::Published
    );
}

#[tokio::test]
async fn side_effecting_sink_is_refused_in_backfill_mode() {
    let parts = Parts::new();
    let src = Arc::new(source());
    let live = Arc::new(MemoryPublisher::<Row>::with_descriptor(
        SinkDescriptor::side_effecting("alerts-topic", "kafka_topic"),
        &parts.sink,
    ));
    let control = Control::new(parts.store.clone())
        .with_clock(Arc::new(FixedClock(at())))
        .with_target(live.clone())
        .unwrap();
    let runner = Executor::builder(
        control,
        src.clone(),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        live.clone(),
    )
    .build();
    let alerts = |id: &str| {
        let mut m = manifest(id);
        m.target.name = "alerts-topic".into();
        m
    };
    let approved = approve(alerts("bf-007"));
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    match &err {
        Error::ForbiddenSink { sink, mode, .. } => {
            assert_eq!(sink, "alerts-topic");
            assert_eq!(*mode, ExecutionMode::Backfill);
        }
        other => panic!("expected ForbiddenSink, got {other}"),
    }
    assert!(
        src.read_log().is_empty(),
        "nothing may be read before the policy check"
    );

    // Allowed when the manifest names the sink.
    let mut m = alerts("bf-008");
    m.safety.side_effects = Some(SideEffectPolicy {
        allowed: true,
        allowed_sinks: vec!["alerts-topic".into()],
    });
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    assert_eq!(
        runner.run(approved.run_id()).await.unwrap().state,
        RunState::Published
    );
}

#[tokio::test]
async fn max_rows_expected_stops_the_run() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-009");
    m.safety.max_rows_expected = Some(100);
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(
        matches!(err.root(), Error::LimitExceeded { max: 100, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert_eq!(
        parts
            .store
            .run(approved.run_id())
            .await
            .unwrap()
            .unwrap()
            .state,
        RunState::Failed
    );
    assert!(parts.publisher.snapshot().is_empty());
}

#[derive(Debug)]
struct CancelAfterFirstChunk(CancelHandle);

impl ProgressListener for CancelAfterFirstChunk {
    fn event(&self, _run: &RunId, event: &RunEvent) {
        if matches!(event, RunEvent::ChunkStaged { done: 1, .. }) {
            self.0.cancel();
        }
    }
}

#[tokio::test]
async fn cancel_stops_between_chunks() {
    let parts = Parts::new();
    let cancel = CancelHandle::default();
    let runner = parts
        .runner(Arc::new(source()), Scale::default())
        .cancel_with(cancel.clone())
        .progress(Arc::new(CancelAfterFirstChunk(cancel)))
        .build();
    let approved = approve(manifest("bf-010"));
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let rec = parts.store.run(approved.run_id()).await.unwrap().unwrap();
    assert_eq!(rec.state, RunState::Cancelled);
    let done = parts
        .store
        .chunks(approved.run_id())
        .await
        .unwrap()
        .iter()
        .filter(|c| c.status == ChunkStatus::Done)
        .count();
    assert_eq!(done, 1);
}

/// A row whose canonical encoding fails in February: the run must fail, not digest a partial row.
#[derive(Debug, Clone)]
struct Fragile {
    month: String,
}

impl serde::Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.month == "2025-02" {
            return Err(serde::ser::Error::custom("february has no canonical form"));
        }
        s.serialize_str(&self.month)
    }
}

impl OutputRow for Fragile {
    fn partition(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.month)
    }
}

#[derive(Debug)]
struct MakeFragile;

impl DeterministicTransform for MakeFragile {
    type Input = Event;
    type Output = Fragile;

    fn name(&self) -> &str {
        "scale"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    fn apply(
        &self,
        e: &Event,
        _ctx: &TransformContext,
        out: &mut Vec<Fragile>,
    ) -> Result<(), TransformError> {
        out.push(Fragile {
            month: e.day.format("%Y-%m").to_string(),
        });
        Ok(())
    }
}

#[tokio::test]
async fn a_row_that_cannot_be_encoded_fails_the_run() {
    let store = Arc::new(backfill_core::memory::MemoryStore::new());
    let sink = Arc::new(MemorySink::<Fragile>::new("staging"));
    let publisher = Arc::new(MemoryPublisher::<Fragile>::new("amounts_daily", &sink));
    let control = Control::new(store.clone())
        .with_target(publisher.clone())
        .unwrap();
    let runner = Executor::builder(
        control,
        Arc::new(source()),
        Arc::new(MakeFragile),
        sink,
        publisher.clone(),
    )
    .build();
    let approved = approve(manifest("bf-encode"));
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(matches!(err.root(), Error::Encode { .. }), "{err}");
    assert!(
        err.to_string().contains("february has no canonical form"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
    let run = store.run(approved.run_id()).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Failed);
    // January was digested and recorded; February never was.
    let chunks = store.chunks(approved.run_id()).await.unwrap();
    assert!(chunks
        .iter()
        .filter(|c| c.status == ChunkStatus::Done)
        .all(|c| !c.digests.0.contains_key("2025-02")));
    assert!(publisher.snapshot().is_empty());
}
