//! Commits under contention: two publishers of different partitions at once both land; a foreign
//! writer (the iceberg crate's own fast append) committing between our snapshot and our commit
//! makes us rebuild on its snapshot, never overwrite it; every run leaves exactly one snapshot.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::ids::RunId;
use backfill_core::manifest::{Mutation, RunKind, RunManifest, TargetSpec};
use backfill_core::mode::ExecutionMode;
use backfill_core::publish::{PublishRequest, Publisher, TargetReader};
use backfill_iceberg::{
    refs, IcebergCatalog, IcebergPublisher, IcebergStagingSink, ManifestProducer, ProducedSnapshot,
    SnapshotProducer, SnapshotRequest,
};
use chrono::{TimeZone, Utc};
use common::{Engine, Sale};
use futures::TryStreamExt;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::TableIdent;

fn manifest(run: &str, table: &TableIdent, mutation: Mutation, months: &[&str]) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
    m.transform.version = "1.0.0".into();
    m.target = TargetSpec {
        kind: "iceberg_table".into(),
        name: table.to_string(),
        mutation: Some(mutation),
        partitions: months.iter().map(|p| (*p).into()).collect(),
        ..TargetSpec::default()
    };
    m
}

fn in_months(months: &[&str]) -> Vec<Sale> {
    common::sales(400)
        .into_iter()
        .filter(|s| months.contains(&s.day.format("%Y-%m").to_string().as_str()))
        .collect()
}

/// Snapshots on main's history whose summary names `run`.
fn snapshots_of(table: &Table, run: &str) -> usize {
    let Some(head) = refs::main_head(table) else {
        return 0;
    };
    iceberg::util::snapshot::ancestors_of(&table.metadata_ref(), head)
        .filter(|s| {
            s.summary()
                .additional_properties
                .get(refs::RUN_ID_PROPERTY)
                .map(String::as_str)
                == Some(run)
        })
        .count()
}

async fn rows(p: &IcebergPublisher<Sale>, month: &str) -> Vec<Sale> {
    p.read_current(&month.into())
        .try_concat()
        .await
        .expect("read")
}

async fn setup(engine: Engine, tag: &str) -> Option<(IcebergCatalog, TableIdent)> {
    if engine == Engine::Postgres && common::pg_url().is_none() {
        return None;
    }
    let catalog = common::catalog(engine, tag).await.expect("catalog");
    let ident = common::ident(tag, "sales");
    let (schema, spec) = common::sale_schema();
    catalog
        .ensure_table(&ident, schema, spec)
        .await
        .expect("table");
    Some((catalog, ident))
}

async fn concurrent_publishers_on_different_partitions_both_land(engine: Engine) {
    let Some((catalog, ident)) = setup(engine, "concurrent").await else {
        return;
    };
    let sink = IcebergStagingSink::<Sale>::new(catalog.clone(), ident.clone());
    let (a_months, b_months) = (["2025-01", "2025-02"], ["2025-03", "2025-04"]);
    let (a_art, a_dig) = common::stage(&sink, "bf-a", in_months(&a_months)).await;
    let (b_art, b_dig) = common::stage(&sink, "bf-b", in_months(&b_months)).await;
    let ma = manifest("bf-a", &ident, Mutation::ReplacePartitions, &a_months);
    let mb = manifest("bf-b", &ident, Mutation::ReplacePartitions, &b_months);
    // Two processes' publishers: separate catalog handles on the same catalog database.
    let pa = IcebergPublisher::<Sale>::new(catalog.clone(), ident.clone());
    let pb = IcebergPublisher::<Sale>::new(catalog.clone(), ident.clone());
    let (ra, rb) = (RunId::from("bf-a"), RunId::from("bf-b"));
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
    let (x, y) = tokio::join!(
        pa.publish(PublishRequest {
            run_id: &ra,
            manifest: &ma,
            digests: &a_dig,
            artifacts: std::slice::from_ref(&a_art),
            previous: None,
            at,
        }),
        pb.publish(PublishRequest {
            run_id: &rb,
            manifest: &mb,
            digests: &b_dig,
            artifacts: std::slice::from_ref(&b_art),
            previous: None,
            at,
        })
    );
    x.expect("a publishes");
    y.expect("b publishes");
    let table = catalog.load(&ident).await.expect("load");
    assert_eq!(snapshots_of(&table, "bf-a"), 1);
    assert_eq!(snapshots_of(&table, "bf-b"), 1);
    for m in a_months.iter().chain(&b_months) {
        assert_eq!(rows(&pa, m).await.len(), in_months(&[m]).len(), "{m}");
    }
}

