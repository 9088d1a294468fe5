//! PostgreSQL: publishing and staging again need no lock that conflicts with a running VACUUM or
//! ANALYZE (autovacuum included), which holds SHARE UPDATE EXCLUSIVE on its table.
//!
//! `CREATE [UNIQUE] INDEX IF NOT EXISTS` takes a SHARE lock on the table even when the index exists,
//! so every publish (and every stage into an existing staging table) ran into a running autovacuum of
//! the target: it waited `deadlock_timeout` (1 s) and then cancelled the vacuum, leaving dead rows that
//! slowed every later publish. The publisher and the sink now ask the catalog first.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;
use crate::publishing;

use std::time::Duration;

use backfill_core::prelude::*;
use backfill_sql::SqlPool;
use publishing::{exec, manifest, merge, rows, Parts};

/// Long enough for a loaded machine; a publish waiting for the held lock never finishes.
const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn publish_and_stage_do_not_wait_for_a_vacuum_of_their_tables() {
    let Some(engine) = common::engine("postgres") else {
        return;
    };
    let ns = engine.namespace("vacuumlock");
    let pool = ns.pool().await;
    let SqlPool::Postgres(pg) = &pool else {
        unreachable!()
    };
    let schema = format!("{}_q", ns.ident);
    for target in [
        "case_sla_daily".to_owned(),
        format!("{schema}.case_sla_daily"),
    ] {
        let replace = Parts::new(pool.clone(), &target).await;
        let merged_target = format!("{target}_merged");
        let merged = Parts::new(pool.clone(), &merged_target).await;
        // First publications create every table and index (target, archive, keys, staging).
        let v1 = manifest("bf-v1", &target, Mutation::ReplacePartitions, &["2025-01"]);
        replace
            .stage_and_publish(&v1, rows(&["2025-01"], 10, 1, 2), None)
            .await;
        let m1 = manifest("bf-m1", &merged_target, merge(), &[]);
        merged
            .stage_and_publish(&m1, rows(&["2025-01"], 10, 1, 2), None)
            .await;
        // The second runs' staging tables exist before the vacuum starts.
        let v2 = manifest("bf-v2", &target, Mutation::ReplacePartitions, &["2025-01"]);
        replace
            .stage(&v2.run_id, rows(&["2025-01"], 10, 2, 2))
            .await;
        let m2 = manifest("bf-m2", &merged_target, merge(), &[]);
        merged.stage(&m2.run_id, rows(&["2025-01"], 10, 2, 2)).await;

        // What a running VACUUM holds, on every table of both schemas at once.
        let mut conn = backfill_sql::TxConn::acquire(pg).await.unwrap();
        let mut vacuum = conn.begin(None).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname IN ($1, $2)",
        )
        .bind(ns.ident.as_str())
        .bind(&schema)
        .fetch_all(&mut *vacuum)
        .await
        .unwrap();
        assert!(tables.len() >= 8, "{tables:?}");
        for t in &tables {
            sqlx::query(&format!("LOCK TABLE {t} IN SHARE UPDATE EXCLUSIVE MODE"))
                .execute(&mut *vacuum)
                .await
                .unwrap();
        }
        let staged = tokio::time::timeout(LIMIT, async {
            (
                replace
                    .stage(&v2.run_id, rows(&["2025-01"], 10, 2, 2))
                    .await,
                merged.stage(&m2.run_id, rows(&["2025-01"], 10, 2, 2)).await,
            )
        })
        .await
        .unwrap_or_else(|_| panic!("{target}: the sink waited for the vacuum's lock"));
        let digests = PartitionDigests::of_rows(&rows(&["2025-01"], 10, 2, 2));
        tokio::time::timeout(LIMIT, async {
            replace
                .publish_staged(&v2, &staged.0, &digests, Some(&v1.run_id))
                .await
                .unwrap();
            merged
                .publish_staged(&m2, &staged.1, &digests, Some(&m1.run_id))
                .await
                .unwrap();
        })
        .await
        .unwrap_or_else(|_| panic!("{target}: the publisher waited for the vacuum's lock"));
        vacuum.rollback().await.unwrap();
        for parts in [&replace, &merged] {
            let now = parts.current("2025-01").await;
            assert_eq!(now.len(), 10, "{target}");
            assert!(now.iter().all(|r| r.version == 2), "{target}: {now:?}");
        }
    }
    exec(&pool, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    ns.drop().await;
}
