//! A live writer running beside a backfill on the same partitions, on PostgreSQL (seed §12): the
//! freeze and the source-version merge, each checked with psql.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;
use crate::live;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::live::{LiveWrites, TargetWindows};
use backfill_core::prelude::*;
use backfill_sql::{SqlStore, SqlWindows};
use live::*;

/// What the live writer did under a freeze.
#[derive(Debug, Default)]
struct LiveLog {
    /// Writes committed, in commit order: (id, partition).
    committed: Vec<(String, String)>,
    /// Writes refused by the freeze: (partition, the run named).
    refused: Vec<(String, String)>,
}

/// One live write under the window guard, in its own transaction: admitted and inserted together,
/// or refused and rolled back.
async fn live_insert(pg: &sqlx::PgPool, id: &str, part: &str, n: i64) -> backfill_core::Result<()> {
    let mut conn = backfill_sql::TxConn::acquire(pg).await.unwrap();
    let mut tx = conn.begin(None).await.unwrap();
    SqlWindows::admit_postgres(
        &mut tx,
        "live_out",
        &[part.to_owned()],
        "live-1",
        chrono::Utc::now(),
    )
    .await?;
    sqlx::query(&format!("INSERT INTO live_out (id, part, n, src_version, {LINEAGE_COLUMNS}) VALUES ($1, $2, $3, 0, {LIVE_LINEAGE})"))
        .bind(id)
        .bind(part)
        .bind(n)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Ok(())
}

