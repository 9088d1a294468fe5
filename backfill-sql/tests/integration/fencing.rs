//! Fenced staging (StagingSink contract clause 6) on every engine: a worker whose lease expired and
//! whose chunk was claimed again can never overwrite its successor's rows, in whatever order the two
//! attempts reach the database.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backfill_core::context::{ExecutionMode, TransformContext};
use backfill_core::digest::OutputRow;
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::manifest::{InputRange, ManifestDigest};
use backfill_core::plan::{ChunkSpec, ResolvedPlan, SourcePlan};
use backfill_core::sink::{StageRequest, StagingSink};
use backfill_core::store::{ChunkOutcome, ChunkStatus, RunStore};
use backfill_core::{Error, ErrorKind};
use backfill_sql::{Column, SqlArtifact, SqlRow, SqlSink, SqlStore, SqlType};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Row {
    id: String,
    month: String,
    by: String,
}

impl OutputRow for Row {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

impl SqlRow for Row {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::Text),
        Column::new("month", SqlType::Text),
        Column::new("by", SqlType::Text),
    ];
    const PARTITION_COLUMN: &'static str = "month";
}

fn rows(n: usize, by: &str) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            id: format!("r{i:03}"),
            month: "2025-03".into(),
            by: by.into(),
        })
        .collect()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap()
}

fn ctx(run: &RunId) -> TransformContext {
    TransformContext::fixed(run.clone(), ExecutionMode::Backfill, t0())
}

async fn stage(
    sink: &SqlSink<Row>,
    run: &RunId,
    chunk: &ChunkId,
    attempt: u32,
    batches: stream::BoxStream<'_, backfill_core::Result<Vec<Row>>>,
) -> backfill_core::Result<backfill_core::sink::StageReceipt> {
    let ctx = ctx(run);
    sink.stage(
        StageRequest {
            run_id: run,
            chunk_id: chunk,
            attempt,
            lineage: ctx.lineage(),
        },
        batches,
    )
    .await
}

async fn staged(sink: &SqlSink<Row>, run: &RunId) -> Vec<Row> {
    let mut v: Vec<Row> = sink.read_staged(run).try_concat().await.unwrap();
    v.sort();
    v
}

fn assert_fenced(r: backfill_core::Result<impl std::fmt::Debug>, attempt: u32, current: u32) {
    match r {
        Err(Error::Fenced {
            attempt: a,
            current: c,
            ..
        }) => {
            assert_eq!(
                (a, c),
                (attempt, current),
                "fenced attempt and current attempt"
            );
        }
        other => {
            panic!("expected attempt {attempt} to be fenced (current {current}), got {other:?}")
        }
    }
}

/// A run with a one-chunk plan in the store; returns the chunk id.
async fn planned(store: &SqlStore, run: &RunId) -> ChunkId {
    let d = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
    let range = InputRange::Dates {
        from: d,
        to_exclusive: NaiveDate::from_ymd_opt(2025, 4, 1).unwrap(),
    };
    let plan = ResolvedPlan::new(
        run,
        ManifestDigest::of_bytes(run.as_str().as_bytes()),
        SourcePlan {
            snapshot: None,
            resolved_from: None,
            chunks: vec![ChunkSpec::new(range, "2025-03")],
        },
        t0(),
    );
    store.put_plan(&plan).await.unwrap();
    plan.chunks[0].id.clone()
}

#[tokio::test]
async fn zombie_stage_is_refused_and_successor_rows_stay() {
    for engine in common::engines() {
        let ns = engine.namespace("fence_zombie");
        let pool = ns.pool().await;
        let store = SqlStore::new(pool.clone()).await.unwrap();
        let sink = SqlSink::<Row>::new(pool.clone(), "case_sla_monthly")
            .await
            .unwrap();
        let run = RunId::from("bf-fence-zombie");
        let chunk = planned(&store, &run).await;
        let lease = Duration::from_secs(10);

        // Worker A claims attempt 1, stalls past its lease; worker B claims attempt 2.
        let a = store
            .claim_chunk(&run, "worker-a", t0(), lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.attempt, 1);
        let later = t0() + chrono::Duration::seconds(60);
        let b = store
            .claim_chunk(&run, "worker-b", later, lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((b.chunk_id.clone(), b.attempt), (chunk.clone(), 2));

        // A wakes up before B staged: the ledger alone fences it.
        let early = stage(
            &sink,
            &run,
            &chunk,
            1,
            stream::iter([Ok(rows(5, "a"))]).boxed(),
        )
        .await;
        assert_fenced(early, 1, 2);
        assert!(
            staged(&sink, &run).await.is_empty(),
            "{}: the zombie wrote rows",
            engine.name
        );

        // B stages; its receipt names the staging table, the chunk and the attempt.
        let receipt = stage(
            &sink,
            &run,
            &chunk,
            2,
            stream::iter([Ok(rows(7, "b"))]).boxed(),
        )
        .await
        .unwrap();
        assert_eq!(receipt.rows, 7);
        let art = SqlArtifact::from_artifact(&receipt.artifact).unwrap();
        assert_eq!(art.table, sink.staging_table(&run).to_string());
        assert_eq!(
            (art.target.as_str(), art.chunk_id.as_str(), art.attempt),
            ("case_sla_monthly", chunk.as_str(), 2)
        );

        // A's late stage after B's: refused, and B's rows are intact.
        let late = stage(
            &sink,
            &run,
            &chunk,
            1,
            stream::iter([Ok(rows(9, "a"))]).boxed(),
        )
        .await;
        assert_fenced(late, 1, 2);
        assert_eq!(staged(&sink, &run).await, rows(7, "b"), "{}", engine.name);
        let err = store
            .complete_chunk(&a, &ChunkOutcome::default(), later)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);

        // B completes; the ledger keeps its artifact; nobody (not even B) stages the done chunk again.
        let outcome = ChunkOutcome {
            output_count: 7,
            artifact: receipt.artifact.clone(),
            ..ChunkOutcome::default()
        };
        store.complete_chunk(&b, &outcome, later).await.unwrap();
        let rec = &store.chunks(&run).await.unwrap()[0];
        assert_eq!(rec.status, ChunkStatus::Done);
        assert_eq!(rec.artifact, receipt.artifact);
        assert_eq!(
            rec.digest_format,
            backfill_core::digest::DIGEST_FORMAT_VERSION
        );
        let again = stage(
            &sink,
            &run,
            &chunk,
            2,
            stream::iter([Ok(rows(1, "b"))]).boxed(),
        )
        .await;
        assert_fenced(again, 2, 2);
        assert_eq!(staged(&sink, &run).await, rows(7, "b"));
        ns.drop().await;
    }
}

