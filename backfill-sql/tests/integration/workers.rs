//! Four workers with their own pools share one run; one is killed mid-chunk.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::manifest::{OffsetRange, SideEffectPolicy};
use backfill_core::memory::MemorySource;
use backfill_core::prelude::*;
use backfill_core::sink::{StageReceipt, StageRequest};
use backfill_core::store::ChunkStatus;
use backfill_sql::{Column, SqlPublisher, SqlRow, SqlSink, SqlStore, SqlType};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Out {
    id: String,
    part: String,
    n: i64,
}

impl OutputRow for Out {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.part)
    }
}

impl SqlRow for Out {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::Text),
        Column::new("part", SqlType::Text),
        Column::new("n", SqlType::BigInt),
    ];
    const PARTITION_COLUMN: &'static str = "part";
}

#[derive(Debug)]
struct Hash;
impl DeterministicTransform for Hash {
    type Input = i64;
    type Output = Out;
    fn name(&self) -> &str {
        "hash"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        i: &i64,
        ctx: &TransformContext,
        out: &mut Vec<Out>,
    ) -> Result<(), TransformError> {
        out.push(Out {
            id: ctx.output_id(&[&i.to_string()]),
            part: format!("p{}", i % 4),
            n: *i,
        });
        Ok(())
    }
}

const ROWS: i64 = 2_400;
const CHUNK: i64 = 100;

fn manifest() -> ApprovedManifest {
    let mut m = RunManifest::new("bf-workers", RunKind::Backfill, ExecutionMode::Backfill);
    m.reason = "scale out".into();
    m.requested_by = "alice".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "ints".into(),
        snapshot: Some("s".into()),
        range: Some(InputRange::Offsets {
            partitions: vec![OffsetRange {
                partition: 0,
                from: 0,
                to_exclusive: ROWS,
            }],
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "hash".into();
    m.transform.version = "1.0.0".into();
    m.target.name = "ints_out".into();
    m.target.mutation = Some(Mutation::ReplacePartitions);
    m.target.partitions = (0..4)
        .map(|i| PartitionKey::from(format!("p{i}")))
        .collect();
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.manual_publish = true;
    // Four chunks at once, run-wide: one place per worker (each runs one local worker).
    m.safety.limits.max_chunks_in_parallel = 4;
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..Default::default()
    });
    m.approve("bob", chrono::Utc::now()).unwrap()
}

/// Stages through the SQL sink, but hangs forever half-way through the first chunk it gets.
#[derive(Debug)]
struct DiesMidChunk {
    inner: Arc<SqlSink<Out>>,
    hung: Arc<Notify>,
}

#[async_trait]
impl StagingSink<Out> for DiesMidChunk {
    fn descriptor(&self) -> SinkDescriptor {
        self.inner.descriptor()
    }
    async fn stage(
        &self,
        req: StageRequest<'_>,
        rows: BoxStream<'_, backfill_core::Result<Vec<Out>>>,
    ) -> backfill_core::Result<StageReceipt> {
        // Let the real sink start its transaction and load part of the chunk, then stop forever.
        let hung = self.hung.clone();
        let mut sent = 0;
        let half = rows
            .take_while(move |_| {
                sent += 1;
                futures::future::ready(sent <= 2)
            })
            .chain(futures::stream::once(async move {
                hung.notify_one();
                futures::future::pending::<()>().await;
                Ok(Vec::new())
            }))
            .boxed();
        self.inner.stage(req, half).await
    }
    fn read_staged<'a>(
        &'a self,
        run_id: &'a RunId,
    ) -> BoxStream<'a, backfill_core::Result<Vec<Out>>> {
        self.inner.read_staged(run_id)
    }
    async fn discard(&self, run_id: &RunId) -> backfill_core::Result<()> {
        self.inner.discard(run_id).await
    }
}

