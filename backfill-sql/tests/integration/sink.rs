//! The staging sink on every engine: types round trip, re-staging replaces, failed attempts leave nothing.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::borrow::Cow;

use backfill_core::context::{ExecutionMode, TransformContext};
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::sink::{StageRequest, StagingSink};
use backfill_sql::{Column, SqlRow, SqlSink, SqlType};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Status {
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Every {
    id: String,
    month: String,
    n: i64,
    small: i32,
    ratio: f64,
    flag: bool,
    day: NaiveDate,
    at: DateTime<Utc>,
    maybe: Option<String>,
    maybe_n: Option<i64>,
    status: Status,
}

impl OutputRow for Every {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

impl SqlRow for Every {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::Text),
        Column::new("month", SqlType::Text),
        Column::new("n", SqlType::BigInt),
        Column::new("small", SqlType::BigInt),
        Column::new("ratio", SqlType::Double),
        Column::new("flag", SqlType::Boolean),
        Column::new("day", SqlType::Date),
        Column::new("at", SqlType::Timestamp),
        Column::nullable("maybe", SqlType::Text),
        Column::nullable("maybe_n", SqlType::BigInt),
        Column::new("status", SqlType::Text),
    ];
    const PARTITION_COLUMN: &'static str = "month";
}

fn rows(n: usize, salt: i64) -> Vec<Every> {
    (0..n)
        .map(|i| Every {
            id: format!("id-{i}"),
            month: format!("2025-0{}", 1 + i % 3),
            n: i as i64 * 1_000_000_007 + salt,
            small: -(i as i32),
            ratio: i as f64 / 7.0,
            flag: i % 2 == 0,
            day: NaiveDate::from_ymd_opt(2025, 1 + (i % 3) as u32, 1 + (i % 28) as u32).unwrap(),
            at: Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap()
                + chrono::Duration::microseconds(i as i64 * 1_234_567),
            maybe: (i % 3 == 0).then(|| format!("quote ' \" \\ ; -- {i} ünïcødé")),
            maybe_n: (i % 4 == 0).then_some(i as i64),
            status: if i % 5 == 0 {
                Status::Closed
            } else {
                Status::Open
            },
        })
        .collect()
}

async fn read_all(sink: &SqlSink<Every>, run: &RunId) -> Vec<Every> {
    let mut v: Vec<Every> = sink.read_staged(run).try_concat().await.unwrap();
    v.sort_by(|a, b| a.id.cmp(&b.id).then(a.n.cmp(&b.n)));
    v
}

#[tokio::test]
async fn stage_replace_and_read_back() {
    for engine in common::engines() {
        let ns = engine.namespace("sink");
        let sink = SqlSink::<Every>::new(ns.pool().await, "case_sla_daily")
            .await
            .unwrap();
        let run = RunId::from("bf-2026-07-04-case-sla-v3-001");
        let ctx = TransformContext::fixed(
            run.clone(),
            ExecutionMode::Backfill,
            Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap(),
        );
        let c0 = ChunkId::from("00000-a");
        let c1 = ChunkId::from("00001-b");
        let req = |chunk: &'static ChunkId, attempt| StageRequest {
            run_id: &run,
            chunk_id: chunk,
            attempt,
            lineage: ctx.lineage(),
        };
        let c0: &'static ChunkId = Box::leak(Box::new(c0));
        let c1: &'static ChunkId = Box::leak(Box::new(c1));
        let first = rows(700, 0);
        let batches: Vec<_> = first.chunks(128).map(|b| Ok(b.to_vec())).collect();
        let receipt = sink
            .stage(req(c0, 1), stream::iter(batches).boxed())
            .await
            .unwrap();
        assert_eq!((receipt.rows, receipt.batches), (700, 6), "{}", engine.name);
        let mut expected = first.clone();
        expected.sort_by(|a, b| a.id.cmp(&b.id).then(a.n.cmp(&b.n)));
        assert_eq!(
            read_all(&sink, &run).await,
            expected,
            "{}: values round trip",
            engine.name
        );

        // Re-staging replaces the chunk.
        let second = rows(300, 1);
        sink.stage(req(c0, 2), stream::iter([Ok(second.clone())]).boxed())
            .await
            .unwrap();
        let got = read_all(&sink, &run).await;
        assert_eq!(got.len(), 300, "{}", engine.name);
        assert_eq!(
            PartitionDigests::of_rows(&got),
            PartitionDigests::of_rows(&second)
        );

        // A failed attempt of another chunk leaves nothing; a failed re-stage keeps the previous attempt.
        let failing = stream::iter([
            Ok(rows(10, 2)),
            Err(backfill_core::Error::transient("test", "boom")),
        ])
        .boxed();
        assert!(sink.stage(req(c1, 1), failing).await.is_err());
        let failing = stream::iter([
            Ok(rows(10, 3)),
            Err(backfill_core::Error::transient("test", "boom")),
        ])
        .boxed();
        assert!(sink.stage(req(c0, 3), failing).await.is_err());
        assert_eq!(
            PartitionDigests::of_rows(&read_all(&sink, &run).await),
            PartitionDigests::of_rows(&second),
            "{}",
            engine.name
        );

        // Another run is isolated; discard drops a run and is idempotent.
        let other = RunId::from("bf-other");
        assert!(read_all(&sink, &other).await.is_empty());
        sink.discard(&run).await.unwrap();
        sink.discard(&run).await.unwrap();
        assert!(read_all(&sink, &run).await.is_empty());
        ns.drop().await;
    }
}