/// Commits a foreign fast append (the iceberg crate's own action) the first time it produces.
#[derive(Debug)]
struct Interloper {
    catalog: IcebergCatalog,
    foreign: Vec<iceberg::spec::DataFile>,
    fired: AtomicBool,
}

#[async_trait]
impl SnapshotProducer for Interloper {
    async fn produce(
        &self,
        table: &Table,
        req: SnapshotRequest<'_>,
    ) -> backfill_core::Result<ProducedSnapshot> {
        let ours = ManifestProducer.produce(table, req).await?;
        if !self.fired.swap(true, Ordering::SeqCst) {
            let tx = Transaction::new(table);
            let tx = tx
                .fast_append()
                .add_data_files(self.foreign.clone())
                .apply(tx)
                .expect("apply");
            tx.commit(self.catalog.inner())
                .await
                .expect("foreign commit");
        }
        Ok(ours)
    }
}

async fn a_foreign_commit_in_between_is_rebased_on_not_overwritten(engine: Engine) {
    let Some((catalog, ident)) = setup(engine, "interloper").await else {
        return;
    };
    let sink = IcebergStagingSink::<Sale>::new(catalog.clone(), ident.clone());
    // The foreign writer's files: staged by another run, committed by the crate's fast append.
    let (foreign_art, _) = common::stage(&sink, "bf-foreign", in_months(&["2025-03"])).await;
    let table = catalog.load(&ident).await.expect("load");
    let foreign = common::data_files(&table, &foreign_art);
    let months = ["2025-01", "2025-02"];
    let (art, dig) = common::stage(&sink, "bf-ours", in_months(&months)).await;
    let m = manifest("bf-ours", &ident, Mutation::ReplacePartitions, &months);
    let p = IcebergPublisher::<Sale>::new(catalog.clone(), ident.clone()).producer(Arc::new(
        Interloper {
            catalog: catalog.clone(),
            foreign,
            fired: AtomicBool::new(false),
        },
    ));
    let run = RunId::from("bf-ours");
    p.publish(PublishRequest {
        run_id: &run,
        manifest: &m,
        digests: &dig,
        artifacts: std::slice::from_ref(&art),
        previous: None,
        at: Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap(),
    })
    .await
    .expect("publish after losing one race");
    let table = catalog.load(&ident).await.expect("load");
    assert_eq!(
        snapshots_of(&table, "bf-ours"),
        1,
        "the lost attempt's snapshot was never committed"
    );
    // Our snapshot sits on top of the foreign one, whose March rows survive.
    let head = table.metadata().current_snapshot().expect("head");
    assert_eq!(
        head.summary()
            .additional_properties
            .get(refs::RUN_ID_PROPERTY)
            .map(String::as_str),
        Some("bf-ours")
    );
    assert_eq!(
        rows(&p, "2025-03").await.len(),
        in_months(&["2025-03"]).len()
    );
    assert_eq!(
        rows(&p, "2025-01").await.len(),
        in_months(&["2025-01"]).len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_publishers_on_different_partitions_both_land() {
    concurrent_publishers_on_different_partitions_both_land(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_publishers_on_different_partitions_both_land() {
    concurrent_publishers_on_different_partitions_both_land(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_foreign_commit_in_between_is_rebased_on_not_overwritten() {
    a_foreign_commit_in_between_is_rebased_on_not_overwritten(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_foreign_commit_in_between_is_rebased_on_not_overwritten() {
    a_foreign_commit_in_between_is_rebased_on_not_overwritten(Engine::Postgres).await;
}
