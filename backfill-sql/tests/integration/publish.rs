//! Publishers on every engine: replace partitions, merge by version, append, shadow swap, versioned
//! output; rollback of each after staging was discarded; artifacts checked; schema-qualified targets.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;
use crate::publishing;

use std::sync::Arc;

use backfill_core::digest::PartitionDigests;
use backfill_core::memory::MemorySource;
use backfill_core::prelude::*;
use backfill_core::sink::StagedArtifact;
use backfill_sql::{SqlArtifact, SqlPool, SqlPublisher, SqlSink, SqlStore};
use publishing::{at, exec, manifest, merge, mutations, rows, run_manifest, Parts, Pass, Sla};

#[tokio::test]
async fn replace_partitions_touches_only_the_manifests_partitions_and_rolls_back() {
    for engine in common::engines() {
        let ns = engine.namespace("replace");
        let parts = Parts::new(ns.pool().await, "case_sla_daily").await;
        let all = ["2024-12", "2025-01", "2025-02", "2025-03"];
        let v1 = manifest("bf-v1", "case_sla_daily", Mutation::ReplacePartitions, &all);
        let r1 = parts
            .stage_and_publish(&v1, rows(&all, 50, 1, 3), None)
            .await;
        assert_eq!(r1.rows, 200, "{}", engine.name);
        let before_dec = parts.current("2024-12").await;
        let before_mar = parts.current("2025-03").await;

        // v2 restates Jan and Feb only.
        let jan_feb = ["2025-01", "2025-02"];
        let v2 = manifest(
            "bf-v2",
            "case_sla_daily",
            Mutation::ReplacePartitions,
            &jan_feb,
        );
        let r2 = parts
            .stage_and_publish(&v2, rows(&jan_feb, 40, 2, 4), Some(&v1.run_id))
            .await;
        assert_eq!(r2.partitions.len(), 2);
        assert_eq!(
            r2.digests,
            PartitionDigests::of_rows(&rows(&jan_feb, 40, 2, 4))
        );
        let jan = parts.current("2025-01").await;
        assert_eq!(jan, rows(&["2025-01"], 40, 2, 4), "{}", engine.name);
        assert_eq!(
            parts.current("2024-12").await,
            before_dec,
            "{}",
            engine.name
        );
        assert_eq!(
            parts.current("2025-03").await,
            before_mar,
            "{}",
            engine.name
        );

        // Idempotent: the same receipt, nothing changes (staging is not even read).
        parts.sink.discard(&v2.run_id).await.unwrap();
        let again = parts
            .publish_staged(&v2, &[], &PartitionDigests::default(), Some(&v1.run_id))
            .await
            .unwrap();
        assert_eq!(again, r2);
        assert_eq!(parts.current("2025-01").await.len(), 40);
        assert_eq!(parts.publisher.inspect(&v2.run_id).await.unwrap(), Some(r2));
        assert_eq!(
            parts.publisher.inspect(&"bf-none".into()).await.unwrap(),
            None
        );

        // Rollback to anything but the replaced run is refused; to it, restores v1 exactly.
        let bad = parts.rollback(&v2, &"bf-none".into()).await.unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::Refused, "{bad}");
        parts.rollback(&v2, &v1.run_id).await.unwrap();
        assert_eq!(parts.current("2025-01").await, rows(&["2025-01"], 50, 1, 3));
        assert_eq!(parts.current("2025-02").await, rows(&["2025-02"], 50, 1, 3));
        assert_eq!(parts.current("2024-12").await, before_dec);
        assert_eq!(parts.pointer().await.as_deref(), Some("bf-v1"));
        ns.drop().await;
    }
}

