//! The testkit's source suite on Iceberg tables written by the iceberg crate's own fast append, on
//! SQLite and PostgreSQL catalogs; plus what the suite cannot see: month chunks read only their
//! month's files (pruning), a tag pin resolves once, and an expired pin fails loudly instead of
//! reading something else.

use crate::common;

use std::sync::Arc;

use backfill_core::manifest::{InputRange, ManifestDigest, RunKind, RunManifest, SourceSpec};
use backfill_core::mode::ExecutionMode;
use backfill_core::plan::{PlannedChunk, ResolvedPlan};
use backfill_core::source::BackfillSource;
use backfill_iceberg::{IcebergCatalog, IcebergChunkState, IcebergSource, IcebergStagingSink};
use backfill_testkit::{SourceFixture, SourceHarness};
use chrono::{NaiveDate, Utc};
use common::{Engine, Sale};
use futures::TryStreamExt;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::TableIdent;

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).expect("date")
}

/// Writes `rows` as data files and commits them with the iceberg crate's fast append.
async fn append(catalog: &IcebergCatalog, ident: &TableIdent, rows: Vec<Sale>, run: &str) -> Table {
    let sink = IcebergStagingSink::<Sale>::new(catalog.clone(), ident.clone());
    let (artifact, _) = common::stage(&sink, run, rows).await;
    let table = catalog.load(ident).await.expect("load");
    let files = common::data_files(&table, &artifact);
    let tx = Transaction::new(&table);
    let tx = tx
        .fast_append()
        .add_data_files(files)
        .apply(tx)
        .expect("apply");
    tx.commit(catalog.inner()).await.expect("commit")
}

fn manifest(from: NaiveDate, to: NaiveDate, pin: Option<String>) -> RunManifest {
    let mut m = RunManifest::new(
        "bf-iceberg-source",
        RunKind::Backfill,
        ExecutionMode::Backfill,
    );
    m.source = SourceSpec {
        kind: "iceberg_table".into(),
        name: "sales".into(),
        snapshot: pin,
        range: Some(InputRange::Dates {
            from,
            to_exclusive: to,
        }),
        ..SourceSpec::default()
    };
    m
}

fn in_range(rows: &[Sale], from: NaiveDate, to: NaiveDate) -> u64 {
    rows.iter().filter(|s| s.day >= from && s.day < to).count() as u64
}

/// A table with a first snapshot of 300 sales and a later one adding 50 February sales.
async fn seeded(engine: Engine, tag: &str) -> (IcebergCatalog, TableIdent, i64, Vec<Sale>) {
    let catalog = common::catalog(engine, tag).await.expect("catalog");
    let ident = common::ident(tag, "sales");
    let (schema, spec) = common::sale_schema();
    catalog
        .ensure_table(&ident, schema, spec)
        .await
        .expect("table");
    let first = common::sales(300);
    let t = append(&catalog, &ident, first.clone(), "seed-1").await;
    let s1 = t.metadata().current_snapshot_id().expect("snapshot");
    let later: Vec<Sale> = (0..50)
        .map(|i| Sale {
            id: format!("late{i}"),
            day: day(2, 1 + i % 28),
            region: "eu".into(),
            amount: 1,
        })
        .collect();
    append(&catalog, &ident, later, "seed-2").await;
    (catalog, ident, s1, first)
}

struct Harness(Engine);

#[async_trait::async_trait]
impl SourceHarness for Harness {
    type Record = Sale;

