//! What planning resolved travels with the plan: a resumed worker reads each chunk from the state
//! persisted at planning time, never by resolving again.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backfill_core::plan::{ChunkSpec, PlannedChunk, SourcePlan, SourceState};
use backfill_core::prelude::*;
use common::*;
use futures::stream::{self, BoxStream, StreamExt};

/// A source whose "current" snapshot moves: each instance resolves its own generation, and `read`
/// serves the generation named in the chunk's state.
#[derive(Debug)]
struct Moving {
    generation: u32,
    reads: Arc<Mutex<Vec<u32>>>,
    fail_after: Option<usize>,
}

#[async_trait]
impl BackfillSource<Event> for Moving {
    fn name(&self) -> &str {
        "moving"
    }

    async fn plan(&self, m: &RunManifest) -> backfill_core::Result<SourcePlan> {
        let Some(InputRange::Dates { from, .. }) = &m.source.range else {
            unreachable!("the fixture's range is dates")
        };
        let mut chunks = Vec::new();
        for month in 0..3u32 {
            let start = from.checked_add_months(chrono::Months::new(month)).unwrap();
            let end = start.checked_add_months(chrono::Months::new(1)).unwrap();
            chunks.push(
                ChunkSpec::new(
                    InputRange::Dates {
                        from: start,
                        to_exclusive: end,
                    },
                    start.format("%Y-%m").to_string(),
                )
                .with_state(SourceState::of(&self.generation)?),
            );
        }
        Ok(SourcePlan {
            snapshot: Some(format!("gen-{}", self.generation)),
            resolved_from: Some("s-1".into()),
            chunks,
        })
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, backfill_core::Result<Vec<Event>>> {
        let generation: u32 = match chunk.state.parse() {
            Ok(g) => g,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let mut reads = self.reads.lock().unwrap();
        reads.push(generation);
        if self.fail_after.is_some_and(|n| reads.len() > n) {
            return stream::once(async { Err(Error::adapter("test", "worker lost")) }).boxed();
        }
        let InputRange::Dates { from, to_exclusive } = chunk.range else {
            unreachable!()
        };
        let rows: Vec<Event> = events()
            .into_iter()
            .filter(|e| e.day >= from && e.day < to_exclusive)
            .map(|mut e| {
                e.cents += i64::from(generation);
                e
            })
            .collect();
        stream::once(async move { Ok(rows) }).boxed()
    }
}

#[tokio::test]
async fn a_resumed_worker_reads_the_state_planned_by_the_first() {
    let parts = Parts::new();
    let approved = approve(manifest("bf-state"));
    parts.control().submit(&approved).await.unwrap();
    let reads = Arc::new(Mutex::new(Vec::new()));
    // The first worker plans at generation 7 and dies after one chunk.
    let first = parts
        .runner_with_sink(Arc::new(source()), Scale::default(), parts.sink.clone())
        .build();
    let first =
        Executor::builder(
            first.control().clone(),
            Arc::new(Moving {
                generation: 7,
                reads: reads.clone(),
                fail_after: Some(1),
            }),
            Arc::new(Scale::default()),
            parts.sink.clone(),
            parts.publisher.clone(),
        )
        .options(RunnerOptions::worker("first").with_retry(
            backfill_core::runner::RetryPolicy::new(1, std::time::Duration::ZERO),
        ))
        .build();
    assert!(first.run(approved.run_id()).await.is_err());
    // Another worker, whose source would resolve generation 9 today, resumes.
    let second = Executor::builder(
        parts.control(),
        Arc::new(Moving {
            generation: 9,
            reads: reads.clone(),
            fail_after: None,
        }),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .options(RunnerOptions::worker("second"))
    .build();
    let report = second.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    assert!(
        reads.lock().unwrap().iter().all(|g| *g == 7),
        "every read used the planned generation: {:?}",
        reads.lock().unwrap()
    );
    let plan = parts.store.plan(approved.run_id()).await.unwrap().unwrap();
    assert_eq!(plan.snapshot.as_deref(), Some("gen-7"));
    assert_eq!(plan.resolved_from.as_deref(), Some("s-1"));
}

/// A source that says what each chunk's read stood on.
#[derive(Debug)]
struct Attesting(backfill_core::memory::MemorySource<Event>);

#[async_trait]
impl BackfillSource<Event> for Attesting {
    fn name(&self) -> &str {
        "attesting"
    }

    async fn plan(&self, m: &RunManifest) -> backfill_core::Result<SourcePlan> {
        self.0.plan(m).await
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, backfill_core::Result<Vec<Event>>> {
        self.0.read(chunk)
    }

    async fn chunk_evidence(
        &self,
        chunk: &PlannedChunk,
    ) -> backfill_core::Result<Option<serde_json::Value>> {
        Ok(Some(
            serde_json::json!({ "capture": format!("cap-{}", chunk.label) }),
        ))
    }
}

#[tokio::test]
async fn what_a_source_says_about_a_chunk_is_in_its_staged_evidence() {
    let parts = Parts::new();
    let runner = Executor::builder(
        parts.control(),
        Arc::new(Attesting(source())),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .build();
    let approved = approve(manifest("bf-attest"));
    runner.control().submit(&approved).await.unwrap();
    runner.run(approved.run_id()).await.unwrap();
    let plan = parts.store.plan(approved.run_id()).await.unwrap().unwrap();
    let staged: Vec<(ChunkId, serde_json::Value)> = parts
        .store
        .evidence(approved.run_id())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.record {
            backfill_core::evidence::EvidenceRecord::ChunkStaged {
                chunk_id, source, ..
            } => Some((chunk_id, source.expect("the source's evidence"))),
            _ => None,
        })
        .collect();
    assert_eq!(staged.len(), plan.chunks.len());
    for chunk in &plan.chunks {
        let (_, v) = staged.iter().find(|(id, _)| *id == chunk.id).unwrap();
        assert_eq!(v["capture"], format!("cap-{}", chunk.label));
    }
    // And it survives the store's typed round trip into the exported bundle.
    let bundle = runner.control().export(approved.run_id()).await.unwrap();
    assert!(bundle.verify().passed(), "{:?}", bundle.verify());
}
