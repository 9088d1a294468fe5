//! `SqlSource` on every engine: deterministic plans that tile the input range, identical re-reads in
//! bounded batches, recorded state verified on read, and no writes.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::collections::BTreeSet;

use backfill_core::context::ExecutionMode;
use backfill_core::manifest::{InputRange, RunKind, RunManifest};
use backfill_core::plan::{coverage, ResolvedPlan, SourcePlan};
use backfill_core::source::BackfillSource;
use backfill_core::ErrorKind;
use backfill_sql::{Column, SqlChunkState, SqlPool, SqlSource, SqlSourceBuilder, SqlType};
use chrono::{NaiveDate, TimeZone, Utc};
use futures::stream::TryStreamExt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
struct Event {
    case_id: String,
    seq: i64,
    id: i64,
    event_date: NaiveDate,
    kind: String,
}

static COLUMNS: &[Column] = &[
    Column::new("case_id", SqlType::Text),
    Column::new("seq", SqlType::BigInt),
    Column::new("id", SqlType::BigInt),
    Column::new("event_date", SqlType::Date),
    Column::new("kind", SqlType::Text),
];

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// 240 events, 40 cases with 6 events each, spread over December 2024 to May 2025.
fn events() -> Vec<Event> {
    (0..240)
        .map(|i: i64| Event {
            case_id: format!("case-{:03}", i / 6),
            seq: i % 6,
            id: 1000 + i * 3,
            event_date: day(2024, 12, 1) + chrono::Days::new(((i * 37) % 170) as u64),
            kind: ["opened", "assigned", "closed"][(i % 3) as usize].into(),
        })
        .collect()
}

async fn exec(pool: &SqlPool, sql: &str) {
    let sql = pool.dialect().sql(sql).into_owned();
    match pool {
        SqlPool::Postgres(p) => drop(sqlx::query(&sql).execute(p).await.unwrap()),
        SqlPool::MySql(p) => drop(sqlx::query(&sql).execute(p).await.unwrap()),
        SqlPool::Sqlite(p) => drop(sqlx::query(&sql).execute(p).await.unwrap()),
    }
}

async fn load(pool: &SqlPool, table: &str) {
    let date = if pool.dialect() == backfill_sql::Dialect::Sqlite {
        "TEXT"
    } else {
        "DATE"
    };
    exec(pool, &format!("CREATE TABLE {table} (case_id VARCHAR(64) NOT NULL, seq BIGINT NOT NULL, id BIGINT NOT NULL, event_date {date} NOT NULL, kind VARCHAR(16) NOT NULL, PRIMARY KEY (case_id, seq))")).await;
    for chunk in events().chunks(60) {
        let values: Vec<String> = chunk
            .iter()
            .map(|e| {
                format!(
                    "('{}', {}, {}, '{}', '{}')",
                    e.case_id, e.seq, e.id, e.event_date, e.kind
                )
            })
            .collect();
        exec(
            pool,
            &format!(
                "INSERT INTO {table} (case_id, seq, id, event_date, kind) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
    }
}

fn manifest(range: InputRange) -> RunManifest {
    let mut m = RunManifest::new("bf-source-test", RunKind::Backfill, ExecutionMode::Backfill);
    m.source.range = Some(range);
    m
}

fn months() -> InputRange {
    InputRange::Dates {
        from: day(2025, 1, 1),
        to_exclusive: day(2025, 4, 15),
    }
}

fn monthly(pool: SqlPool, table: &str, batch: usize) -> SqlSource<Event> {
    SqlSourceBuilder::table(pool, table)
        .columns(COLUMNS)
        .key(&["case_id", "seq"])
        .date_column("event_date")
        .chunk_by_month()
        .batch_size(batch)
        .build()
        .unwrap()
}

fn resolved(plan: SourcePlan) -> ResolvedPlan {
    ResolvedPlan::new(
        &"bf-source-test".into(),
        backfill_core::manifest::ManifestDigest::of_bytes(b"m"),
        plan,
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    )
}

/// Reads a chunk: its batches (sizes checked) flattened.
async fn read(
    source: &SqlSource<Event>,
    chunk: &backfill_core::plan::PlannedChunk,
    batch: usize,
) -> backfill_core::Result<Vec<Event>> {
    let batches: Vec<Vec<Event>> = source.read(chunk).try_collect().await?;
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= batch));
    Ok(batches.concat())
}