    async fn build(&self, namespace: &str) -> backfill_core::Result<SourceFixture<Sale>> {
        let (catalog, ident, s1, first) = seeded(self.0, namespace).await;
        let (from, to) = (day(1, 1), day(4, 1));
        let source = IcebergSource::<Sale>::new(catalog.clone(), ident.clone(), "day");
        let m = manifest(from, to, Some(s1.to_string()));
        let (c, i) = (catalog.clone(), ident.clone());
        Ok(SourceFixture::new(Arc::new(source), m)
            .pin(s1.to_string())
            .expect_records(in_range(&first, from, to))
            .observe(move || {
                let (c, i) = (c.clone(), i.clone());
                async move {
                    let t = c.load(&i).await?;
                    Ok(format!(
                        "{:?} {}",
                        t.metadata_location(),
                        t.metadata().snapshots().count()
                    ))
                }
            }))
    }
    async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

backfill_testkit::source_conformance!(sqlite_source, || Harness(Engine::Sqlite));
backfill_testkit::source_conformance!(postgres_source, || Harness(Engine::Postgres));

async fn plan(source: &IcebergSource<Sale>, m: &RunManifest) -> ResolvedPlan {
    let p = source.plan(m).await.expect("plan");
    ResolvedPlan::new(&m.run_id, ManifestDigest::of(m), p, Utc::now())
}

async fn read_all(
    source: &IcebergSource<Sale>,
    chunk: &PlannedChunk,
) -> backfill_core::Result<Vec<Sale>> {
    source.read(chunk).try_concat().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn month_chunks_read_only_their_files_at_the_pinned_snapshot() {
    let (catalog, ident, s1, first) = seeded(Engine::Sqlite, "prune").await;
    let source = IcebergSource::<Sale>::new(catalog, ident, "day");
    let p = plan(
        &source,
        &manifest(day(1, 1), day(5, 1), Some(s1.to_string())),
    )
    .await;
    assert_eq!(p.snapshot.as_deref(), Some(s1.to_string().as_str()));
    let labels: Vec<&str> = p.chunks.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["2025-01", "2025-02", "2025-03", "2025-04"]);
    for c in &p.chunks {
        let state: IcebergChunkState = c.state.parse().expect("state");
        let rows = read_all(&source, c).await.expect("read");
        let month = c.label.as_str();
        // Pruned to the month's files: their record counts are exactly the rows read.
        assert_eq!(
            state.files.iter().map(|f| f.1).sum::<u64>(),
            rows.len() as u64,
            "{month}"
        );
        assert!(rows
            .iter()
            .all(|s| s.day.format("%Y-%m").to_string() == month));
        // The pinned snapshot, not the later one with 50 more February sales.
        let want = first
            .iter()
            .filter(|s| s.day.format("%Y-%m").to_string() == month)
            .count();
        assert_eq!(rows.len(), want, "{month}");
        // Planning's estimate is the files' record count, known before reading.
        assert_eq!(c.estimate.map(|e| e.records), Some(want as u64), "{month}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_pin_resolves_once_and_an_expired_pin_fails_naming_the_chunk() {
    let (catalog, ident, s1, _) = seeded(Engine::Sqlite, "expire").await;
    let source = IcebergSource::<Sale>::new(catalog.clone(), ident.clone(), "day");
    // The current head, by its branch name.
    let p = plan(
        &source,
        &manifest(day(1, 1), day(3, 1), Some("main".into())),
    )
    .await;
    assert_eq!(p.resolved_from.as_deref(), Some("main"));
    let head: i64 = p
        .snapshot
        .as_deref()
        .expect("snapshot")
        .parse()
        .expect("id");
    assert_ne!(head, s1);
    // A plan pinned at the first snapshot, then that snapshot expires before the read.
    let p1 = plan(
        &source,
        &manifest(day(1, 1), day(3, 1), Some(s1.to_string())),
    )
    .await;
    let table = catalog.load(&ident).await.expect("load");
    let tx = Transaction::new(&table);
    let tx = tx
        .expire_snapshots()
        .expire_snapshot_ids([s1])
        .apply(tx)
        .expect("apply");
    tx.commit(catalog.inner()).await.expect("expire");
    let err = read_all(&source, &p1.chunks[0]).await.expect_err("expired");
    let msg = err.to_string();
    assert!(
        msg.contains(&s1.to_string()) && msg.contains(p1.chunks[0].id.as_str()),
        "{msg}"
    );
    // A range over a column that does not exist is refused at planning.
    let bad = IcebergSource::<Sale>::new(catalog, ident, "no_such_column");
    let e = bad
        .plan(&manifest(day(1, 1), day(3, 1), None))
        .await
        .expect_err("bad column");
    assert!(e.to_string().contains("no_such_column"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_input_survives_snapshot_expiry() {
    let (catalog, ident, s1, first) = seeded(Engine::Sqlite, "protect").await;
    let source =
        IcebergSource::<Sale>::new(catalog.clone(), ident.clone(), "day").protect_input(true);
    let m = manifest(day(1, 1), day(2, 1), Some(s1.to_string()));
    let p = plan(&source, &m).await;
    let table = catalog.load(&ident).await.expect("load");
    let tag = backfill_iceberg::refs::refs(&table)
        .get("bf-input-bf-iceberg-source")
        .cloned()
        .expect("tag");
    assert_eq!((tag.snapshot_id, tag.branch), (s1, false));
    // Expire everything but the head by age: the tagged snapshot stays.
    let tx = Transaction::new(&table);
    let tx = tx
        .expire_snapshots()
        .expire_older_than_ms(Utc::now().timestamp_millis() + 1)
        .retain_last(1)
        .apply(tx)
        .expect("apply");
    let after = tx.commit(catalog.inner()).await.expect("expire");
    assert!(
        after.metadata().snapshot_by_id(s1).is_some(),
        "the tag keeps the input"
    );
    let rows = read_all(&source, &p.chunks[0]).await.expect("read");
    assert_eq!(rows.len() as u64, in_range(&first, day(1, 1), day(2, 1)));
    // Planning again is idempotent (the tag is already there).
    plan(&source, &m).await;
}