#[tokio::test]
async fn merge_never_lets_a_stale_version_win_and_rolls_back_exactly() {
    for engine in common::engines() {
        let ns = engine.namespace("merge");
        let parts = Parts::new(ns.pool().await, "case_sla_daily").await;
        let m5 = manifest("bf-m5", "case_sla_daily", merge(), &[]);
        parts
            .stage_and_publish(&m5, rows(&["2025-01"], 10, 5, 2), None)
            .await;
        let after_m5 = parts.current("2025-01").await;
        // An older version for half the keys plus a new key.
        let mut stale = rows(&["2025-01"], 5, 3, 1);
        stale.push(Sla {
            case_id: "C-0100".into(),
            month: "2025-01".into(),
            breached: true,
            version: 3,
            note: None,
        });
        let m3 = manifest("bf-m3", "case_sla_daily", merge(), &[]);
        parts.stage_and_publish(&m3, stale, Some(&m5.run_id)).await;
        let now = parts.current("2025-01").await;
        assert_eq!(now.len(), 11, "{}", engine.name);
        for r in now.iter().filter(|r| r.case_id != "C-0100") {
            assert_eq!(
                r.version, 5,
                "{}: stale version won for {}",
                engine.name, r.case_id
            );
        }
        // A newer version wins.
        let m7 = manifest("bf-m7", "case_sla_daily", merge(), &[]);
        parts
            .stage_and_publish(&m7, rows(&["2025-01"], 2, 7, 1), Some(&m3.run_id))
            .await;
        let now = parts.current("2025-01").await;
        assert_eq!(
            now.iter().filter(|r| r.version == 7).count(),
            2,
            "{}",
            engine.name
        );
        assert!(now.iter().filter(|r| r.version == 7).all(|r| r.breached));
        // Rolling back m7 restores exactly what it overwrote; rolling back m3 removes only the key
        // it added (its stale keys never won, so they are left alone).
        parts.sink.discard(&m7.run_id).await.unwrap();
        parts.sink.discard(&m3.run_id).await.unwrap();
        parts.rollback(&m7, &m3.run_id).await.unwrap();
        assert!(parts
            .current("2025-01")
            .await
            .iter()
            .all(|r| r.version != 7));
        parts.rollback(&m3, &m5.run_id).await.unwrap();
        assert_eq!(parts.current("2025-01").await, after_m5, "{}", engine.name);
        ns.drop().await;
    }
}

#[tokio::test]
async fn views_expose_only_the_accepted_run() {
    for engine in common::engines() {
        let ns = engine.namespace("views");
        let pool = ns.pool().await;
        for mutation in [
            Mutation::AppendWithRunId,
            Mutation::ShadowSwap,
            Mutation::VersionedOutput,
        ] {
            let target = format!("t_{}", mutation.name());
            let parts = Parts::new(pool.clone(), &target).await;
            let a = manifest("bf-a", &target, mutation.clone(), &[]);
            parts
                .stage_and_publish(&a, rows(&["2025-01"], 3, 1, 1), None)
                .await;
            let b = manifest("bf-b", &target, mutation.clone(), &[]);
            parts
                .stage_and_publish(&b, rows(&["2025-01"], 4, 2, 1), Some(&a.run_id))
                .await;
            let now = parts.current("2025-01").await;
            assert_eq!(now.len(), 4, "{} {}", engine.name, mutation.name());
            assert!(now.iter().all(|r| r.version == 2));
            parts.rollback(&b, &a.run_id).await.unwrap();
            let now = parts.current("2025-01").await;
            assert_eq!(now.len(), 3, "{} {}", engine.name, mutation.name());
            assert!(now.iter().all(|r| r.version == 1));
        }
        ns.drop().await;
    }
}