/// A row type that declares a column the sink adds itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Clashing {
    id: String,
    month: String,
    produced_by_run_id: String,
}

impl OutputRow for Clashing {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

impl SqlRow for Clashing {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::Text),
        Column::new("month", SqlType::Text),
        Column::new("produced_by_run_id", SqlType::Text),
    ];
    const PARTITION_COLUMN: &'static str = "month";
}

#[tokio::test]
async fn a_row_column_named_like_a_lineage_column_is_refused_up_front() {
    let engine = common::engines().remove(0);
    let ns = engine.namespace("clash");
    let err = SqlSink::<Clashing>::new(ns.pool().await, "clashing")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`produced_by_run_id` is a lineage column"),
        "{err}"
    );
    let err = backfill_sql::SqlPublisher::<Clashing>::new(ns.pool().await, "clashing")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lineage column"), "{err}");
}

/// Workers of one run starting together stage their first chunks at the same moment, each from its
/// own pool: the run's staging table (and its schema) is created by whichever comes first, and
/// none of them fails on the others' creation (PostgreSQL answered "relation already exists" to a
/// `CREATE TABLE IF NOT EXISTS` racing another session's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_staging_their_first_chunks_together_all_succeed() {
    for engine in common::engines() {
        for round in 0..5 {
            let ns = engine.namespace("sink_race");
            let run = RunId::from(format!("bf-race-{round}").as_str());
            let ctx = TransformContext::fixed(
                run.clone(),
                ExecutionMode::Backfill,
                Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap(),
            );
            let mut sinks = Vec::new();
            for _ in 0..6 {
                sinks.push(
                    SqlSink::<Every>::new(ns.pool().await, "race.case_sla_daily")
                        .await
                        .unwrap(),
                );
            }
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(sinks.len()));
            let stagings = sinks.iter().enumerate().map(|(i, sink)| {
                let (run, ctx, barrier) = (&run, &ctx, barrier.clone());
                async move {
                    let chunk = ChunkId::from(format!("0000{i}-c").as_str());
                    barrier.wait().await;
                    let req = StageRequest {
                        run_id: run,
                        chunk_id: &chunk,
                        attempt: 1,
                        lineage: ctx.lineage(),
                    };
                    // A transient failure (a MariaDB deadlock between the creators) is retried, as
                    // the runner retries it; anything else fails the test.
                    let mut tries = 0;
                    loop {
                        let req = StageRequest {
                            attempt: 1 + tries,
                            ..req
                        };
                        let batch = rows(10, i as i64);
                        match sink.stage(req, stream::iter(vec![Ok(batch)]).boxed()).await {
                            Err(e) if e.is_retryable() && tries < 3 => tries += 1,
                            r => break r,
                        }
                    }
                }
            });
            for (i, r) in futures::future::join_all(stagings)
                .await
                .into_iter()
                .enumerate()
            {
                let receipt =
                    r.unwrap_or_else(|e| panic!("{} round {round} sink {i}: {e}", engine.name));
                assert_eq!(receipt.rows, 10);
            }
            assert_eq!(read_all(&sinks[0], &run).await.len(), 60, "{}", engine.name);
            ns.drop().await;
        }
    }
}