#[tokio::test]
async fn fence_without_a_ledger_refuses_older_attempts() {
    for engine in common::engines() {
        let ns = engine.namespace("fence_noledger");
        let sink = SqlSink::<Row>::new(ns.pool().await, "case_sla_monthly")
            .await
            .unwrap();
        let run = RunId::from("bf-fence-noledger");
        let chunk = ChunkId::from("c0");
        stage(
            &sink,
            &run,
            &chunk,
            3,
            stream::iter([Ok(rows(4, "3"))]).boxed(),
        )
        .await
        .unwrap();
        let r = stage(
            &sink,
            &run,
            &chunk,
            2,
            stream::iter([Ok(rows(2, "2"))]).boxed(),
        )
        .await;
        assert_fenced(r, 2, 3);
        // The same attempt may stage again (a retry inside one claim); a failed attempt 4 does not
        // move the fence, so 3 still may.
        stage(
            &sink,
            &run,
            &chunk,
            3,
            stream::iter([Ok(rows(4, "3"))]).boxed(),
        )
        .await
        .unwrap();
        let failing =
            stream::iter([Ok(rows(1, "4")), Err(Error::transient("test", "injected"))]).boxed();
        assert!(stage(&sink, &run, &chunk, 4, failing).await.is_err());
        stage(
            &sink,
            &run,
            &chunk,
            3,
            stream::iter([Ok(rows(4, "3"))]).boxed(),
        )
        .await
        .unwrap();
        assert_eq!(staged(&sink, &run).await, rows(4, "3"), "{}", engine.name);
        ns.drop().await;
    }
}

/// A stream that yields `rows` once `gate` opens, and tells `locked` when the sink first polls it:
/// by then the stage transaction holds its fence and ledger locks.
fn gated(
    rows: Vec<Row>,
    locked: tokio::sync::oneshot::Sender<()>,
    gate: tokio::sync::oneshot::Receiver<()>,
) -> stream::BoxStream<'static, backfill_core::Result<Vec<Row>>> {
    stream::once(async move {
        let _ = locked.send(());
        let _ = gate.await;
        Ok(rows)
    })
    .boxed()
}

/// Attempt `first` is staging (its transaction open, its stream waiting) when attempt `second`
/// begins; `second` must wait for it and then either replace it (newer) or be fenced (older).
async fn overlapping(engine: &common::Engine, first: u32, second: u32) -> Vec<Row> {
    let ns = engine.namespace("fence_overlap");
    let sink = SqlSink::<Row>::new(ns.pool().await, "case_sla_monthly")
        .await
        .unwrap();
    let run = RunId::from("bf-fence-overlap");
    let chunk = ChunkId::from("c0");
    let (open, gate) = tokio::sync::oneshot::channel();
    let (locked, first_holds) = tokio::sync::oneshot::channel();
    let second_done = AtomicBool::new(false);
    let a = stage(
        &sink,
        &run,
        &chunk,
        first,
        gated(rows(3, &first.to_string()), locked, gate),
    );
    let b = async {
        first_holds.await.unwrap();
        let r = stage(
            &sink,
            &run,
            &chunk,
            second,
            stream::iter([Ok(rows(5, &second.to_string()))]).boxed(),
        )
        .await;
        second_done.store(true, Ordering::SeqCst);
        r
    };
    let release = async {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let finished_early = second_done.load(Ordering::SeqCst);
        let _ = open.send(());
        finished_early
    };
    let (ra, rb, finished_early) = tokio::join!(a, b, release);
    assert!(
        !finished_early,
        "{}: attempt {second} finished while attempt {first} held the chunk",
        engine.name
    );
    ra.unwrap();
    if second > first {
        assert_eq!(rb.unwrap().rows, 5);
    } else {
        assert_fenced(rb, second, first);
    }
    let got = staged(&sink, &run).await;
    ns.drop().await;
    got
}

