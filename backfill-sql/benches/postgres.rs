//! PostgreSQL: staging through `SqlSink` against a hand-written binary COPY of the same rows, and
//! publishing one replaced partition against the same statements written by hand.
//!
//! Needs `BACKFILL_TEST_PG_URL` (scripts/services.sh provisions one); without it, it says so and exits.
//! `BENCH_ROWS` (default 1,000,000) and `BENCH_TABLE_ROWS` (default 1,200,000) set the sizes.
#![allow(missing_docs, clippy::unwrap_used, clippy::clone_on_ref_ptr)]

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backfill_core::context::{ExecutionMode, TransformContext};
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::manifest::{Mutation, RunKind, RunManifest};
use backfill_core::publish::{PublishRequest, Publisher};
use backfill_core::sink::{StageRequest, StagingSink};
use backfill_sql::{
    Column, ConnectOptions, Ident, SqlPool, SqlPublisher, SqlRow, SqlSink, SqlType,
};
use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::stream::{self, StreamExt};
use sqlx::PgPool;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Row {
    id: String,
    part: String,
    n: i64,
    v: f64,
    day: NaiveDate,
}

impl OutputRow for Row {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.part)
    }
}

impl SqlRow for Row {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::Text),
        Column::new("part", SqlType::Text),
        Column::new("n", SqlType::BigInt),
        Column::new("v", SqlType::Double),
        Column::new("day", SqlType::Date),
    ];
    const PARTITION_COLUMN: &'static str = "part";
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn rows(n: usize, parts: usize) -> Vec<Row> {
    let d0 = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    (0..n)
        .map(|i| Row {
            id: format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            part: format!("p{:02}", i % parts),
            n: i as i64,
            v: i as f64 * 0.25,
            day: d0 + chrono::Days::new((i % 365) as u64),
        })
        .collect()
}