#[tokio::test]
async fn monthly_plan_tiles_the_range_and_reads_are_exact_and_repeatable() {
    for engine in common::engines() {
        let ns = engine.namespace("src_monthly");
        let pool = ns.pool().await;
        load(&pool, "case_events").await;
        let source = monthly(pool.clone(), "case_events", 7);
        let m = manifest(months());
        let first = source.plan(&m).await.unwrap();
        assert_eq!(
            source.plan(&m).await.unwrap(),
            first,
            "{}: plan is deterministic",
            engine.name
        );
        let labels: Vec<&str> = first.chunks.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["2025-01", "2025-02", "2025-03", "2025-04"]);
        let ranges: Vec<&InputRange> = first.chunks.iter().map(|c| &c.range).collect();
        coverage(&months(), &ranges).unwrap();
        let snapshot = first.snapshot.clone().unwrap();
        assert!(snapshot.starts_with("sql:sha256:"), "{snapshot}");
        assert_eq!(source.snapshot(&months()).await.unwrap(), snapshot);

        let plan = resolved(first);
        let mut seen = BTreeSet::new();
        for chunk in &plan.chunks {
            let got = read(&source, chunk, 7).await.unwrap();
            assert_eq!(
                read(&source, chunk, 7).await.unwrap(),
                got,
                "re-read differs"
            );
            let state: SqlChunkState = chunk.state.parse().unwrap();
            assert_eq!(state.rows, got.len() as u64);
            let InputRange::Dates { from, to_exclusive } = chunk.range else {
                panic!()
            };
            let mut sorted = got.clone();
            sorted.sort_by(|a, b| (&a.case_id, a.seq).cmp(&(&b.case_id, b.seq)));
            assert_eq!(sorted, got, "rows come in key order");
            for e in got {
                assert!(e.event_date >= from && e.event_date < to_exclusive);
                assert!(seen.insert(e), "a row was read by two chunks");
            }
        }
        let want: BTreeSet<Event> = events()
            .into_iter()
            .filter(|e| e.event_date >= day(2025, 1, 1) && e.event_date < day(2025, 4, 15))
            .collect();
        assert_eq!(
            seen, want,
            "{}: chunks read exactly the input range",
            engine.name
        );

        // Ten-day chunks of the same range tile it too and name the same rows.
        let tens = SqlSourceBuilder::<Event>::table(pool.clone(), "case_events")
            .columns(COLUMNS)
            .key(&["case_id", "seq"])
            .date_column("event_date")
            .chunk_by_days(10)
            .build()
            .unwrap();
        let p = tens.plan(&m).await.unwrap();
        assert_eq!(p.chunks.len(), 11);
        let ranges: Vec<&InputRange> = p.chunks.iter().map(|c| &c.range).collect();
        coverage(&months(), &ranges).unwrap();
        let total: u64 = p
            .chunks
            .iter()
            .map(|c| c.state.parse::<SqlChunkState>().unwrap().rows)
            .sum();
        assert_eq!(total, want.len() as u64);
        ns.drop().await;
    }
}

#[tokio::test]
async fn a_changed_input_is_refused_naming_the_chunk() {
    for engine in common::engines() {
        let ns = engine.namespace("src_changed");
        let pool = ns.pool().await;
        load(&pool, "case_events").await;
        let source = monthly(pool.clone(), "case_events", 5);
        let planned = source.plan(&manifest(months())).await.unwrap();
        let plan = resolved(planned.clone());
        let march = &plan.chunks[2];
        assert_eq!(march.label, "2025-03");
        let victim = events()
            .into_iter()
            .find(|e| e.event_date >= day(2025, 3, 1) && e.event_date < day(2025, 4, 1))
            .unwrap();

        // One value changed.
        exec(
            &pool,
            &format!(
                "UPDATE case_events SET kind = 'reopened' WHERE case_id = '{}' AND seq = {}",
                victim.case_id, victim.seq
            ),
        )
        .await;
        let err = read(&source, march, 5).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        let msg = err.to_string();
        assert!(
            msg.contains(march.id.as_str()) && msg.contains("changed since planning"),
            "{msg}"
        );
        // The other chunks still read as planned, and a new plan sees another snapshot.
        read(&source, &plan.chunks[1], 5).await.unwrap();
        let replanned = source.plan(&manifest(months())).await.unwrap();
        assert_ne!(replanned.snapshot, planned.snapshot);

        // A row added to a chunk.
        exec(
            &pool,
            &format!(
                "UPDATE case_events SET kind = '{}' WHERE case_id = '{}' AND seq = {}",
                victim.kind, victim.case_id, victim.seq
            ),
        )
        .await;
        read(&source, march, 5).await.unwrap();
        exec(&pool, "INSERT INTO case_events (case_id, seq, id, event_date, kind) VALUES ('case-zzz', 0, 99999, '2025-02-10', 'opened')").await;
        let err = read(&source, &plan.chunks[1], 5).await.unwrap_err();
        assert!(
            err.to_string().contains(plan.chunks[1].id.as_str()),
            "{err}"
        );
        ns.drop().await;
    }
}

