//! Validation on the table: a write-audit-publish whose branch does not hold what the ledger says is
//! refused with `main` untouched and the branch dropped; a successful one records its branch diff
//! in the receipt; staged files stay publishable across an additive schema change and are refused
//! (naming the chunk) after an incompatible one.

use crate::common;

use backfill_core::digest::PartitionDigests;
use backfill_core::ids::RunId;
use backfill_core::manifest::{Mutation, RunKind, RunManifest, TargetSpec};
use backfill_core::mode::ExecutionMode;
use backfill_core::publish::{PublishRequest, Publisher, TargetReader};
use backfill_core::Error;
use backfill_iceberg::{refs, IcebergPublisher, IcebergStagingSink, PublishFlow};
use chrono::{TimeZone, Utc};
use common::{Engine, Sale};
use futures::TryStreamExt;
use iceberg::spec::{PrimitiveType, Type};
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};

fn manifest(run: &str, table: &str) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
    m.transform.version = "1.0.0".into();
    m.target = TargetSpec {
        kind: "iceberg_table".into(),
        name: table.into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: vec!["2025-01".into()],
        ..TargetSpec::default()
    };
    m
}

fn january() -> Vec<Sale> {
    common::sales(200)
        .into_iter()
        .filter(|s| s.day.format("%Y-%m").to_string() == "2025-01")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_that_disagrees_with_the_ledger_is_dropped_and_main_stays() {
    let catalog = common::catalog(Engine::Sqlite, "audit")
        .await
        .expect("catalog");
    let ident = common::ident("audit", "sales");
    let (schema, spec) = common::sale_schema();
    catalog
        .ensure_table(&ident, schema, spec)
        .await
        .expect("table");
    let sink = IcebergStagingSink::<Sale>::new(catalog.clone(), ident.clone());
    let p = IcebergPublisher::<Sale>::new(catalog.clone(), ident.clone())
        .flow(PublishFlow::WriteAuditPublish);
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
    // A good first run.
    let rows = january();
    let art = common::stage(&sink, "bf-good", rows.clone()).await.0;
    let good = RunId::from("bf-good");
    let m = manifest("bf-good", &ident.to_string());
    let receipt = p
        .publish(PublishRequest {
            run_id: &good,
            manifest: &m,
            digests: &PartitionDigests::of_rows(&rows),
            artifacts: std::slice::from_ref(&art),
            previous: None,
            at,
        })
        .await
        .expect("publish");
    assert!(
        receipt.reference.contains("via branch bf-good")
            && receipt
                .reference
                .contains(&format!("2025-01: 0 -> {} rows", rows.len())),
        "{}",
        receipt.reference
    );
    let head = refs::main_head(&catalog.load(&ident).await.expect("load"));
    // A run whose ledger digests are not what its files hold (one row fewer in the ledger).
    let art = common::stage(&sink, "bf-bad", rows.clone()).await.0;
    let bad = RunId::from("bf-bad");
    let m = manifest("bf-bad", &ident.to_string());
    let err = p
        .publish(PublishRequest {
            run_id: &bad,
            manifest: &m,
            digests: &PartitionDigests::of_rows(&rows[1..]),
            artifacts: std::slice::from_ref(&art),
            previous: Some(&good),
            at,
        })
        .await
        .expect_err("audit fails");
    assert!(matches!(err, Error::ValidationFailed { .. }), "{err}");
    assert!(err.to_string().contains("partition 2025-01"), "{err}");
    let table = catalog.load(&ident).await.expect("load");
    assert_eq!(refs::main_head(&table), head, "main untouched");
    assert!(!refs::refs(&table).contains_key("bf-bad"), "branch dropped");
    assert!(p.inspect(&bad).await.expect("inspect").is_none());
    let visible: Vec<Sale> = p
        .read_current(&"2025-01".into())
        .try_concat()
        .await
        .expect("read");
    assert_eq!(visible.len(), rows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_files_survive_an_additive_schema_change_but_not_a_dropped_column() {
    let catalog = common::catalog(Engine::Sqlite, "schema")
        .await
        .expect("catalog");
    let ident = common::ident("schema", "sales");
    let (schema, spec) = common::sale_schema();
    catalog
        .ensure_table(&ident, schema, spec)
        .await
        .expect("table");
    let sink = IcebergStagingSink::<Sale>::new(catalog.clone(), ident.clone());
    let p = IcebergPublisher::<Sale>::new(catalog.clone(), ident.clone());
    let rows = january();
    let a = common::stage(&sink, "bf-a", rows.clone()).await.0;
    let b = common::stage(&sink, "bf-b", rows.clone()).await.0;
    // Someone adds an optional column after staging.
    let table = catalog.load(&ident).await.expect("load");
    let tx = Transaction::new(&table);
    let tx = tx
        .update_schema()
        .add_column(AddColumn::optional(
            "channel",
            Type::Primitive(PrimitiveType::String),
        ))
        .apply(tx)
        .expect("apply");
    tx.commit(catalog.inner()).await.expect("add column");
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
    let ra = RunId::from("bf-a");
    p.publish(PublishRequest {
        run_id: &ra,
        manifest: &manifest("bf-a", &ident.to_string()),
        digests: &PartitionDigests::of_rows(&rows),
        artifacts: std::slice::from_ref(&a),
        previous: None,
        at,
    })
    .await
    .expect("an added optional column keeps staged files publishable");
    let visible: Vec<Sale> = p
        .read_current(&"2025-01".into())
        .try_concat()
        .await
        .expect("read");
    assert_eq!(visible.len(), rows.len());
    // Then someone drops a column the staged files hold.
    let table = catalog.load(&ident).await.expect("load");
    let tx = Transaction::new(&table);
    let tx = tx
        .update_schema()
        .delete_column("region")
        .apply(tx)
        .expect("apply");
    tx.commit(catalog.inner()).await.expect("drop column");
    let rb = RunId::from("bf-b");
    let err = p
        .publish(PublishRequest {
            run_id: &rb,
            manifest: &manifest("bf-b", &ident.to_string()),
            digests: &PartitionDigests::of_rows(&rows),
            artifacts: std::slice::from_ref(&b),
            previous: Some(&ra),
            at,
        })
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("00000-c") && msg.contains("region"), "{msg}");
}
