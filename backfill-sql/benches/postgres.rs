//! PostgreSQL: staging through `SqlSink` against a hand-written binary COPY of the same rows;
//! publishing one replaced partition against the same statements written by hand; and the same
//! publication on a declaratively partitioned target (detach/attach) against its statements by hand.
//!
//! Every replacement leaves the replaced partition's old rows dead in the target. The untimed setup of
//! each iteration, on every side, vacuums and analyzes the target, the archive and the run's staging
//! table, discards the staging of earlier iterations and runs a CHECKPOINT, so each side starts from
//! the same state whatever order the functions run in and whenever autovacuum would have come by.
//! `scripts/bench-sql-ratio.sh` runs this several times, alternating which side goes first
//! (`BENCH_REVERSE`), and prints medians and ranges.
//!
//! Needs `BACKFILL_TEST_PG_URL` (scripts/services.sh provisions one); without it, it says so and exits.
//! `BENCH_ROWS` (default 1,000,000) and `BENCH_TABLE_ROWS` (default 1,200,000) set the sizes.
#![allow(missing_docs, clippy::unwrap_used, clippy::clone_on_ref_ptr)]
// The hand-written side is what a user would write with sqlx alone (its own begin).
#![allow(clippy::disallowed_methods)]

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use backfill_core::context::{ExecutionMode, TransformContext};
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::manifest::{Mutation, RunKind, RunManifest};
use backfill_core::publish::{ChunkArtifact, PublishReceipt, PublishRequest, Publisher};
use backfill_core::sink::{StageRequest, StagingSink};
use backfill_sql::{
    Column, ConnectOptions, Dialect, Ident, SqlPool, SqlPublisher, SqlRow, SqlSink, SqlType,
};
use chrono::{NaiveDate, TimeZone, Utc};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, Bencher, BenchmarkGroup, Criterion, Throughput,
};
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

/// One staged run: its id and the artifacts a publish request carries.
struct Staged {
    run: RunId,
    artifacts: Vec<ChunkArtifact>,
}

/// Stages `rows` for `run` as one chunk (`c0`) in batches of 10,000.
async fn stage(sink: &SqlSink<Row>, run: &str, rows: &[Row], at: chrono::DateTime<Utc>) -> Staged {
    let run = RunId::from(run);
    let chunk = ChunkId::from("c0");
    let ctx = TransformContext::fixed(run.clone(), ExecutionMode::Backfill, at);
    let batches: Vec<_> = rows.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let req = StageRequest {
        run_id: &run,
        chunk_id: &chunk,
        attempt: 1,
        lineage: ctx.lineage(),
    };
    let receipt = sink
        .stage(req, stream::iter(batches).boxed())
        .await
        .unwrap();
    Staged {
        artifacts: vec![ChunkArtifact {
            chunk_id: chunk,
            attempt: 1,
            rows: receipt.rows,
            artifact: receipt.artifact,
        }],
        run,
    }
}

/// Publishes a staged run with `manifest` and the digests of its rows, as the runner does (no
/// pointer check: `previous` is not given).
async fn publish(
    publisher: &SqlPublisher<Row>,
    staged: &Staged,
    manifest: &RunManifest,
    digests: &PartitionDigests,
    at: chrono::DateTime<Utc>,
) -> PublishReceipt {
    publisher
        .publish(PublishRequest {
            run_id: &staged.run,
            manifest,
            digests,
            artifacts: &staged.artifacts,
            previous: None,
            at,
        })
        .await
        .unwrap()
}

fn manifest_for(run: &str, target: &str, partitions: Vec<String>) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
    m.target.name = target.into();
    m.target.mutation = Some(Mutation::ReplacePartitions);
    m.target.partitions = partitions.into_iter().map(Into::into).collect();
    m
}