async fn runner(
    ns: &common::Namespace,
    worker: &str,
    sink: Option<Arc<dyn StagingSink<Out>>>,
) -> (Executor<Hash>, Arc<SqlStore>, Arc<SqlSink<Out>>) {
    let pool = ns.pool_with(4).await;
    let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
    let sql_sink = Arc::new(SqlSink::<Out>::new(pool.clone(), "ints_out").await.unwrap());
    let publisher = Arc::new(SqlPublisher::<Out>::new(pool, "ints_out").await.unwrap());
    let control = Control::new(store.clone())
        .with_target(publisher.clone())
        .unwrap();
    let source = MemorySource::by_offset((0..ROWS).collect(), CHUNK)
        .batch_size(10)
        .snapshot("s");
    let r = Executor::builder(
        control,
        Arc::new(source),
        Arc::new(Hash),
        sink.unwrap_or_else(|| sql_sink.clone()),
        publisher,
    )
    .options(
        RunnerOptions::worker(worker)
            .with_lease(Duration::from_millis(1_500))
            .with_local_workers(1),
    )
    .build();
    (r, store, sql_sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_one_killed_each_chunk_once() {
    for engine in common::engines() {
        let approved = manifest();
        // Reference: one worker alone.
        let single_ns = engine.namespace("single");
        let (single, _, single_sink) = runner(&single_ns, "solo", None).await;
        single.control().submit(&approved).await.unwrap();
        let expected = single.run(approved.run_id()).await.unwrap();
        assert_eq!(expected.state, RunState::Validated);
        let expected_staged: Vec<Out> = single_sink
            .read_staged(approved.run_id())
            .try_concat()
            .await
            .unwrap();
        single_ns.drop().await;

        let ns = engine.namespace("workers");
        // Worker 4 starts first and dies in the middle of its first chunk.
        let hung = Arc::new(Notify::new());
        let pool4 = ns.pool_with(2).await;
        let sink4 = Arc::new(SqlSink::<Out>::new(pool4, "ints_out").await.unwrap());
        let (w4, store, _) = runner(
            &ns,
            "w4",
            Some(Arc::new(DiesMidChunk {
                inner: sink4,
                hung: hung.clone(),
            })),
        )
        .await;
        w4.control().submit(&approved).await.unwrap();
        let id = approved.run_id().clone();
        let killed = tokio::spawn(async move { w4.run(&id).await });
        hung.notified().await;
        killed.abort();
        assert!(killed.await.unwrap_err().is_cancelled());
        let claimed: Vec<_> = store
            .chunks(approved.run_id())
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.status == ChunkStatus::Claimed)
            .collect();
        assert_eq!(
            claimed.len(),
            1,
            "{}: the killed worker holds one lease",
            engine.name
        );
        let victim = claimed[0].chunk_id.clone();
        let victim_lease_end = claimed[0]
            .lease_expires_at
            .expect("a claimed chunk has a lease");

        let mut tasks = Vec::new();
        for w in ["w1", "w2", "w3"] {
            let (r, _, _) = runner(&ns, w, None).await;
            let id = approved.run_id().clone();
            tasks.push(tokio::spawn(async move { r.run(&id).await }));
        }
        for t in tasks {
            let report = t.await.unwrap().unwrap();
            assert_eq!(report.state, RunState::Validated, "{}", engine.name);
            assert_eq!(report.digests, expected.digests, "{}", engine.name);
        }
        let chunks = store.chunks(approved.run_id()).await.unwrap();
        assert_eq!(chunks.len(), (ROWS / CHUNK) as usize);
        for c in &chunks {
            assert_eq!(c.status, ChunkStatus::Done, "{}", engine.name);
            assert_ne!(
                c.worker.as_deref(),
                Some("w4/0"),
                "{}: the dead worker finished a chunk",
                engine.name
            );
            if c.chunk_id == victim {
                // Reclaimed by a live worker, and only after the dead worker's lease ran out.
                assert!(c.attempts >= 2, "{}", engine.name);
                assert!(
                    c.finished_at.expect("done") >= victim_lease_end,
                    "{}: reclaimed before the lease expired",
                    engine.name
                );
            }
        }
        let workers: std::collections::BTreeSet<_> =
            chunks.iter().filter_map(|c| c.worker.clone()).collect();
        assert!(
            workers.len() >= 2,
            "{}: work was not shared: {workers:?}",
            engine.name
        );
        // Staging holds exactly one copy of every row.
        let (_, _, sink) = runner(&ns, "reader", None).await;
        let staged: Vec<Out> = sink
            .read_staged(approved.run_id())
            .try_concat()
            .await
            .unwrap();
        assert_eq!(staged.len(), ROWS as usize, "{}", engine.name);
        assert_eq!(
            PartitionDigests::of_rows(&staged),
            PartitionDigests::of_rows(&expected_staged)
        );
        ns.drop().await;
    }
}
