//! Versioned writes (seed §12.2): the live pipeline writes its own version of the target while
//! runs publish theirs, and readers of `<target>_current` see, per partition, the accepted one.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;
use crate::live;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backfill_core::live::LiveWrites;
use backfill_core::prelude::*;
use backfill_sql::{SqlPool, SqlStore, LIVE_VERSION};
use live::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versioned_writes_keep_every_live_write_and_readers_see_the_accepted_version_per_partition()
{
    let Some(engine) = common::engine("postgres") else {
        return;
    };
    let ns = engine.namespace("live_versions");
    let pool = ns.pool_with(8).await;
    let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
    create_target(&pool, false).await;

    // The live writer keeps its own version: it inserts new rows and updates its earlier ones, in
    // every partition, before, during and after the publications; `model` is what it wrote last.
    assert!(LIVE_LINEAGE.starts_with(&format!("'{LIVE_VERSION}'")));
    let pg = pg(&pool);
    let stop = Arc::new(AtomicBool::new(false));
    let model = Arc::new(Mutex::new(BTreeMap::<String, (String, i64)>::new()));
    let live = {
        let (stop, model) = (stop.clone(), model.clone());
        tokio::spawn(async move {
            let insert = format!("INSERT INTO live_out (id, part, n, src_version, {LINEAGE_COLUMNS}) VALUES ($1, $2, $3, 0, {LIVE_LINEAGE})");
            let update = "UPDATE live_out SET n = $2 WHERE id = $1 AND produced_by_run_id = $3";
            let mut i = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let (id, part) = (format!("live-{}", i / 2), format!("p{}", (i / 2) % 6));
                if i % 2 == 0 {
                    sqlx::query(&insert)
                        .bind(&id)
                        .bind(&part)
                        .bind(i)
                        .execute(&pg)
                        .await
                        .unwrap();
                } else {
                    let done = sqlx::query(update)
                        .bind(&id)
                        .bind(i)
                        .bind(LIVE_VERSION)
                        .execute(&pg)
                        .await
                        .unwrap();
                    assert_eq!(done.rows_affected(), 1);
                }
                model.lock().unwrap().insert(id, (part, i));
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let versioned = |run_id: &str| {
        manifest(
            run_id,
            LiveWrites::VersionedWrites,
            Mutation::VersionedOutput,
        )
    };
    // Two restatements of the window, one after the other; the second is then rolled back.
    let first = versioned("bf-v1");
    let second = versioned("bf-v2");
    for (approved, mult) in [(&first, 10), (&second, 100)] {
        let bf = executor_with(&pool, store.clone(), mult).await;
        bf.control().submit(approved).await.unwrap();
        assert_eq!(
            bf.run(approved.run_id()).await.unwrap().state,
            RunState::Validated
        );
        bf.control()
            .publish(approved.run_id(), "bob")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view = |ns: &common::Namespace, part_filter: &str| {
        cli(ns, &format!("SELECT count(*), coalesce(sum(n), 0), string_agg(DISTINCT produced_by_run_id, ',') FROM live_out_current WHERE part {part_filter}"))
    };
    let restated =
        |mult: i64, run: &str| format!("{KEYS}|{}|{run}", (0..KEYS).map(|i| i * mult).sum::<i64>());
    assert_eq!(
        view(&ns, "IN ('p0','p1','p2','p3')"),
        restated(100, "bf-v2")
    );
    let bf = executor(&pool, store.clone()).await;
    bf.control()
        .rollback_run(second.run_id(), "bob", "wrong multiplier")
        .await
        .unwrap();
    assert_eq!(view(&ns, "IN ('p0','p1','p2','p3')"), restated(10, "bf-v1"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    live.await.unwrap();

    // psql: the live version holds every live write as last written (none lost) ...
    let model = std::mem::take(&mut *model.lock().unwrap());
    let live_rows = cli(&ns, &format!("SELECT string_agg(id || ':' || part || ':' || n, ',') FROM live_out WHERE produced_by_run_id = '{LIVE_VERSION}'"));
    let mut got: Vec<&str> = live_rows.split(',').collect();
    got.sort_unstable();
    let mut want: Vec<String> = model
        .iter()
        .map(|(id, (p, n))| format!("{id}:{p}:{n}"))
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert!(model.len() > 50, "the live writer wrote throughout");
    // ... readers see the live version outside the window, the accepted run's inside it ...
    let outside: i64 = model
        .values()
        .filter(|(p, _)| p == "p4" || p == "p5")
        .count() as i64;
    let live_sum: i64 = model
        .values()
        .filter(|(p, _)| p == "p4" || p == "p5")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        view(&ns, "IN ('p4','p5')"),
        format!("{outside}|{live_sum}|{LIVE_VERSION}")
    );
    assert_eq!(cli(&ns, "SELECT count(*) FROM live_out_current WHERE part IN ('p0','p1','p2','p3') AND id LIKE 'live-%'"), "0");
    // ... and the rolled-back run's rows are gone, the first run's kept.
    assert_eq!(
        cli(
            &ns,
            "SELECT count(*) FROM live_out WHERE produced_by_run_id = 'bf-v2'"
        ),
        "0"
    );
    assert_eq!(
        cli(
            &ns,
            "SELECT count(*) FROM live_out WHERE produced_by_run_id = 'bf-v1'"
        ),
        KEYS.to_string()
    );
    ns.drop().await;
}

/// Runs one statement on any engine.
async fn exec(pool: &SqlPool, sql: &str) {
    match pool {
        SqlPool::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop),
        SqlPool::MySql(p) => sqlx::query(sql).execute(p).await.map(drop),
        SqlPool::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop),
    }
    .unwrap();
}

#[tokio::test]
async fn on_every_engine_readers_see_the_accepted_version_per_partition_and_rollback_restores_it() {
    for engine in common::engines() {
        let ns = engine.namespace("versions");
        let pool = ns.pool().await;
        let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
        let restated = |mult: i64| format!("{KEYS}|{}", (0..KEYS).map(|i| i * mult).sum::<i64>());
        let window = |ns: &common::Namespace| {
            cli(ns, "SELECT count(*), sum(n) FROM live_out_current WHERE part IN ('p0', 'p1', 'p2', 'p3')").replace('\t', "|")
        };
        let first = manifest(
            "bf-v1",
            LiveWrites::VersionedWrites,
            Mutation::VersionedOutput,
        );
        let second = manifest(
            "bf-v2",
            LiveWrites::VersionedWrites,
            Mutation::VersionedOutput,
        );
        let bf = executor_with(&pool, store.clone(), 10).await;
        bf.control().submit(&first).await.unwrap();
        bf.run(first.run_id()).await.unwrap();
        bf.control().publish(first.run_id(), "bob").await.unwrap();
        // Live rows, in and out of the window, after the first publication.
        let live_produced_at = if engine.name == "sqlite" {
            "'2026-12-07 00:00:00'"
        } else {
            "CURRENT_TIMESTAMP"
        };
        for (id, part, n) in [
            ("live-a", "p0", 1),
            ("live-b", "p4", 2),
            ("live-c", "p5", 3),
        ] {
            exec(&pool, &format!(
                "INSERT INTO live_out (id, part, n, src_version, {LINEAGE_COLUMNS}) VALUES ('{id}', '{part}', {n}, 0, '{LIVE_VERSION}', 'live-orders', '1.0.0', 'live', 'stream', NULL, 'none', {live_produced_at})"
            )).await;
        }
        assert_eq!(window(&ns), restated(10), "{}", engine.name);
        assert_eq!(
            cli(
                &ns,
                "SELECT count(*), sum(n) FROM live_out_current WHERE part IN ('p4', 'p5')"
            )
            .replace('\t', "|"),
            "2|5",
            "{}",
            engine.name
        );
        assert_eq!(
            cli(
                &ns,
                "SELECT count(*) FROM live_out_current WHERE id = 'live-a'"
            ),
            "0",
            "{}: the window shows the run's version",
            engine.name
        );

        let bf = executor_with(&pool, store.clone(), 100).await;
        bf.control().submit(&second).await.unwrap();
        bf.run(second.run_id()).await.unwrap();
        let receipt = bf.control().publish(second.run_id(), "bob").await.unwrap();
        assert_eq!(receipt.mutation, "versioned_writes");
        assert_eq!(window(&ns), restated(100), "{}", engine.name);
        bf.control()
            .rollback_run(second.run_id(), "bob", "wrong multiplier")
            .await
            .unwrap();
        assert_eq!(window(&ns), restated(10), "{}: rolled back", engine.name);
        assert_eq!(
            cli(
                &ns,
                "SELECT count(*) FROM live_out WHERE produced_by_run_id = 'bf-v2'"
            ),
            "0",
            "{}",
            engine.name
        );
        assert_eq!(
            cli(
                &ns,
                &format!(
                    "SELECT count(*) FROM live_out WHERE produced_by_run_id = '{LIVE_VERSION}'"
                )
            ),
            "3",
            "{}: live rows untouched",
            engine.name
        );
        ns.drop().await;
    }
}