/// A routine that publishes, as the replacement of `p03`, a run `setup` stages (untimed).
fn publishing<'a>(
    rt: &'a tokio::runtime::Runtime,
    publisher: &'a SqlPublisher<Row>,
    digests: &'a PartitionDigests,
    at: chrono::DateTime<Utc>,
    mut setup: impl FnMut() -> Staged + 'a,
) -> Box<dyn FnMut(&mut Bencher<'_>) + 'a> {
    let target = publisher.target().to_string();
    Box::new(move |b: &mut Bencher<'_>| {
        b.iter_batched(
            &mut setup,
            |staged| {
                let m = manifest_for(staged.run.as_str(), &target, vec!["p03".to_owned()]);
                rt.block_on(publish(publisher, &staged, &m, digests, at))
            },
            BatchSize::PerIteration,
        )
    })
}

/// A group's function: its name and its routine.
type Routine<'a> = (&'static str, Box<dyn FnMut(&mut Bencher<'_>) + 'a>);

/// Runs a group's functions: the baseline, the candidate, then any others; with `BENCH_REVERSE=1`
/// the candidate before the baseline. `scripts/bench-sql-ratio.sh` alternates the two, so that
/// neither side always runs first on a database the other's iterations have aged.
fn in_order(g: &mut BenchmarkGroup<'_, WallTime>, mut fns: Vec<Routine<'_>>) {
    if std::env::var("BENCH_REVERSE").is_ok_and(|v| v == "1") {
        fns.swap(0, 1);
    }
    for (name, mut f) in fns {
        g.bench_function(name, |b| f(b));
    }
}

/// Discards the staging of the runs staged before `now` (published by then; rollback never reads
/// staging), so the database does not grow by a staged run per iteration.
async fn discard_earlier(sink: &SqlSink<Row>, staged: &Mutex<Vec<RunId>>, now: &RunId) {
    let earlier = std::mem::replace(&mut *staged.lock().unwrap(), vec![now.clone()]);
    for run in earlier {
        sink.discard(&run).await.unwrap();
    }
}

