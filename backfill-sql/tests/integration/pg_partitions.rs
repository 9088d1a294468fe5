//! PostgreSQL declarative partitions: replace-partitions detaches and attaches whole partitions in
//! the publishing transaction, and rollback (after staging was discarded) swaps them back; also for
//! a schema-qualified target.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::borrow::Cow;

use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::prelude::*;
use backfill_core::publish::{ChunkArtifact, PublishRequest, RollbackRequest};
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

struct Target {
    name: String,
    sink: SqlSink<Sla>,
    publisher: SqlPublisher<Sla>,
}

impl Target {
    /// Stages `data` as one chunk and publishes it from the stage receipt's artifact.
    async fn publish(
        &self,
        run: &str,
        months: &[&str],
        data: Vec<Sla>,
        previous: Option<&str>,
    ) -> RunManifest {
        let digests = PartitionDigests::of_rows(&data);
        let (m, r) = self
            .publish_with(run, months, data, &digests, previous)
            .await;
        r.unwrap();
        m
    }

    /// Stages `data` as one chunk and publishes it with `digests` as the ledger's.
    async fn publish_with(
        &self,
        run: &str,
        months: &[&str],
        data: Vec<Sla>,
        digests: &PartitionDigests,
        previous: Option<&str>,
    ) -> (RunManifest, Result<PublishReceipt, Error>) {
        let at = Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap();
        let run_id = RunId::from(run);
        let ctx = TransformContext::fixed(run_id.clone(), ExecutionMode::Backfill, at);
        let chunk = ChunkId::from("c");
        let receipt = self
            .sink
            .stage(
                StageRequest {
                    run_id: &run_id,
                    chunk_id: &chunk,
                    attempt: 1,
                    lineage: ctx.lineage(),
                },
                stream::iter([Ok(data)]).boxed(),
            )
            .await
            .unwrap();
        let artifacts = [ChunkArtifact {
            chunk_id: chunk,
            attempt: 1,
            rows: receipt.rows,
            artifact: receipt.artifact,
        }];
        let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
        m.target.name = self.name.clone();
        m.target.mutation = Some(Mutation::ReplacePartitions);
        m.target.partitions = months.iter().map(|p| PartitionKey::from(*p)).collect();
        let prev = previous.map(RunId::from);
        let r = self
            .publisher
            .publish(PublishRequest {
                run_id: &run_id,
                manifest: &m,
                digests,
                artifacts: &artifacts,
                previous: prev.as_ref(),
                at,
            })
            .await;
        (m, r)
    }
}

async fn children(pg: &sqlx::PgPool, parent: &str) -> Vec<(String, i64)> {
    sqlx::query_as::<_, (String, i64)>("SELECT c.relname::text, c.oid::int8 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1) ORDER BY 1")
        .bind(parent)
        .fetch_all(pg)
        .await
        .unwrap()
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
    let schema = format!("s{}", ns.ident);
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(pg)
        .await
        .unwrap();
    for name in ["sla".to_owned(), format!("{schema}.sla")] {
        let quoted = name
            .split('.')
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(".");
        sqlx::query(&format!(
            "CREATE TABLE {quoted} (case_id TEXT NOT NULL, month TEXT NOT NULL, breaches BIGINT NOT NULL, produced_by_run_id TEXT NOT NULL, produced_by_transform TEXT NOT NULL, transform_version TEXT NOT NULL, processing_mode TEXT NOT NULL, input_range TEXT NOT NULL, input_snapshot_id TEXT NULL, reference_data_version TEXT NOT NULL, produced_at TIMESTAMPTZ NOT NULL) PARTITION BY LIST (month)"
        ))
        .execute(pg)
        .await
        .unwrap();
        let in_schema = name.split_once('.').map(|(s, _)| format!("\"{s}\"."));
        for m in ["2025_01", "2025_02", "2025_03"] {
            sqlx::query(&format!(
                "CREATE TABLE {}\"sla_{m}\" PARTITION OF {quoted} FOR VALUES IN ('{}')",
                in_schema.as_deref().unwrap_or(""),
                m.replace('_', "-")
            ))
            .execute(pg)
            .await
            .unwrap();
        }
        let t = Target {
            sink: SqlSink::new(pool.clone(), &name).await.unwrap(),
            publisher: SqlPublisher::new(pool.clone(), &name).await.unwrap(),
            name: name.clone(),
        };
        let all = ["2025-01", "2025-02", "2025-03"];
        t.publish("bf-1", &all, rows(&all, 5, 1), None).await;
        let after_first = children(pg, &quoted).await;
        assert_eq!(after_first.len(), 3, "{name}");
        // The original child tables were swapped out, not deleted.
        assert!(
            after_first.iter().all(|(n, _)| n.starts_with("bfpart_")),
            "{name}: {after_first:?}"
        );
        let march_child = sqlx::query_scalar::<_, String>("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1) AND pg_get_expr(c.relpartbound, c.oid) = $2")
            .bind(&quoted)
            .bind("FOR VALUES IN ('2025-03')")
            .fetch_one(pg)
            .await
            .unwrap();
        let before_march = current(&t.publisher, "2025-03").await;

        let jan_feb = ["2025-01", "2025-02"];
        let m2 = t
            .publish("bf-2", &jan_feb, rows(&jan_feb, 3, 7), Some("bf-1"))
            .await;
        let receipt = t.publisher.inspect(&"bf-2".into()).await.unwrap().unwrap();
        assert!(receipt.reference.contains("detach/attach"), "{receipt:?}");
        assert_eq!(receipt.rows, 6, "the rows swapped in");
        assert_eq!(
            current(&t.publisher, "2025-01").await,
            rows(&["2025-01"], 3, 7)
        );
        // March is the very same relation, untouched.
        assert_eq!(current(&t.publisher, "2025-03").await, before_march);
        let after_second = children(pg, &quoted).await;
        assert_eq!(after_second.len(), 3);
        assert_eq!(
            after_second.iter().find(|(n, _)| *n == march_child),
            after_first.iter().find(|(n, _)| *n == march_child),
            "{name}: March must be the same relation"
        );

        // Rollback never reads staging: it is gone.
        t.sink.discard(&"bf-1".into()).await.unwrap();
        t.sink.discard(&"bf-2".into()).await.unwrap();
        let req = RollbackRequest {
            from: &"bf-2".into(),
            to: &"bf-1".into(),
            manifest: &m2,
            at: Utc.with_ymd_and_hms(2026, 7, 5, 0, 0, 0).unwrap(),
        };
        let rb = t.publisher.rollback(req).await.unwrap();
        assert_eq!(t.publisher.rollback(req).await.unwrap(), rb, "{name}");
        let recorded = t.publisher.inspect_rollback(req.from, req.to).await;
        assert_eq!(recorded.unwrap(), Some(rb));
        assert_eq!(
            current(&t.publisher, "2025-01").await,
            rows(&["2025-01"], 5, 1)
        );
        assert_eq!(
            current(&t.publisher, "2025-02").await,
            rows(&["2025-02"], 5, 1)
        );
        assert_eq!(current(&t.publisher, "2025-03").await, before_march);
    }
    ns.drop().await;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(pg)
        .await
        .unwrap();
}