/// Drops the schema (PostgreSQL) or database (MySQL) a qualified target created.
async fn drop_schema(pool: &SqlPool, schema: &str) {
    match pool {
        SqlPool::Postgres(_) => {
            exec(pool, &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await
        }
        SqlPool::MySql(_) => exec(pool, &format!("DROP DATABASE IF EXISTS `{schema}`")).await,
        SqlPool::Sqlite(_) => {}
    }
}

#[tokio::test]
async fn every_mutation_rolls_back_after_staging_is_discarded_also_on_qualified_targets() {
    for engine in common::engines() {
        let ns = engine.namespace("undo");
        let pool = ns.pool().await;
        let schema = format!("s{}", ns.ident);
        for qualified in [false, true] {
            for mutation in mutations() {
                let table = format!("sla_{}", mutation.name());
                let target = if qualified {
                    format!("{schema}.{table}")
                } else {
                    table
                };
                let what = format!("{} {target}", engine.name);
                let parts = Parts::new(pool.clone(), &target).await;
                let months = ["2025-01", "2025-02"];
                let a = manifest("bf-a", &target, mutation.clone(), &months);
                let ra = parts
                    .stage_and_publish(&a, rows(&months, 6, 1, 2), None)
                    .await;
                let seen_a = parts.current("2025-01").await;
                assert_eq!(seen_a.len(), 6, "{what}");
                let b = manifest("bf-b", &target, mutation.clone(), &months);
                parts
                    .stage_and_publish(&b, rows(&months, 4, 2, 3), Some(&a.run_id))
                    .await;
                let seen_b = parts.current("2025-01").await;
                assert_eq!(
                    seen_b.iter().filter(|r| r.version == 2).count(),
                    4,
                    "{what}"
                );
                assert_eq!(parts.publisher.descriptor().name, target);

                // Nothing of either run's staging is left.
                parts.sink.discard(&a.run_id).await.unwrap();
                parts.sink.discard(&b.run_id).await.unwrap();
                assert_eq!(
                    parts
                        .publisher
                        .inspect_rollback(&b.run_id, &a.run_id)
                        .await
                        .unwrap(),
                    None
                );
                let rb = parts.rollback(&b, &a.run_id).await.unwrap();
                assert_eq!(rb.run_id, a.run_id);
                assert_eq!(rb.digests, ra.digests, "{what}");
                assert_eq!(parts.current("2025-01").await, seen_a, "{what}");
                assert_eq!(parts.pointer().await.as_deref(), Some("bf-a"), "{what}");
                // Idempotent and inspectable: the recorded receipt, no key violation.
                assert_eq!(parts.rollback(&b, &a.run_id).await.unwrap(), rb, "{what}");
                assert_eq!(
                    parts
                        .publisher
                        .inspect_rollback(&b.run_id, &a.run_id)
                        .await
                        .unwrap(),
                    Some(rb.clone())
                );
                assert_eq!(
                    parts
                        .publisher
                        .inspect_rollback(&b.run_id, &"bf-x".into())
                        .await
                        .unwrap(),
                    None
                );
                let elsewhere = parts.rollback(&b, &"bf-x".into()).await.unwrap_err();
                assert_eq!(elsewhere.kind(), ErrorKind::Conflict, "{what}: {elsewhere}");
                assert_eq!(parts.current("2025-01").await, seen_a, "{what}");
            }
        }
        drop_schema(&pool, &schema).await;
        ns.drop().await;
    }
}

#[tokio::test]
async fn artifacts_that_do_not_match_the_target_are_refused() {
    for engine in common::engines() {
        let ns = engine.namespace("artifacts");
        let pool = ns.pool().await;
        let parts = Parts::new(pool.clone(), "sla").await;
        let other = Parts::new(pool.clone(), "other").await;
        let m = manifest("bf-1", "sla", Mutation::ReplacePartitions, &["2025-01"]);
        let data = rows(&["2025-01"], 6, 1, 1);
        let digests = PartitionDigests::of_rows(&data);
        let good = parts.stage(&m.run_id, data.clone()).await;
        let refused = |e: Error, why: &str| {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Refused | ErrorKind::Conflict | ErrorKind::Permanent
                ),
                "{} {why}: {e}",
                engine.name
            );
            e
        };

        // Not a SqlArtifact at all.
        let mut bad = good.clone();
        bad[0].artifact = StagedArtifact(serde_json::json!({"files": ["a.parquet"]}));
        let e = parts
            .publish_staged(&m, &bad, &digests, None)
            .await
            .unwrap_err();
        assert!(matches!(refused(e, "shape"), Error::Corrupt { .. }));
        // Staged for another target.
        let theirs = other.stage(&m.run_id, data.clone()).await;
        let e = parts
            .publish_staged(&m, &theirs, &digests, None)
            .await
            .unwrap_err();
        assert!(matches!(refused(e, "target"), Error::PublishRefused { .. }));
        // A table that is not the one this database registered for the run.
        let mut bad = good.clone();
        let mut art = SqlArtifact::from_artifact(&bad[0].artifact).unwrap();
        art.table = "bfs_000000000000000000000000".into();
        bad[0].artifact = art.to_artifact().unwrap();
        let e = parts
            .publish_staged(&m, &bad, &digests, None)
            .await
            .unwrap_err();
        assert!(matches!(refused(e, "table"), Error::PublishRefused { .. }));
        // An attempt the ledger did not accept.
        let mut bad = good.clone();
        bad[1].attempt = 2;
        let e = parts
            .publish_staged(&m, &bad, &digests, None)
            .await
            .unwrap_err();
        assert!(matches!(refused(e, "attempt"), Error::Fenced { .. }));
        // Fewer rows than the ledger recorded, or a chunk the ledger has not accepted.
        let mut bad = good.clone();
        bad[0].rows += 1;
        let e = parts
            .publish_staged(&m, &bad, &digests, None)
            .await
            .unwrap_err();
        assert!(matches!(refused(e, "rows"), Error::PublishRefused { .. }));
        let e = parts
            .publish_staged(&m, &good[..1], &digests, None)
            .await
            .unwrap_err();
        assert!(matches!(refused(e, "chunks"), Error::PublishRefused { .. }));
        // A manifest for another target.
        let elsewhere = manifest("bf-1", "other", Mutation::ReplacePartitions, &[]);
        let e = parts
            .publish_staged(&elsewhere, &good, &digests, None)
            .await
            .unwrap_err();
        assert!(matches!(
            refused(e, "manifest"),
            Error::PublishRefused { .. }
        ));
        // A previous run the target's pointer does not name.
        let e = parts
            .publish_staged(&m, &good, &digests, Some(&"bf-0".into()))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        // Nothing was published by any of these; the good request publishes.
        assert_eq!(parts.pointer().await, None);
        assert!(parts.current("2025-01").await.is_empty());
        let r = parts
            .publish_staged(&m, &good, &digests, None)
            .await
            .unwrap();
        assert_eq!(r.rows, 6);
        // Discarded staging of an unpublished run is refused, not published empty.
        let m2 = manifest("bf-2", "sla", Mutation::ReplacePartitions, &["2025-01"]);
        let staged = parts.stage(&m2.run_id, data.clone()).await;
        parts.sink.discard(&m2.run_id).await.unwrap();
        let e = parts
            .publish_staged(&m2, &staged, &digests, Some(&m.run_id))
            .await
            .unwrap_err();
        assert!(matches!(
            refused(e, "discarded"),
            Error::PublishRefused { .. }
        ));
        assert_eq!(parts.current("2025-01").await.len(), 6);
        ns.drop().await;
    }
}

