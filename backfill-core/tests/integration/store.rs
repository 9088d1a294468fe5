//! The memory run store's leases and compare-and-set operations.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use backfill_core::memory::MemoryStore;
use backfill_core::plan::{ChunkSpec, ResolvedPlan, SourcePlan};
use backfill_core::prelude::*;
use backfill_core::store::{AcceptedPointer, ChunkOutcome, ChunkStatus};
use common::*;

fn plan(run: &str, n: usize) -> ResolvedPlan {
    let chunks = (0..n)
        .map(|i| {
            ChunkSpec::new(
                InputRange::Keys {
                    from: format!("k{i:03}"),
                    to_exclusive: format!("k{:03}", i + 1),
                },
                format!("{i}"),
            )
        })
        .collect();
    ResolvedPlan::new(
        &run.into(),
        manifest(run).digest(),
        SourcePlan {
            snapshot: None,
            resolved_from: None,
            chunks,
        },
        at(),
    )
}

#[tokio::test]
async fn leases_expire_and_are_fenced_by_attempt() {
    let store = MemoryStore::new();
    let run = RunId::from("bf-300");
    store.put_plan(&plan("bf-300", 2)).await.unwrap();
    // Same plan again is a no-op; a different plan conflicts.
    store.put_plan(&plan("bf-300", 2)).await.unwrap();
    assert_eq!(
        store.put_plan(&plan("bf-300", 3)).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );

    let lease = Duration::from_secs(30);
    let t0 = at();
    let a = store
        .claim_chunk(&run, "w-a", t0, lease)
        .await
        .unwrap()
        .unwrap();
    let b = store
        .claim_chunk(&run, "w-b", t0, lease)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(a.chunk_id, b.chunk_id);
    assert!(store
        .claim_chunk(&run, "w-c", t0, lease)
        .await
        .unwrap()
        .is_none());

    // w-a dies. Before expiry nobody else gets its chunk; after expiry w-c does.
    let t1 = t0 + chrono::Duration::seconds(29);
    assert!(store
        .claim_chunk(&run, "w-c", t1, lease)
        .await
        .unwrap()
        .is_none());
    let t2 = t0 + chrono::Duration::seconds(31);
    let c = store
        .claim_chunk(&run, "w-c", t2, lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.chunk_id, a.chunk_id);
    assert_eq!(c.attempt, 2);

    // The stale holder can neither heartbeat nor complete.
    assert_eq!(
        store.heartbeat(&a, t2, lease).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let outcome = ChunkOutcome::default();
    assert_eq!(
        store
            .complete_chunk(&a, &outcome, t2)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    store.complete_chunk(&c, &outcome, t2).await.unwrap();
    // Heartbeats keep a live lease.
    let b2 = store.heartbeat(&b, t2, lease).await.unwrap();
    assert!(b2.expires_at > b.expires_at);
    assert!(store
        .claim_chunk(&run, "w-c", t0 + chrono::Duration::seconds(45), lease)
        .await
        .unwrap()
        .is_none());
    store.complete_chunk(&b2, &outcome, t2).await.unwrap();
    let chunks = store.chunks(&run).await.unwrap();
    assert!(chunks.iter().all(|c| c.status == ChunkStatus::Done));
    // Done chunks are never claimed again.
    assert!(store
        .claim_chunk(&run, "w-d", t2 + chrono::Duration::days(1), lease)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn concurrent_claims_never_share_a_chunk() {
    let store = Arc::new(MemoryStore::new());
    let run = RunId::from("bf-301");
    store.put_plan(&plan("bf-301", 50)).await.unwrap();
    let mut handles = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        let run = run.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(l) = store
                .claim_chunk(&run, &format!("w{w}"), at(), Duration::from_secs(60))
                .await
                .unwrap()
            {
                store
                    .complete_chunk(&l, &ChunkOutcome::default(), at())
                    .await
                    .unwrap();
                mine.push(l.chunk_id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (50, 50));
}

#[tokio::test]
async fn transitions_and_pointer_are_compare_and_set() {
    let store = MemoryStore::new();
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let approved = approve(manifest("bf-302"));
    runner.control().submit(&approved).await.unwrap();
    let t = backfill_core::state::Transition {
        run_id: "bf-302".into(),
        from: RunState::Draft,
        to: RunState::Approved,
        by: "x".into(),
        at: at(),
        reason: "stale".into(),
    };
    // The run is already Approved: a transition from Draft loses.
    assert_eq!(
        parts.store.transition(&t).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );

    let p = |run: &str| AcceptedPointer {
        target: "t".into(),
        run_id: run.into(),
        accepted_at: at(),
        accepted_by: "o".into(),
    };
    store.swap_accepted(None, &p("r1")).await.unwrap();
    assert_eq!(
        store
            .swap_accepted(None, &p("r2"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    store
        .swap_accepted(Some(&"r1".into()), &p("r2"))
        .await
        .unwrap();
    assert_eq!(
        store.accepted("t").await.unwrap().unwrap().run_id.as_str(),
        "r2"
    );
}

#[tokio::test]
async fn two_workers_share_a_run_and_finish_each_chunk_once() {
    let parts = Parts::new();
    let mut m = manifest("bf-303");
    // A pause between windows lets the two workers interleave on one test thread.
    m.safety.limits.pause_between_windows_ms = 2;
    let approved = approve(m);
    let src = Arc::new(source().chunk_by(backfill_core::memory::ChunkBy::Days(5)));
    let a = parts
        .runner(src.clone(), Scale::default())
        .options(RunnerOptions::worker("host-a"))
        .build();
    let b = parts
        .runner(src.clone(), Scale::default())
        .options(RunnerOptions::worker("host-b"))
        .build();
    a.control().submit(&approved).await.unwrap();
    // Both processes start the same run; only one wins each state transition.
    let (ra, rb) = tokio::join!(a.run(approved.run_id()), b.run(approved.run_id()));
    // Both processes end at the same published state, whichever did which step.
    assert_eq!(ra.unwrap().state, RunState::Published);
    assert_eq!(rb.unwrap().state, RunState::Published);
    let chunks = parts.store.chunks(approved.run_id()).await.unwrap();
    assert!(chunks
        .iter()
        .all(|c| c.status == ChunkStatus::Done && c.attempts == 1));
    let log = src.read_log();
    assert_eq!(log.len(), chunks.len(), "a chunk was read twice");
    let workers: std::collections::BTreeSet<_> =
        chunks.iter().filter_map(|c| c.worker.clone()).collect();
    assert_eq!(
        workers.len(),
        2,
        "both processes should have done chunks: {workers:?}"
    );
}