/// Writes live rows round-robin over `p0`..`p5` until `stop`; a refused write is kept and tried
/// again (never dropped), so when it ends every write it made has committed.
fn spawn_live_writer(
    pg: sqlx::PgPool,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<LiveLog>>,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let mut pending: Vec<(String, String, i64)> = Vec::new();
        let mut i = 0i64;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            if !stopping {
                pending.push((format!("live-{i}"), format!("p{}", i % 6), i));
                i += 1;
            }
            let mut still = Vec::new();
            for (id, part, n) in pending.drain(..) {
                match live_insert(&pg, &id, &part, n).await {
                    Ok(()) => log.lock().unwrap().committed.push((id, part)),
                    Err(Error::WindowFrozen { run_id, .. }) => {
                        log.lock()
                            .unwrap()
                            .refused
                            .push((part.clone(), run_id.to_string()));
                        still.push((id, part, n));
                    }
                    Err(e) => panic!("live write failed: {e}"),
                }
            }
            pending = still;
            if stopping && pending.is_empty() {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(if stopping { 50 } else { 5 })).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_freeze_defers_live_writes_into_its_window_and_loses_none() {
    let Some(engine) = common::engine("postgres") else {
        return;
    };
    let ns = engine.namespace("live_freeze");
    let pool = ns.pool_with(8).await;
    let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
    create_target(&pool, false).await;
    let bf = executor(&pool, store.clone()).await;
    let approved = manifest("bf-freeze", LiveWrites::Freeze, Mutation::ReplacePartitions);
    bf.control().submit(&approved).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(LiveLog::default()));
    let live = spawn_live_writer(pg(&pool), stop.clone(), log.clone());
    // The live writer is under way before the run starts.
    while log.lock().unwrap().committed.len() < 12 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = bf.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Validated);
    let windows = store.windows().windows("live_out").await.unwrap();
    for w in &windows {
        let frozen = WINDOW.contains(&w.partition.as_str());
        assert_eq!(w.frozen_by.is_some(), frozen, "{w:?}");
    }
    bf.control()
        .publish(approved.run_id(), "bob")
        .await
        .unwrap();
    // Published: thawed, and the deferred writes go in.
    let windows = store.windows().windows("live_out").await.unwrap();
    assert!(windows.iter().all(|w| w.frozen_by.is_none()), "{windows:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let written = live.await.unwrap();

    let evidence = store.evidence(approved.run_id()).await.unwrap();
    let log = std::mem::take(&mut *log.lock().unwrap());
    let watermark = evidence
        .iter()
        .find_map(|e| match &e.record {
            EvidenceRecord::WindowFrozen { watermark, .. } => Some(watermark.clone()),
            _ => None,
        })
        .expect("the freeze is evidence");
    assert!(evidence
        .iter()
        .any(|e| matches!(e.record, EvidenceRecord::WindowThawed { .. })));
    // Refusals name the run, and only ever a window partition.
    assert!(
        !log.refused.is_empty(),
        "the live writer never met the freeze"
    );
    for (part, run) in &log.refused {
        assert!(
            WINDOW.contains(&part.as_str()),
            "{part} refused outside the window"
        );
        assert_eq!(run, "bf-freeze");
    }
    // Classify each committed live write: in a window partition, the first `watermark[p]` commits
    // came before the freeze (the restatement replaced them), the rest after the thaw.
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    let mut kept = Vec::new();
    let mut replaced = Vec::new();
    for (id, part) in &log.committed {
        let n = seen.entry(part.as_str()).or_default();
        *n += 1;
        match watermark.get(part.as_str()) {
            Some(&w) if *n <= w => replaced.push(id.clone()),
            _ => kept.push(id.clone()),
        }
    }
    assert!(!replaced.is_empty(), "no live write before the freeze");
    // Nothing the live writer wrote was dropped: every write it made committed once, the refused
    // ones after the thaw.
    let mut ids: Vec<&str> = log.committed.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), log.committed.len());
    assert_eq!(ids.len() as i64, written);

    // psql: the table holds exactly the restatement's rows plus every live write not replaced.
    let live_ids = cli(
        &ns,
        "SELECT string_agg(id, ',' ORDER BY id COLLATE \"C\") FROM live_out WHERE id LIKE 'live-%'",
    );
    let mut want = kept.clone();
    want.sort();
    assert_eq!(live_ids, want.join(","), "live rows after the run");
    let restated = cli(
        &ns,
        "SELECT count(*), sum(n) FROM live_out WHERE id LIKE 'k%'",
    );
    assert_eq!(
        restated,
        format!("{KEYS}|{}", (0..KEYS).map(|i| i * 10).sum::<i64>())
    );
    let dups = cli(
        &ns,
        "SELECT count(*) FROM (SELECT id FROM live_out GROUP BY id HAVING count(*) > 1) d",
    );
    assert_eq!(dups, "0");
    ns.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publication_refuses_a_window_written_after_an_early_thaw() {
    let Some(engine) = common::engine("postgres") else {
        return;
    };
    let ns = engine.namespace("live_thawed");
    let pool = ns.pool_with(8).await;
    let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
    create_target(&pool, false).await;
    live_insert(&pg(&pool), "live-old", "p1", 1).await.unwrap();
    let bf = executor(&pool, store.clone()).await;
    let approved = manifest("bf-thawed", LiveWrites::Freeze, Mutation::ReplacePartitions);
    bf.control().submit(&approved).await.unwrap();
    let report = bf.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Validated);
    // Frozen: a live write is refused, naming the run.
    let refused = live_insert(&pg(&pool), "live-early", "p1", 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::WindowFrozen { run_id, partition, .. } if run_id.as_str() == "bf-thawed" && partition == "p1"),
        "{refused}"
    );
    // An operator releases the window early, and the live writer writes into it.
    store
        .windows()
        .thaw(approved.run_id(), "live_out")
        .await
        .unwrap();
    live_insert(&pg(&pool), "live-late", "p1", 3).await.unwrap();
    let before = cli(
        &ns,
        "SELECT string_agg(id, ',' ORDER BY id COLLATE \"C\") FROM live_out",
    );
    let err = bf
        .control()
        .publish(approved.run_id(), "bob")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::PublishRefused { .. }), "{msg}");
    assert!(
        msg.contains("partition p1") && msg.contains("live-1"),
        "{msg}"
    );
    assert_eq!(
        cli(
            &ns,
            "SELECT string_agg(id, ',' ORDER BY id COLLATE \"C\") FROM live_out"
        ),
        before
    );
    assert_eq!(
        bf.control().run(approved.run_id()).await.unwrap().state,
        RunState::Validated
    );
    ns.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_version_merge_keeps_the_newest_source_version_whoever_commits_last() {
    let Some(engine) = common::engine("postgres") else {
        return;
    };
    let ns = engine.namespace("live_merge");
    let pool = ns.pool_with(8).await;
    let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
    create_target(&pool, true).await;
    let bf = executor(&pool, store.clone()).await;
    let approved = manifest(
        "bf-merge",
        LiveWrites::SourceVersionMerge,
        Mutation::MergeByKey {
            key: vec!["id".into()],
            version_column: "src_version".into(),
            delete_column: None,
        },
    );
    bf.control().submit(&approved).await.unwrap();

    // The live writer upserts every key with its own source version, under the same guard as the
    // merge (a row is replaced only by one at least as new), pass after pass, before, during and
    // after the backfill's publication.
    let pg = pg(&pool);
    let published = Arc::new(AtomicBool::new(false));
    let live = {
        let published = published.clone();
        tokio::spawn(async move {
            let upsert = format!(
                "INSERT INTO live_out AS t (id, part, n, src_version, {LINEAGE_COLUMNS}) VALUES ($1, $2, $3, $4, {LIVE_LINEAGE})
                 ON CONFLICT (id) DO UPDATE SET part = excluded.part, n = excluded.n, src_version = excluded.src_version,
                   produced_by_run_id = excluded.produced_by_run_id, transform_version = excluded.transform_version
                 WHERE t.src_version <= excluded.src_version"
            );
            let mut passes_after = 0;
            let mut pass = 0i64;
            while passes_after < 2 {
                let after = published.load(Ordering::SeqCst);
                for k in 0..KEYS {
                    // A different order each pass.
                    let i = (k * 37 + pass * 11) % KEYS;
                    sqlx::query(&upsert)
                        .bind(format!("k{i}"))
                        .bind(format!("p{}", i % 4))
                        .bind(-i)
                        .bind(live_version(i))
                        .execute(&pg)
                        .await
                        .unwrap();
                }
                pass += 1;
                if after {
                    passes_after += 1;
                }
            }
            pass
        })
    };
    let report = bf.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Validated);
    bf.control()
        .publish(approved.run_id(), "bob")
        .await
        .unwrap();
    published.store(true, Ordering::SeqCst);
    let passes = live.await.unwrap();
    assert!(
        passes >= 3,
        "the live writer wrote before and after the publication"
    );

    // psql: each key holds the row of the newer source version, never the later commit's.
    let rows = cli(
        &ns,
        "SELECT string_agg(id || ':' || n || '@' || src_version, ',') FROM live_out",
    );
    let mut rows: Vec<&str> = rows.split(',').collect();
    rows.sort_unstable();
    let mut want: Vec<String> = (0..KEYS)
        .map(|i| {
            let (n, v) = if backfill_version(i) > live_version(i) {
                (i * 10, backfill_version(i))
            } else {
                (-i, live_version(i))
            };
            format!("k{i}:{n}@{v}")
        })
        .collect();
    want.sort();
    assert_eq!(rows, want);
    let backfill_won = (0..KEYS)
        .filter(|&i| backfill_version(i) > live_version(i))
        .count();
    assert!(
        backfill_won > 0 && backfill_won < KEYS as usize,
        "both sides win some keys"
    );
    ns.drop().await;
}