/// The staging table's rows per chunk are counted while the publishing transaction runs (on a spare
/// connection when one is idle, else on the transaction's own) and the transaction commits only if
/// they are the ledger's: both ways refuse a table that does not match, and publish nothing.
#[tokio::test]
async fn staged_counts_are_checked_before_the_commit_with_or_without_a_spare_connection() {
    for engine in common::engines() {
        for max in [1, 4] {
            let ns = engine.namespace("counts");
            let pool = ns.pool_with(max).await;
            for (target, mutation) in [("sla_r", Mutation::ReplacePartitions), ("sla_m", merge())] {
                let at = format!("{} {max} {target}", engine.name);
                let parts = Parts::new(pool.clone(), target).await;
                let m = manifest("bf-1", target, mutation, &["2025-01"]);
                let data = rows(&["2025-01"], 6, 1, 1);
                let digests = PartitionDigests::of_rows(&data);
                let good = parts.stage(&m.run_id, data).await;
                let mut bad = good.clone();
                bad[0].rows += 1;
                let e = parts.publish_staged(&m, &bad, &digests, None).await;
                assert_eq!(e.unwrap_err().kind(), ErrorKind::Refused, "{at}");
                // A row of the staging table moved to a chunk the ledger never accepted.
                let stg = parts.sink.staging_table(&m.run_id).quoted(pool.dialect());
                let moved = format!("UPDATE {stg} SET bf_chunk_id = 'zz' WHERE case_id = 'C-0000'");
                exec(&pool, &moved).await;
                let e = parts.publish_staged(&m, &good, &digests, None).await;
                let e = e.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Refused, "{at}: {e}");
                assert!(e.to_string().contains("staging table"), "{at}: {e}");
                assert_eq!(parts.pointer().await, None, "{at}");
                assert!(parts.current("2025-01").await.is_empty(), "{at}");
                exec(&pool, &moved.replace("'zz'", "'c0'")).await;
                let r = parts.publish_staged(&m, &good, &digests, None).await;
                assert_eq!(r.unwrap().rows, 6, "{at}");
            }
            ns.drop().await;
        }
    }
}