#[tokio::test]
async fn key_chunks_split_by_rows_and_keep_one_key_together() {
    for engine in common::engines() {
        let ns = engine.namespace("src_keys");
        let pool = ns.pool().await;
        load(&pool, "case_events").await;
        let source = SqlSourceBuilder::<Event>::table(pool.clone(), "case_events")
            .columns(COLUMNS)
            .keys_per_chunk("id", 50)
            .batch_size(16)
            .build()
            .unwrap();
        let range = InputRange::Keys {
            from: "001000".into(),
            to_exclusive: "001600".into(),
        };
        let p = source.plan(&manifest(range.clone())).await.unwrap();
        assert_eq!(source.plan(&manifest(range.clone())).await.unwrap(), p);
        let ranges: Vec<&InputRange> = p.chunks.iter().map(|c| &c.range).collect();
        coverage(&range, &ranges).unwrap();
        // Ids 1000, 1003, ... 1597: 200 rows in the range, 50 a chunk.
        assert_eq!(p.chunks.len(), 4, "{:?}", ranges);
        assert_eq!(
            p.chunks[1].range.to_string(),
            InputRange::Keys {
                from: "001150".into(),
                to_exclusive: "001300".into()
            }
            .to_string()
        );
        let plan = resolved(p);
        let mut ids = Vec::new();
        for c in &plan.chunks {
            let got = read(&source, c, 16).await.unwrap();
            assert_eq!(got.len(), 50);
            ids.extend(got.iter().map(|e| e.id));
        }
        let want: Vec<i64> = (0..200).map(|i| 1000 + i * 3).collect();
        assert_eq!(ids, want);

        // Bounds of different widths would not order as text: refused with a reason.
        let err = source
            .plan(&manifest(InputRange::Keys {
                from: "1000".into(),
                to_exclusive: "001600".into(),
            }))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("zero-padded"), "{err}");
        ns.drop().await;
    }
}

#[tokio::test]
async fn a_query_source_and_a_schema_qualified_table() {
    for engine in common::engines() {
        let ns = engine.namespace("src_query");
        let pool = ns.pool().await;
        let schema = format!("bfsrc_{}", std::process::id());
        let table = format!("{schema}.case_events");
        let quoted = backfill_sql::QualifiedName::parse(&table)
            .unwrap()
            .quoted(pool.dialect());
        let sqlite = pool.dialect() == backfill_sql::Dialect::Sqlite;
        let create = match engine.name {
            "postgres" => format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
            "mysql" => format!("CREATE DATABASE IF NOT EXISTS {schema}"),
            _ => String::new(),
        };
        if !sqlite {
            exec(&pool, &create).await;
            exec(&pool, &format!("DROP TABLE IF EXISTS {quoted}")).await;
        }
        load(&pool, &quoted).await;
        let by_table = monthly(pool.clone(), &table, 100);
        let by_query = SqlSourceBuilder::<Event>::query(
            pool.clone(),
            format!(
                "SELECT case_id, seq, id, event_date, kind FROM {quoted} WHERE kind <> 'assigned'"
            ),
        )
        .name("closed and opened events")
        .columns(COLUMNS)
        .key(&["case_id", "seq"])
        .date_column("event_date")
        .chunk_by_month()
        .build()
        .unwrap();
        let m = manifest(months());
        let all = resolved(by_table.plan(&m).await.unwrap());
        let some = resolved(by_query.plan(&m).await.unwrap());
        assert_ne!(all.snapshot, some.snapshot);
        for (a, s) in all.chunks.iter().zip(&some.chunks) {
            let a: Vec<Event> = read(&by_table, a, 100).await.unwrap();
            let s: Vec<Event> = read(&by_query, s, 100).await.unwrap();
            let filtered: Vec<Event> = a.into_iter().filter(|e| e.kind != "assigned").collect();
            assert_eq!(s, filtered, "{}", engine.name);
        }
        if !sqlite {
            let drop = match engine.name {
                "postgres" => format!("DROP SCHEMA {schema} CASCADE"),
                _ => format!("DROP DATABASE {schema}"),
            };
            exec(&pool, &drop).await;
        }
        ns.drop().await;
    }
}

