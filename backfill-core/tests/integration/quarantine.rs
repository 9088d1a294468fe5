//! Poison records: a record the transform refuses for good is quarantined with its position, under
//! the manifest's per-chunk budget, and the rest of the chunk is published; past the budget the
//! chunk fails.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use backfill_core::evidence::{EvidenceRecord, QuarantinedRecord};
use backfill_core::prelude::*;
use backfill_core::telemetry;
use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// [`Scale`], except that it refuses events with a negative amount, after emitting part of their
/// output (which must not survive).
#[derive(Debug)]
struct Picky(Scale);

impl DeterministicTransform for Picky {
    type Input = Event;
    type Output = Row;

    fn name(&self) -> &str {
        self.0.name()
    }

    fn version(&self) -> &str {
        self.0.version()
    }

    fn apply(
        &self,
        e: &Event,
        ctx: &TransformContext,
        out: &mut Vec<Row>,
    ) -> Result<(), TransformError> {
        self.0.apply(e, ctx, out)?;
        if e.cents < 0 {
            return Err(TransformError::new("amount is negative")
                .for_input(format!("events/{}/{}", e.account, e.day)));
        }
        Ok(())
    }
}

/// The fixture's events with `poison` of them (in February) made malformed.
fn poisoned(poison: usize) -> Vec<Event> {
    let mut events = events();
    for e in events
        .iter_mut()
        .filter(|e| e.day.format("%m").to_string() == "02")
        .take(poison)
    {
        e.cents = -1;
    }
    events
}

fn runner(parts: &Parts, events: Vec<Event>) -> Executor<Picky> {
    let source = backfill_core::memory::MemorySource::by_date(events, |e: &Event| e.day)
        .batch_size(16)
        .snapshot("s-1");
    Executor::builder(
        parts.control(),
        Arc::new(source),
        Arc::new(Picky(Scale::default())),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .build()
}

fn quarantined(evidence: &[backfill_core::store::Evidence]) -> Vec<QuarantinedRecord> {
    evidence
        .iter()
        .flat_map(|e| match &e.record {
            EvidenceRecord::ChunkStaged { quarantined, .. } => quarantined.clone(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_malformed_record_is_quarantined_and_the_rest_of_its_chunk_is_published() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let parts = Parts::new();
    let (report, evidence) = metrics::with_local_recorder(&recorder, || {
        rt().block_on(async {
            let runner = runner(&parts, poisoned(2));
            let mut m = manifest("bf-poison");
            m.safety.max_rejected_per_chunk = 5;
            let approved = approve(m);
            runner.control().submit(&approved).await.unwrap();
            let report = runner.run(approved.run_id()).await.unwrap();
            let evidence = parts.store.evidence(approved.run_id()).await.unwrap();
            (report, evidence)
        })
    });
    assert_eq!(report.state, RunState::Published);
    // 270 events, 2 refused: their output (emitted before the refusal) is not staged.
    assert_eq!(report.input_records, 270);
    assert_eq!(report.output_rows, 268);
    let q = quarantined(&evidence);
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(
        q.iter()
            .map(|r| r.input.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["events/A-1/2025-02-01", "events/B-2/2025-02-01"]
    );
    assert_eq!(q[0].ordinal, 0, "the first record of February's chunk");
    assert_eq!(q[1].ordinal, 1);
    assert!(q.iter().all(|r| r.error == "amount is negative"));
    let published = parts.publisher.snapshot();
    let feb = &published["2025-02"];
    assert_eq!(feb.len(), 28 * 3 - 2);
    assert!(feb.iter().all(|r| r.cents >= 0));
    let rejected: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == telemetry::REJECTED_RECORDS_TOTAL)
        .map(|(.., v)| match v {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum();
    assert_eq!(rejected, 2);
}

#[tokio::test]
async fn over_the_budget_the_chunk_fails_naming_it() {
    let parts = Parts::new();
    let runner = runner(&parts, poisoned(3));
    let mut m = manifest("bf-poison-over");
    m.safety.max_rejected_per_chunk = 2;
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert_eq!(err.root().kind(), ErrorKind::Limit, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("bf-poison-over") && text.contains("max_rejected_per_chunk"),
        "{text}"
    );
    assert_eq!(
        runner.status(approved.run_id()).await.unwrap().state,
        RunState::Failed
    );
    assert!(parts.publisher.snapshot().is_empty(), "nothing published");
}

#[tokio::test]
async fn without_a_budget_the_first_malformed_record_fails_the_chunk() {
    let parts = Parts::new();
    let runner = runner(&parts, poisoned(1));
    let approved = approve(manifest("bf-poison-none"));
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(matches!(err.root(), Error::Transform { .. }), "{err}");
    assert!(err.to_string().contains("events/A-1/2025-02-01"), "{err}");
}

#[tokio::test]
async fn the_quarantine_is_the_same_on_a_rerun_and_keeps_digests_stable() {
    // The same run executed twice from scratch (two fresh stores): the same records quarantined,
    // and the same output digests, partition by partition.
    let mut digests = Vec::new();
    let mut lists = Vec::new();
    for _ in 0..2 {
        let parts = Parts::new();
        let runner = runner(&parts, poisoned(4));
        let mut m = manifest("bf-poison-rerun");
        m.safety.max_rejected_per_chunk = 4;
        let approved = approve(m);
        runner.control().submit(&approved).await.unwrap();
        let report = runner.run(approved.run_id()).await.unwrap();
        digests.push(report.digests.clone());
        let evidence = parts.store.evidence(approved.run_id()).await.unwrap();
        lists.push(quarantined(&evidence));
    }
    assert_eq!(lists[0], lists[1]);
    assert_eq!(lists[0].len(), 4);
    assert_eq!(digests[0], digests[1]);
    assert!(!digests[0].0.is_empty());
}