#[tokio::test]
async fn capabilities_list_every_mutation_and_the_descriptor_is_the_target() {
    let ns = common::engines()[0].namespace("caps");
    let p = SqlPublisher::<Sla>::new(ns.pool().await, "silver.case_sla_monthly")
        .await
        .unwrap();
    let caps = p.capabilities();
    for m in mutations() {
        assert!(caps.supports(m.name()), "{}", m.name());
    }
    assert!(!caps.supports(Mutation::CorrectionEvents.name()));
    assert!(caps.rollback && caps.read_back && caps.atomic_multi_partition);
    assert_eq!(p.descriptor().name, "silver.case_sla_monthly");
    assert!(!p.descriptor().external_side_effects);
}

#[tokio::test]
async fn executor_and_control_end_to_end_on_sql_store_sink_and_publisher() {
    for engine in common::engines() {
        let ns = engine.namespace("e2e");
        let pool = ns.pool().await;
        let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
        let parts = Parts::new(pool.clone(), "silver.case_sla_daily").await;
        let sink = Arc::new(parts.sink);
        let publisher = Arc::new(parts.publisher);
        let control = Control::new(store.clone())
            .with_clock(Arc::new(FixedClock(at())))
            .with_target(publisher.clone())
            .unwrap();
        let input = rows(&["2025-01", "2025-02", "2025-03"], 30, 1, 3);
        let executor = Executor::builder(
            control.clone(),
            Arc::new(MemorySource::by_offset(input.clone(), 20)),
            Arc::new(Pass),
            sink.clone(),
            publisher.clone(),
        )
        .build();
        let months = ["2025-01", "2025-02", "2025-03"];
        let m = run_manifest(
            "bf-e2e",
            "silver.case_sla_daily",
            Mutation::ReplacePartitions,
            &months,
            90,
        );
        let approved = m.approve("bob", at()).unwrap();
        control.submit(&approved).await.unwrap();
        let report = executor.run(approved.run_id()).await.unwrap();
        assert_eq!(report.state, RunState::Published, "{}", engine.name);
        assert_eq!(report.chunks_total, 5);
        assert!(report
            .validations
            .iter()
            .all(|v| v.verdict == Verdict::Pass));
        let parts = Parts {
            pool: pool.clone(),
            sink: SqlSink::new(pool.clone(), "silver.case_sla_daily")
                .await
                .unwrap(),
            publisher: SqlPublisher::new(pool.clone(), "silver.case_sla_daily")
                .await
                .unwrap(),
        };
        let mut visible = Vec::new();
        for month in months {
            visible.extend(parts.current(month).await);
        }
        assert_eq!(
            PartitionDigests::of_rows(&visible),
            report.digests,
            "{}",
            engine.name
        );
        let accepted = store
            .accepted("silver.case_sla_daily")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(accepted.run_id, *approved.run_id());
        assert_eq!(parts.pointer().await.as_deref(), Some("bf-e2e"));
        drop_schema(&pool, "silver").await;
        ns.drop().await;
    }
}