/// The partitions to swap are the ledger's digests' when those account for every staged row (no
/// scan of staging); each partition's INSERT must then write exactly its digest's rows, or nothing
/// is published. Without usable digests the staged partitions are read from staging, as before.
#[tokio::test]
async fn attach_checks_every_partition_against_the_ledgers_digests() {
    let Some(engine) = common::engine("postgres") else {
        return;
    };
    let ns = engine.namespace("pgdigests");
    let pool = ns.pool().await;
    let SqlPool::Postgres(pg) = &pool else {
        unreachable!()
    };
    sqlx::raw_sql(
        "CREATE TABLE sla (case_id TEXT NOT NULL, month TEXT NOT NULL, breaches BIGINT NOT NULL, produced_by_run_id TEXT NOT NULL, produced_by_transform TEXT NOT NULL, transform_version TEXT NOT NULL, processing_mode TEXT NOT NULL, input_range TEXT NOT NULL, input_snapshot_id TEXT NULL, reference_data_version TEXT NOT NULL, produced_at TIMESTAMPTZ NOT NULL) PARTITION BY LIST (month); \
         CREATE TABLE sla_01 PARTITION OF sla FOR VALUES IN ('2025-01'); \
         CREATE TABLE sla_02 PARTITION OF sla FOR VALUES IN ('2025-02')",
    )
    .execute(pg)
    .await
    .unwrap();
    let t = Target {
        sink: SqlSink::new(pool.clone(), "sla").await.unwrap(),
        publisher: SqlPublisher::new(pool.clone(), "sla").await.unwrap(),
        name: "sla".into(),
    };
    let both = ["2025-01", "2025-02"];
    t.publish("bf-1", &both, rows(&both, 5, 1), None).await;
    let before = children(pg, "sla").await;

    // Staging holds 3 + 3 rows; the digests claim 6 in January (the same total): January's INSERT
    // writes 3 rows where they expect 6 (and February's 3 where they expect none), and the whole
    // publication is refused.
    let wrong = PartitionDigests::of_rows(&rows(&["2025-01"], 6, 2));
    let (_, r) = t
        .publish_with(
            "bf-2",
            &["2025-01"],
            rows(&both, 3, 2),
            &wrong,
            Some("bf-1"),
        )
        .await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(e.to_string().contains("the ledger's digest"), "{e}");
    assert_eq!(t.publisher.inspect(&"bf-2".into()).await.unwrap(), None);
    assert_eq!(children(pg, "sla").await, before, "nothing was swapped");
    assert_eq!(
        current(&t.publisher, "2025-01").await,
        rows(&["2025-01"], 5, 1)
    );

    // Without digests (a caller that has none) the staged partitions are read from staging.
    let (_, r) = t
        .publish_with(
            "bf-3",
            &["2025-01"],
            rows(&both, 3, 3),
            &PartitionDigests::default(),
            Some("bf-1"),
        )
        .await;
    let receipt = r.unwrap();
    assert_eq!(
        receipt.partitions,
        vec![PartitionKey::from("2025-01"), PartitionKey::from("2025-02")]
    );
    assert_eq!(receipt.rows, 6);
    assert_eq!(
        current(&t.publisher, "2025-02").await,
        rows(&["2025-02"], 3, 3)
    );
    ns.drop().await;
}