async fn exec(pg: &PgPool, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(pg)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn count(pg: &PgPool, table: &str) -> usize {
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pg)
        .await
        .unwrap();
    n as usize
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
    let d = Dialect::Postgres;

    // 1. Staging n rows: the sink against a hand-written COPY into an identical table.
    let data = rows(n, 12);
    let run = RunId::from("bf-bench-stage");
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
    let chunk = ChunkId::from("c0");
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
    let stg = sink.staging_table(&run).quoted(d);
    let hand_table = "bench_hand_copy";
    rt.block_on(async {
        exec(&pg, &format!("DROP TABLE IF EXISTS {hand_table}")).await;
        exec(
            &pg,
            &format!("CREATE TABLE {hand_table} (LIKE {stg} INCLUDING INDEXES)"),
        )
        .await;
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
    let next = |prefix: &str| format!("{prefix}-{}", counter.fetch_add(1, Ordering::SeqCst));
    let p03 = || vec!["p03".to_owned()];
    // Load the target once through the publisher.
    rt.block_on(async {
        let seed = stage(&sink, "bf-seed", &base, at).await;
        let all = (0..parts).map(|i| format!("p{i:02}")).collect();
        publish(
            &publisher,
            &seed,
            &manifest_for("bf-seed", "bench_target", all),
            &PartitionDigests::of_rows(&base),
            at,
        )
        .await;
    });
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
    // What the runner hands the publisher with every run (computed once, outside the timing).
    let digests = PartitionDigests::of_rows(&replacement);
    let hand_cols = cols.replace(", \"bf_chunk_id\"", "");
    let archive: String = rt.block_on(sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'bfa_%'").fetch_one(&pg)).unwrap();
    let published = Mutex::new(Vec::new());
    // Untimed, before every iteration of every side: stage the run, then the same starting state
    // (see the module doc).
    let stage_settled = |prefix: &str| {
        rt.block_on(async {
            let staged = stage(&sink, &next(prefix), &replacement, at).await;
            discard_earlier(&sink, &published, &staged.run).await;
            let stg = sink.staging_table(&staged.run).quoted(d);
            exec(
                &pg,
                &format!("VACUUM (ANALYZE) bench_target, \"{archive}\", {stg}"),
            )
            .await;
            exec(&pg, "CHECKPOINT").await;
            staged
        })
    };

    let mut g = c.benchmark_group("pg_replace_partition");
    g.throughput(Throughput::Elements(per_part as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    let mut fns: Vec<Routine<'_>> = Vec::new();
    fns.push(("hand_sql_same_statements", Box::new(|b: &mut Bencher<'_>| {
        b.iter_batched(
            || stage_settled("bf-hand"),
            |staged| {
                let stg = sink.staging_table(&staged.run).quoted(d);
                rt.block_on(async {
                    let mut tx = pg.begin().await.unwrap();
                    sqlx::query(&format!("INSERT INTO \"{archive}\" (bf_archived_by, {hand_cols}) SELECT $1, {hand_cols} FROM bench_target WHERE part IN ($2)"))
                        .bind(staged.run.as_str()).bind("p03").execute(&mut *tx).await.unwrap();
                    sqlx::query("DELETE FROM bench_target WHERE part IN ($1)").bind("p03").execute(&mut *tx).await.unwrap();
                    sqlx::query(&format!("INSERT INTO bench_target ({hand_cols}) SELECT {hand_cols} FROM {stg}")).execute(&mut *tx).await.unwrap();
                    tx.commit().await.unwrap();
                });
            },
            BatchSize::PerIteration,
        )
    })));
    fns.push((
        "sql_publisher",
        publishing(&rt, &publisher, &digests, at, || stage_settled("bf-pub")),
    ));
    fns.push((
        "hand_sql_without_archive",
        Box::new(|b: &mut Bencher<'_>| {
            b.iter_batched(
                || stage_settled("bf-bare"),
                |staged| {
                    let stg = sink.staging_table(&staged.run).quoted(d);
                    rt.block_on(async {
                        let mut tx = pg.begin().await.unwrap();
                        sqlx::query("DELETE FROM bench_target WHERE part IN ($1)")
                            .bind("p03")
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                        sqlx::query(&format!(
                            "INSERT INTO bench_target ({hand_cols}) SELECT {hand_cols} FROM {stg}"
                        ))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                        tx.commit().await.unwrap();
                    });
                },
                BatchSize::PerIteration,
            )
        }),
    ));
    in_order(&mut g, fns);
    g.finish();
    assert_eq!(
        rt.block_on(count(&pg, "bench_target")),
        table_rows,
        "the table keeps its size through every replacement"
    );

    // 3. The same replacement on a declaratively partitioned target (`bench_parts`, LIST on `part`, the
    //    same rows): the publisher builds the new partition from staging and swaps it in with DETACH /
    //    ATTACH in its transaction (src/attach.rs), against the same statements by hand.
    let (parts_sink, parts_publisher) = rt.block_on(async {
        exec(&pg, "CREATE TABLE bench_parts (LIKE bench_target) PARTITION BY LIST (part)").await;
        for i in 0..parts {
            exec(&pg, &format!("CREATE TABLE bench_parts_p{i:02} PARTITION OF bench_parts FOR VALUES IN ('p{i:02}')")).await;
        }
        exec(&pg, "INSERT INTO bench_parts SELECT * FROM bench_target").await;
        exec(&pg, "VACUUM (ANALYZE) bench_parts").await;
        (
            SqlSink::<Row>::new(pool.clone(), "bench_parts").await.unwrap(),
            SqlPublisher::<Row>::new(pool.clone(), "bench_parts").await.unwrap(),
        )
    });
    // One untimed publication first: it creates the partition-column index on the parent (an index
    // build over every partition), which both sides then share.
    rt.block_on(async {
        let first = stage(&parts_sink, "bf-attach-seed", &replacement, at).await;
        let m = manifest_for("bf-attach-seed", "bench_parts", p03());
        let receipt = publish(&parts_publisher, &first, &m, &digests, at).await;
        assert!(receipt.reference.contains("detach/attach"), "{receipt:?}");
        assert_eq!(receipt.rows, per_part as u64);
    });
    // Untimed, before every iteration: stage the run, discard earlier runs' staging, vacuum the run's
    // staging table, drop the partitions earlier iterations detached (the publisher keeps them for
    // rollback; nothing here rolls back), so the database does not grow by a partition per iteration,
    // and checkpoint. Returns the run and p03's current table.
    let published_parts = Mutex::new(Vec::new());
    let stage_parts = |prefix: &str| {
        rt.block_on(async {
            let staged = stage(&parts_sink, &next(prefix), &replacement, at).await;
            discard_earlier(&parts_sink, &published_parts, &staged.run).await;
            let stg = parts_sink.staging_table(&staged.run).quoted(d);
            exec(&pg, &format!("VACUUM (ANALYZE) {stg}")).await;
            let detached: Vec<String> = sqlx::query_scalar(
                "SELECT relname::text FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r' AND NOT relispartition AND (relname LIKE 'bfpart\\_%' OR relname LIKE 'bench\\_parts\\_%')",
            )
            .fetch_all(&pg)
            .await
            .unwrap();
            for t in detached {
                exec(&pg, &format!("DROP TABLE \"{t}\"")).await;
            }
            let current: String = sqlx::query_scalar(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'bench_parts'::regclass AND pg_get_expr(c.relpartbound, c.oid) = $1",
            )
            .bind("FOR VALUES IN ('p03')")
            .fetch_one(&pg)
            .await
            .unwrap();
            exec(&pg, "CHECKPOINT").await;
            (staged, current)
        })
    };

    // The same publisher on a pool of one connection: no spare connection to count the staging
    // table on while the transaction runs, so the count follows the statements (what the count
    // costs when the server has no idle core or the pool no idle connection).
    let single = rt.block_on(async {
        let opts = ConnectOptions::namespaced(ns.clone()).with_max_connections(1);
        let pool = SqlPool::connect_with(&url, &opts).await.unwrap();
        SqlPublisher::<Row>::new(pool, "bench_parts").await.unwrap()
    });
    let mut g = c.benchmark_group("pg_attach_partition");
    g.throughput(Throughput::Elements(per_part as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    let mut fns: Vec<Routine<'_>> = Vec::new();
    fns.push(("hand_sql_same_statements", Box::new(|b: &mut Bencher<'_>| {
        b.iter_batched(
            || {
                let (staged, old) = stage_parts("bf-hand-attach");
                let new = format!("bench_parts_hand_{}", counter.fetch_add(1, Ordering::SeqCst));
                (staged, old, new)
            },
            |(staged, old, new)| {
                let stg = parts_sink.staging_table(&staged.run).quoted(d);
                rt.block_on(async {
                    // The publisher's statements, in one transaction: build the new partition (its
                    // DDL in one round trip), fill it from staging, swap it in.
                    let mut tx = pg.begin().await.unwrap();
                    sqlx::raw_sql(&format!("CREATE TABLE {new} (LIKE bench_parts INCLUDING DEFAULTS INCLUDING CONSTRAINTS); ALTER TABLE {new} ADD CHECK (part IS NOT NULL AND part = 'p03')"))
                        .execute(&mut *tx).await.unwrap();
                    sqlx::query(&format!("INSERT INTO {new} ({hand_cols}) SELECT {hand_cols} FROM {stg} WHERE part = $1"))
                        .bind("p03").execute(&mut *tx).await.unwrap();
                    sqlx::raw_sql(&format!("ALTER TABLE bench_parts DETACH PARTITION \"{old}\"; ALTER TABLE bench_parts ATTACH PARTITION {new} FOR VALUES IN ('p03')"))
                        .execute(&mut *tx).await.unwrap();
                    tx.commit().await.unwrap();
                });
            },
            BatchSize::PerIteration,
        )
    })));
    fns.push((
        "sql_publisher",
        publishing(&rt, &parts_publisher, &digests, at, || {
            stage_parts("bf-pub-attach").0
        }),
    ));
    fns.push((
        "sql_publisher_one_connection",
        publishing(&rt, &single, &digests, at, || {
            stage_parts("bf-one-attach").0
        }),
    ));
    in_order(&mut g, fns);
    g.finish();
    assert_eq!(
        rt.block_on(count(&pg, "bench_parts")),
        table_rows,
        "every swap keeps the table's size"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