/// Hand-written binary COPY of the same table layout the sink writes (row, lineage, chunk id).
fn hand_encode(
    rows: &[Row],
    lineage: &[Option<String>; 7],
    produced_at_us: i64,
    chunk: &str,
    buf: &mut Vec<u8>,
) {
    const PG_EPOCH_DAYS: i64 = 10_957;
    const PG_EPOCH_US: i64 = 946_684_800_000_000;
    let field = |buf: &mut Vec<u8>, b: &[u8]| {
        buf.extend_from_slice(&(b.len() as i32).to_be_bytes());
        buf.extend_from_slice(b);
    };
    for r in rows {
        buf.extend_from_slice(&14i16.to_be_bytes());
        field(buf, r.id.as_bytes());
        field(buf, r.part.as_bytes());
        field(buf, &r.n.to_be_bytes());
        field(buf, &r.v.to_bits().to_be_bytes());
        let days = r.day.signed_duration_since(NaiveDate::default()).num_days() - PG_EPOCH_DAYS;
        field(buf, &(days as i32).to_be_bytes());
        for l in lineage {
            match l {
                Some(s) => field(buf, s.as_bytes()),
                None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        field(buf, &(produced_at_us - PG_EPOCH_US).to_be_bytes());
        field(buf, chunk.as_bytes());
    }
}

async fn raw_copy(
    pool: &PgPool,
    table: &str,
    cols: &str,
    rows: &[Row],
    lineage: &[Option<String>; 7],
    at_us: i64,
) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("DELETE FROM {table} WHERE bf_chunk_id = 'c0'"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut copy = tx
        .copy_in_raw(&format!("COPY {table} ({cols}) FROM STDIN (FORMAT binary)"))
        .await
        .unwrap();
    let mut buf = Vec::with_capacity(2 << 20);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    for batch in rows.chunks(10_000) {
        hand_encode(batch, lineage, at_us, "c0", &mut buf);
        if buf.len() >= 1 << 20 {
            copy.send(buf.as_slice()).await.unwrap();
            buf.clear();
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(buf.as_slice()).await.unwrap();
    copy.finish().await.unwrap();
    tx.commit().await.unwrap();
}

fn bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("BACKFILL_TEST_PG_URL") else {
        eprintln!("benches/postgres: BACKFILL_TEST_PG_URL is not set; nothing measured (run it under scripts/services.sh)");
        return;
    };
    let n = env_usize("BENCH_ROWS", 1_000_000);
    let table_rows = env_usize("BENCH_TABLE_ROWS", 1_200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ns = Ident::new("bf_bench").unwrap();
    let at = Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap();
    let (pool, sink, publisher) = rt.block_on(async {
        SqlPool::drop_namespace(&url, &ns).await.unwrap();
        let pool = SqlPool::connect_with(&url, &ConnectOptions::namespaced(ns.clone()))
            .await
            .unwrap();
        let sink = SqlSink::<Row>::new(pool.clone(), "bench_target")
            .await
            .unwrap();
        let publisher = SqlPublisher::<Row>::new(pool.clone(), "bench_target")
            .await
            .unwrap();
        (pool, sink, publisher)
    });
    let SqlPool::Postgres(pg) = pool.clone() else {
        unreachable!()
    };

    // 1. Staging n rows: the sink against a hand-written COPY into an identical table.
    let data = rows(n, 12);
    let run = backfill_core::ids::RunId::from("bf-bench-stage");
    let ctx = TransformContext::fixed(run.clone(), ExecutionMode::Backfill, at);
    let l = ctx.lineage();
    let lineage: [Option<String>; 7] = [
        Some(l.run_id.to_string()),
        Some(l.transform_name.clone()),
        Some(l.transform_version.clone()),
        Some(l.mode.as_str().to_owned()),
        Some(l.input_range.clone()),
        l.input_snapshot.clone(),
        Some(l.reference_data.clone()),
    ];
    let chunk = backfill_core::ids::ChunkId::from("c0");
    let stage_once = |batches: Vec<Vec<Row>>| {
        rt.block_on(async {
            let req = StageRequest {
                run_id: &run,
                chunk_id: &chunk,
                attempt: 1,
                lineage: ctx.lineage(),
            };
            sink.stage(req, stream::iter(batches.into_iter().map(Ok)).boxed())
                .await
                .unwrap()
        })
    };
    stage_once(data.chunks(10_000).map(<[Row]>::to_vec).collect());
    let stg = sink.staging_table(&run);
    let hand_table = "bench_hand_copy";
    rt.block_on(async {
        sqlx::query(&format!("DROP TABLE IF EXISTS {hand_table}"))
            .execute(&pg)
            .await
            .unwrap();
        sqlx::query(&format!(
            "CREATE TABLE {hand_table} (LIKE \"{}\" INCLUDING INDEXES)",
            stg.as_str()
        ))
        .execute(&pg)
        .await
        .unwrap();
    });
    let cols = "\"id\", \"part\", \"n\", \"v\", \"day\", \"produced_by_run_id\", \"produced_by_transform\", \"transform_version\", \"processing_mode\", \"input_range\", \"input_snapshot_id\", \"reference_data_version\", \"produced_at\", \"bf_chunk_id\"";

    let mut g = c.benchmark_group("pg_staging");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(40));
    g.bench_function("raw_binary_copy", |b| {
        b.iter(|| {
            rt.block_on(raw_copy(
                &pg,
                hand_table,
                cols,
                black_box(&data),
                &lineage,
                at.timestamp_micros(),
            ))
        })
    });
    g.bench_function("sql_sink", |b| {
        b.iter_batched(
            || data.chunks(10_000).map(<[Row]>::to_vec).collect::<Vec<_>>(),
            stage_once,
            BatchSize::PerIteration,
        )
    });
    g.finish();

    // 2. Replacing one partition of 100k rows in a table of `table_rows` rows.
    let parts = 12;
    let per_part = table_rows / parts;
    let base = rows(table_rows, parts);
    let counter = AtomicU64::new(0);
    let manifest_for = |run: &str| {
        let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
        m.target.name = "bench_target".into();
        m.target.mutation = Some(Mutation::ReplacePartitions);
        m.target.partitions = vec!["p03".into()];
        m
    };
    let stage_run = |run: &str, rows: Vec<Row>| {
        let run = backfill_core::ids::RunId::from(run);
        let ctx = TransformContext::fixed(run.clone(), ExecutionMode::Backfill, at);
        rt.block_on(async {
            let req = StageRequest {
                run_id: &run,
                chunk_id: &chunk,
                attempt: 1,
                lineage: ctx.lineage(),
            };
            sink.stage(
                req,
                stream::iter(
                    rows.chunks(10_000)
                        .map(|c| Ok(c.to_vec()))
                        .collect::<Vec<_>>(),
                )
                .boxed(),
            )
            .await
            .unwrap();
        });
        run
    };
    // Load the target once through the publisher.
    let seed = stage_run("bf-seed", base.clone());
    let digests = PartitionDigests::default();
    let seed_m = {
        let mut m = manifest_for("bf-seed");
        m.target.partitions = (0..parts).map(|i| format!("p{i:02}").into()).collect();
        m
    };
    rt.block_on(publisher.publish(
        PublishRequest {
            run_id: &seed,
            manifest: &seed_m,
            digests: &digests,
            previous: None,
            at,
        },
        &sink,
    ))
    .unwrap();
    let replacement: Vec<Row> = base
        .iter()
        .filter(|r| r.part == "p03")
        .cloned()
        .map(|mut r| {
            r.n += 1;
            r
        })
        .collect();
    assert_eq!(replacement.len(), per_part);
    let hand_cols = cols.replace(", \"bf_chunk_id\"", "");

    let mut g = c.benchmark_group("pg_replace_partition");
    g.throughput(Throughput::Elements(per_part as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.bench_function("hand_sql_same_statements", |b| {
        b.iter_batched(
            || stage_run(&format!("bf-hand-{}", counter.fetch_add(1, Ordering::SeqCst)), replacement.clone()),
            |run| {
                let stg = sink.staging_table(&run);
                rt.block_on(async {
                    let mut tx = pg.begin().await.unwrap();
                    let archive = publisher_archive(&pg).await;
                    sqlx::query(&format!("INSERT INTO \"{archive}\" (bf_archived_by, {hand_cols}) SELECT $1, {hand_cols} FROM bench_target WHERE part IN ($2)"))
                        .bind(run.as_str()).bind("p03").execute(&mut *tx).await.unwrap();
                    sqlx::query("DELETE FROM bench_target WHERE part IN ($1)").bind("p03").execute(&mut *tx).await.unwrap();
                    sqlx::query(&format!("INSERT INTO bench_target ({hand_cols}) SELECT {hand_cols} FROM \"{}\"", stg.as_str())).execute(&mut *tx).await.unwrap();
                    tx.commit().await.unwrap();
                });
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("hand_sql_without_archive", |b| {
        b.iter_batched(
            || {
                stage_run(
                    &format!("bf-bare-{}", counter.fetch_add(1, Ordering::SeqCst)),
                    replacement.clone(),
                )
            },
            |run| {
                let stg = sink.staging_table(&run);
                rt.block_on(async {
                    let mut tx = pg.begin().await.unwrap();
                    sqlx::query("DELETE FROM bench_target WHERE part IN ($1)")
                        .bind("p03")
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    sqlx::query(&format!(
                        "INSERT INTO bench_target ({hand_cols}) SELECT {hand_cols} FROM \"{}\"",
                        stg.as_str()
                    ))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                });
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("sql_publisher", |b| {
        b.iter_batched(
            || {
                let id = format!("bf-pub-{}", counter.fetch_add(1, Ordering::SeqCst));
                (stage_run(&id, replacement.clone()), manifest_for(&id))
            },
            |(run, m)| {
                let digests = PartitionDigests::default();
                rt.block_on(publisher.publish(
                    PublishRequest {
                        run_id: &run,
                        manifest: &m,
                        digests: &digests,
                        previous: None,
                        at,
                    },
                    &sink,
                ))
                .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    rt.block_on(async {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bench_target")
            .fetch_one(&pg)
            .await
            .unwrap();
        assert_eq!(
            total as usize, table_rows,
            "the table keeps its size through every replacement"
        );
    });
}

async fn publisher_archive(pg: &PgPool) -> String {
    sqlx::query_scalar("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'bfa_%'")
        .fetch_one(pg)
        .await
        .unwrap()
}

criterion_group!(benches, bench);
criterion_main!(benches);
