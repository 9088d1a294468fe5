//! PostgreSQL declarative partitions: replace-partitions detaches and attaches whole partitions.
#![allow(clippy::clone_on_ref_ptr)]

mod common;

use std::borrow::Cow;

use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::prelude::*;
use backfill_core::publish::{PublishRequest, RollbackRequest};
use backfill_core::sink::StageRequest;
use backfill_sql::{Column, SqlPool, SqlPublisher, SqlRow, SqlSink, SqlType};
use chrono::{TimeZone, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Sla {
    case_id: String,
    month: String,
    breaches: i64,
}

impl OutputRow for Sla {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

impl SqlRow for Sla {
    const COLUMNS: &'static [Column] = &[
        Column::new("case_id", SqlType::Text),
        Column::new("month", SqlType::Text),
        Column::new("breaches", SqlType::BigInt),
    ];
    const PARTITION_COLUMN: &'static str = "month";
}

fn rows(months: &[&str], n: usize, breaches: i64) -> Vec<Sla> {
    months
        .iter()
        .flat_map(|m| {
            (0..n).map(move |i| Sla {
                case_id: format!("C-{i}"),
                month: (*m).into(),
                breaches,
            })
        })
        .collect()
}

async fn current(p: &SqlPublisher<Sla>, m: &str) -> Vec<Sla> {
    let key = PartitionKey::from(m);
    let mut v: Vec<Sla> = p.read_current(&key).try_concat().await.unwrap();
    v.sort();
    v
}

#[tokio::test]
async fn replace_swaps_declarative_partitions_and_rolls_back() {
    let Some(engine) = common::engine("postgres") else {
        return;
    };
    let ns = engine.namespace("pgparts");
    let pool = ns.pool().await;
    let SqlPool::Postgres(pg) = &pool else {
        unreachable!()
    };
    sqlx::query(
        "CREATE TABLE sla (case_id TEXT NOT NULL, month TEXT NOT NULL, breaches BIGINT NOT NULL, produced_by_run_id TEXT NOT NULL, produced_by_transform TEXT NOT NULL, transform_version TEXT NOT NULL, processing_mode TEXT NOT NULL, input_range TEXT NOT NULL, input_snapshot_id TEXT NULL, reference_data_version TEXT NOT NULL, produced_at TIMESTAMPTZ NOT NULL) PARTITION BY LIST (month)",
    )
    .execute(pg)
    .await
    .unwrap();
    for m in ["2025_01", "2025_02", "2025_03"] {
        sqlx::query(&format!(
            "CREATE TABLE sla_{m} PARTITION OF sla FOR VALUES IN ('{}')",
            m.replace('_', "-")
        ))
        .execute(pg)
        .await
        .unwrap();
    }
    let sink = SqlSink::<Sla>::new(pool.clone(), "sla").await.unwrap();
    let publisher = SqlPublisher::<Sla>::new(pool.clone(), "sla").await.unwrap();
    let at = Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap();
    let publish = |run: &'static str,
                   months: &'static [&'static str],
                   data: Vec<Sla>,
                   previous: Option<&'static str>| {
        let sink = &sink;
        let publisher = &publisher;
        async move {
            let run_id = RunId::from(run);
            let ctx = TransformContext::fixed(run_id.clone(), ExecutionMode::Backfill, at);
            sink.stage(
                StageRequest {
                    run_id: &run_id,
                    chunk_id: &"c".into(),
                    attempt: 1,
                    lineage: ctx.lineage(),
                },
                stream::iter([Ok(data)]).boxed(),
            )
            .await
            .unwrap();
            let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
            m.target.name = "sla".into();
            m.target.mutation = Some(Mutation::ReplacePartitions);
            m.target.partitions = months.iter().map(|p| PartitionKey::from(*p)).collect();
            let digests = PartitionDigests::default();
            let prev = previous.map(RunId::from);
            publisher
                .publish(
                    PublishRequest {
                        run_id: &run_id,
                        manifest: &m,
                        digests: &digests,
                        previous: prev.as_ref(),
                        at,
                    },
                    sink,
                )
                .await
                .unwrap();
            m
        }
    };
    publish(
        "bf-1",
        &["2025-01", "2025-02", "2025-03"],
        rows(&["2025-01", "2025-02", "2025-03"], 5, 1),
        None,
    )
    .await;
    let children = || async {
        sqlx::query_as::<_, (String, i64)>("SELECT c.relname::text, c.oid::int8 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('sla') ORDER BY 1")
            .fetch_all(pg)
            .await
            .unwrap()
    };
    let after_first = children().await;
    assert_eq!(after_first.len(), 3);
    // The original child tables were swapped out, not deleted.
    assert!(
        after_first.iter().all(|(n, _)| n.starts_with("bfpart_")),
        "{after_first:?}"
    );
    let march_child = sqlx::query_scalar::<_, String>("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('sla') AND pg_get_expr(c.relpartbound, c.oid) = $1")
        .bind("FOR VALUES IN ('2025-03')")
        .fetch_one(pg)
        .await
        .unwrap();
    let before_march = current(&publisher, "2025-03").await;

    let m2 = publish(
        "bf-2",
        &["2025-01", "2025-02"],
        rows(&["2025-01", "2025-02"], 3, 7),
        Some("bf-1"),
    )
    .await;
    let receipt = publisher.inspect(&"bf-2".into()).await.unwrap().unwrap();
    assert!(receipt.reference.contains("detach/attach"), "{receipt:?}");
    assert_eq!(
        current(&publisher, "2025-01").await,
        rows(&["2025-01"], 3, 7)
    );
    // March is the very same relation, untouched.
    assert_eq!(current(&publisher, "2025-03").await, before_march);
    let after_second = children().await;
    assert_eq!(after_second.len(), 3);
    let march_after = after_second.iter().find(|(n, _)| *n == march_child);
    assert_eq!(
        march_after,
        after_first.iter().find(|(n, _)| *n == march_child),
        "March must be the same relation"
    );

    publisher
        .rollback(RollbackRequest {
            from: &"bf-2".into(),
            to: &"bf-1".into(),
            manifest: &m2,
            at,
        })
        .await
        .unwrap();
    assert_eq!(
        current(&publisher, "2025-01").await,
        rows(&["2025-01"], 5, 1)
    );
    assert_eq!(
        current(&publisher, "2025-02").await,
        rows(&["2025-02"], 5, 1)
    );
    assert_eq!(current(&publisher, "2025-03").await, before_march);
    ns.drop().await;
}