/// Everything in a namespace that could change: the table list and the events' content.
async fn fingerprint(pool: &SqlPool) -> (Vec<String>, Vec<String>) {
    let tables = match pool {
        SqlPool::Postgres(p) => sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1").fetch_all(p).await.unwrap(),
        SqlPool::MySql(p) => sqlx::query_scalar("SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1").fetch_all(p).await.unwrap(),
        SqlPool::Sqlite(p) => sqlx::query_scalar("SELECT name FROM sqlite_master ORDER BY 1").fetch_all(p).await.unwrap(),
    };
    let sql = "SELECT CONCAT(case_id, '|', seq, '|', kind) FROM case_events ORDER BY case_id, seq";
    let rows = match pool {
        SqlPool::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        SqlPool::MySql(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        SqlPool::Sqlite(p) => sqlx::query_scalar(
            "SELECT case_id || '|' || seq || '|' || kind FROM case_events ORDER BY case_id, seq",
        )
        .fetch_all(p)
        .await
        .unwrap(),
    };
    (tables, rows)
}

#[tokio::test]
async fn planning_and_reading_write_nothing() {
    for engine in common::engines() {
        let ns = engine.namespace("src_readonly");
        let pool = ns.pool().await;
        load(&pool, "case_events").await;
        let before = fingerprint(&pool).await;
        // On SQLite and PostgreSQL the source gets a connection that cannot write at all.
        let reader = match engine.name {
            "sqlite" => SqlPool::connect(&format!("{}?mode=ro", ns.url))
                .await
                .unwrap(),
            "postgres" => {
                let url = format!(
                    "{}?options=-c%20default_transaction_read_only%3Don%20-c%20search_path%3D{}",
                    ns.url, ns.ident
                );
                SqlPool::connect(&url).await.unwrap()
            }
            _ => pool.clone(),
        };
        let source = monthly(reader, "case_events", 9);
        let plan = resolved(source.plan(&manifest(months())).await.unwrap());
        for c in &plan.chunks {
            read(&source, c, 9).await.unwrap();
        }
        assert_eq!(fingerprint(&pool).await, before, "{}", engine.name);
        ns.drop().await;
    }
}

#[tokio::test]
async fn grouped_rows_become_whole_records_across_batches() {
    for engine in common::engines() {
        let ns = engine.namespace("src_grouped");
        let pool = ns.pool().await;
        load(&pool, "case_events").await;
        // Pages of 5 rows cut cases (of up to 6 events in a month) in two; groups must not be cut.
        let rows = monthly(pool.clone(), "case_events", 5);
        let cases = monthly(pool.clone(), "case_events", 5).grouped(
            |e: &Event| e.case_id.clone(),
            |events: Vec<Event>| Ok((events[0].case_id.clone(), events)),
        );
        let plan = resolved(cases.plan(&manifest(months())).await.unwrap());
        for chunk in &plan.chunks {
            let batches: Vec<Vec<(String, Vec<Event>)>> =
                cases.read(chunk).try_collect().await.unwrap();
            assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 5));
            let groups: Vec<(String, Vec<Event>)> = batches.concat();
            let ids: Vec<&String> = groups.iter().map(|g| &g.0).collect();
            let distinct: BTreeSet<&String> = ids.iter().copied().collect();
            assert_eq!(
                ids.len(),
                distinct.len(),
                "{}: a case was split",
                engine.name
            );
            assert!(groups
                .iter()
                .all(|(id, es)| es.iter().all(|e| &e.case_id == id)));
            let flat: Vec<Event> = groups.into_iter().flat_map(|g| g.1).collect();
            assert_eq!(
                flat,
                read(&rows, chunk, 5).await.unwrap(),
                "{}",
                engine.name
            );
        }
        ns.drop().await;
    }
}