#[tokio::test]
async fn concurrent_attempts_serialize_on_the_fence() {
    for engine in common::engines() {
        // The successor starts while the zombie is mid-stage: it waits, then replaces.
        assert_eq!(
            overlapping(&engine, 1, 2).await,
            rows(5, "2"),
            "{}",
            engine.name
        );
        // The zombie starts while the successor is mid-stage: it waits, then is refused.
        assert_eq!(
            overlapping(&engine, 2, 1).await,
            rows(3, "2"),
            "{}",
            engine.name
        );
    }
}

#[tokio::test]
async fn a_chunk_being_staged_is_not_claimed_again() {
    for engine in common::engines().into_iter().filter(|e| e.name != "sqlite") {
        // SQLite serializes writers: a claim simply waits for the stage to commit.
        let ns = engine.namespace("fence_claim");
        let pool = ns.pool().await;
        let store = SqlStore::new(pool.clone()).await.unwrap();
        let sink = SqlSink::<Row>::new(pool.clone(), "case_sla_monthly")
            .await
            .unwrap();
        let run = RunId::from("bf-fence-claim");
        let chunk = planned(&store, &run).await;
        let lease = Duration::from_secs(10);
        let a = store
            .claim_chunk(&run, "worker-a", t0(), lease)
            .await
            .unwrap()
            .unwrap();
        let (open, gate) = tokio::sync::oneshot::channel();
        let (locked, a_holds) = tokio::sync::oneshot::channel();
        let staging = stage(
            &sink,
            &run,
            &chunk,
            a.attempt,
            gated(rows(3, "a"), locked, gate),
        );
        let later = t0() + chrono::Duration::seconds(60);
        let claim = async {
            a_holds.await.unwrap();
            let c = store.claim_chunk(&run, "worker-b", later, lease).await;
            let _ = open.send(());
            c
        };
        let (staged_a, claimed) = tokio::join!(staging, claim);
        staged_a.unwrap();
        assert!(
            claimed.unwrap().is_none(),
            "{}: a chunk was handed out while its lease holder was staging it",
            engine.name
        );
        // Once A committed, the expired lease can be taken over, and A is fenced from then on.
        let b = store
            .claim_chunk(&run, "worker-b", later, lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.attempt, 2);
        let late = stage(
            &sink,
            &run,
            &chunk,
            1,
            stream::iter([Ok(rows(1, "a"))]).boxed(),
        )
        .await;
        assert_fenced(late, 1, 2);
        assert_eq!(staged(&sink, &run).await, rows(3, "a"));
        ns.drop().await;
    }
}

#[tokio::test]
async fn schema_qualified_target_stages_beside_it() {
    for engine in common::engines() {
        let ns = engine.namespace("fence_qualified");
        let pool = ns.pool().await;
        // A schema of its own per test process (it is shared by the server, not the namespace).
        let schema = format!("bfq_{}", std::process::id());
        let target = format!("{schema}.case_sla_monthly");
        let sink = SqlSink::<Row>::new(pool.clone(), &target).await.unwrap();
        let run = RunId::from("bf-qualified");
        let chunk = ChunkId::from("c0");
        let receipt = stage(
            &sink,
            &run,
            &chunk,
            1,
            stream::iter([Ok(rows(2, "q"))]).boxed(),
        )
        .await
        .unwrap();
        let art = SqlArtifact::from_artifact(&receipt.artifact).unwrap();
        assert_eq!(art.target, target);
        assert!(
            art.table.starts_with(&format!("{schema}.bfs_")),
            "{}",
            art.table
        );
        assert_eq!(staged(&sink, &run).await, rows(2, "q"));
        // Again, into the schema that exists now (found in the catalog, not created).
        stage(
            &sink,
            &run,
            &chunk,
            2,
            stream::iter([Ok(rows(3, "q"))]).boxed(),
        )
        .await
        .unwrap();
        assert_eq!(staged(&sink, &run).await, rows(3, "q"));
        sink.discard(&run).await.unwrap();
        assert!(staged(&sink, &run).await.is_empty());
        if engine.name != "sqlite" {
            let d = pool.dialect();
            let drop = match engine.name {
                "postgres" => format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(&schema)),
                _ => format!("DROP DATABASE IF EXISTS {}", d.quote(&schema)),
            };
            match &pool {
                backfill_sql::SqlPool::Postgres(p) => {
                    sqlx::query(&drop).execute(p).await.unwrap();
                }
                backfill_sql::SqlPool::MySql(p) => {
                    sqlx::query(&drop).execute(p).await.unwrap();
                }
                backfill_sql::SqlPool::Sqlite(_) => {}
            }
        }
        ns.drop().await;
    }
}
