//! Fault injection: retry and resume converge to the uninterrupted run; recovery inspects the target
//! before publishing again; staging is idempotent. Broken sinks and publishers are caught.
#![allow(clippy::clone_on_ref_ptr)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::ids::{ChunkId, PartitionKey, RunId};
use backfill_core::memory::{ChunkBy, MemoryPublisher, MemorySink, MemorySource};
use backfill_core::prelude::*;
use backfill_core::publish::{PublishRequest, RollbackRequest};
use backfill_core::sink::StageRequest;
use backfill_testkit::faults::{FaultKind, FaultySink, PublisherCall, SinkFault};
use backfill_testkit::idempotency::check_idempotent_staging;
use backfill_testkit::partial_failure::{PartialFailure, Scenario};
use backfill_testkit::strategy::{valid_manifest, Keyed};
use chrono::{NaiveDate, TimeZone, Utc};
use common::AppendingSink;
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

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).unwrap()
}

fn records() -> Vec<Rec> {
    (0..90u64)
        .flat_map(|i| {
            ["a", "b"].map(|k| Keyed {
                key: k.to_owned(),
                day: day(1, 1) + chrono::Days::new(i),
                value: i as i64,
            })
        })
        .collect()
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
async fn a_fault_that_never_fires_is_reported() {
    let f = scenario()
        .check_sink_fault(SinkFault::AtStageCall(1_000), FaultKind::Fatal)
        .await
        .unwrap_err();
    assert!(matches!(f, PartialFailure::FaultNeverFired { .. }), "{f}");
}

#[tokio::test]
async fn a_sink_that_appends_on_restage_does_not_converge_after_a_crash() {
    let s = scenario().with_sink(|| Arc::new(AppendingSink::default()));
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
            assert_eq!(*expected, RunState::Published);
            assert_eq!(*actual, RunState::Rejected);
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

/// A publisher whose `inspect` does not answer from the target.
#[derive(Debug)]
struct Forgetful(MemoryPublisher<Rec>);

#[async_trait]
impl Publisher<Rec> for Forgetful {
    fn descriptor(&self) -> SinkDescriptor {
        self.0.descriptor()
    }
    async fn publish(
        &self,
        req: PublishRequest<'_>,
        staged: &dyn StagingSink<Rec>,
    ) -> backfill_core::Result<PublishReceipt> {
        self.0.publish(req, staged).await
    }
    async fn inspect(&self, _: &RunId) -> backfill_core::Result<Option<PublishReceipt>> {
        Ok(None)
    }
    async fn rollback(&self, req: RollbackRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        self.0.rollback(req).await
    }
    fn read_current<'a>(
        &'a self,
        p: &'a PartitionKey,
    ) -> BoxStream<'a, backfill_core::Result<Vec<Rec>>> {
        self.0.read_current(p)
    }
}

#[tokio::test]
async fn a_publisher_that_cannot_inspect_is_published_twice() {
    let s = scenario().with_publisher(|| Arc::new(Forgetful(MemoryPublisher::new("t"))));
    let f = s.check_unknown_publish_outcome().await.unwrap_err();
    match &f {
        PartialFailure::PublishedTwice { commits, calls } => {
            assert_eq!(*commits, 2, "{f}");
            assert!(calls
                .iter()
                .any(|c| matches!(c, PublisherCall::Inspect { found: false, .. })));
        }
        other => panic!("unexpected {other}"),
    }
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
    let f = check_idempotent_staging(&AppendingSink::default(), &"bf-idem".into(), &rows())
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
