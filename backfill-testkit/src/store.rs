//! Checks of the [`RunStore`] contract (backfill-core `store.rs`, clauses 1–11).

use std::time::Duration;

use backfill_core::context::ExecutionMode;
use backfill_core::ids::RunId;
use backfill_core::manifest::{InputRange, ManifestDigest, RunKind, RunManifest, StoredManifest};
use backfill_core::plan::{ChunkSpec, ResolvedPlan, SourcePlan, SourceState};
use backfill_core::sink::StagedArtifact;
use backfill_core::state::{RunState, Transition};
use backfill_core::store::{
    AcceptedPointer, ChunkOutcome, ChunkStatus, EvidenceRecord, RunFilter, RunRecord, RunStore,
};
use backfill_core::ErrorKind;
use chrono::{DateTime, TimeZone, Utc};
use futures::future::join_all;

use crate::conformance::{ensure, fail, finish, op, suite, unknown, CheckResult, StoreHarness};

suite!(StoreHarness, std::sync::Arc<dyn RunStore>, &dyn RunStore, |h, ns| h.build(ns), |b| b.as_ref();
    manifests_are_stored_once,
    runs_are_created_once,
    transitions_are_compare_and_set,
    concurrent_transitions_one_wins,
    plans_are_stored_once,
    claims_are_exclusive_and_ordered,
    leases_expire_and_are_fenced,
    claims_stay_within_the_limit,
    evidence_sequence_increases,
    accepted_pointer_is_compare_and_set,
    runs_are_listed_newest_first,
    artifacts_are_stored_with_the_chunk,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

fn manifest(run: &str, reason: &str) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Backfill, ExecutionMode::Backfill);
    m.reason = reason.into();
    m
}

fn record(run: &str, digest: ManifestDigest) -> RunRecord {
    RunRecord {
        run_id: run.into(),
        manifest_version: 1,
        manifest_digest: digest,
        target: "t".into(),
        mode: ExecutionMode::Backfill,
        requested_by: "testkit".into(),
        state: RunState::Approved,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn plan(run: &str, n: usize) -> ResolvedPlan {
    let chunks = (0..n)
        .map(|i| {
            let range = InputRange::Keys {
                from: format!("k{i:04}"),
                to_exclusive: format!("k{:04}", i + 1),
            };
            // Opaque source state, as a file list or offsets would be: persisted with the plan.
            let state = SourceState(serde_json::json!({"files": [format!("part-{i}.parquet")]}));
            ChunkSpec::new(range, i.to_string()).with_state(state)
        })
        .collect();
    ResolvedPlan::new(
        &run.into(),
        manifest(run, "plan").digest(),
        SourcePlan {
            snapshot: Some("s".into()),
            resolved_from: Some("main".into()),
            chunks,
        },
        t0(),
    )
}

fn transition(run: &str, from: RunState, to: RunState, by: &str) -> Transition {
    Transition {
        run_id: run.into(),
        from,
        to,
        by: by.into(),
        at: t0(),
        reason: format!("{from} to {to}"),
    }
}

fn is_conflict<T>(r: &backfill_core::Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::Conflict)
}

/// Clause 1: the same manifest again is a no-op, another digest under the same run conflicts, and an
/// approval can be added to a stored draft.
pub async fn manifests_are_stored_once(s: &dyn RunStore) -> CheckResult {
    const C: &str = "manifests_are_stored_once";
    const CLAUSE: &str =
        "put_manifest is idempotent for the same digest and a Conflict for another";
    let m = manifest("bf-m", "first");
    let draft = StoredManifest::new(&m, None);
    op(C, "put", s.put_manifest(&draft).await)?;
    op(C, "put again", s.put_manifest(&draft).await)?;
    let other = StoredManifest::new(&manifest("bf-m", "second"), None);
    ensure(
        is_conflict(&s.put_manifest(&other).await),
        C,
        CLAUSE,
        || "a different manifest under the same run was accepted".into(),
    )?;
    let stored = op(C, "get", s.manifest(&"bf-m".into()).await)?;
    ensure(stored.as_ref() == Some(&draft), C, CLAUSE, || {
        format!("stored {stored:?}, expected {draft:?}")
    })?;
    let with_approval = StoredManifest {
        approval: Some(backfill_core::manifest::Approval {
            digest: draft.digest.clone(),
            approved_by: "owner".into(),
            approved_at: t0(),
        }),
        ..draft.clone()
    };
    op(C, "put with approval", s.put_manifest(&with_approval).await)?;
    let stored = op(C, "get", s.manifest(&"bf-m".into()).await)?;
    ensure(
        stored.and_then(|m| m.approval).is_some(),
        C,
        "an approval is recorded for a stored draft",
        || "approval was not stored".into(),
    )
}

/// Clause 2: creating an existing run conflicts.
pub async fn runs_are_created_once(s: &dyn RunStore) -> CheckResult {
    const C: &str = "runs_are_created_once";
    let r = record("bf-r", manifest("bf-r", "x").digest());
    op(C, "create", s.create_run(&r).await)?;
    ensure(
        is_conflict(&s.create_run(&r).await),
        C,
        "create_run fails with Conflict when the run exists",
        || "created twice".into(),
    )?;
    let got = op(C, "get", s.run(&"bf-r".into()).await)?;
    ensure(
        got.as_ref() == Some(&r),
        C,
        "a run reads back as created",
        || format!("{got:?}"),
    )
}

/// Clause 3: a transition from the wrong state conflicts and changes nothing; transitions are recorded in order.
pub async fn transitions_are_compare_and_set(s: &dyn RunStore) -> CheckResult {
    const C: &str = "transitions_are_compare_and_set";
    const CLAUSE: &str = "transition succeeds only from the stored state and records it";
    op(
        C,
        "create",
        s.create_run(&record("bf-t", manifest("bf-t", "x").digest()))
            .await,
    )?;
    let wrong = transition("bf-t", RunState::Staged, RunState::Validated, "x");
    ensure(is_conflict(&s.transition(&wrong).await), C, CLAUSE, || {
        "a transition from the wrong state succeeded".into()
    })?;
    let first = transition("bf-t", RunState::Approved, RunState::Running, "w1");
    let second = transition("bf-t", RunState::Running, RunState::Staged, "w2");
    op(C, "transition", s.transition(&first).await)?;
    op(C, "transition", s.transition(&second).await)?;
    let state = op(C, "get", s.run(&"bf-t".into()).await)?.map(|r| r.state);
    ensure(state == Some(RunState::Staged), C, CLAUSE, || {
        format!("state is {state:?}")
    })?;
    let ts = op(C, "transitions", s.transitions(&"bf-t".into()).await)?;
    ensure(ts == vec![first, second], C, CLAUSE, || {
        format!("recorded {ts:?}")
    })
}

/// Clause 3, under contention: of many concurrent identical transitions exactly one wins.
pub async fn concurrent_transitions_one_wins(s: &dyn RunStore) -> CheckResult {
    const C: &str = "concurrent_transitions_one_wins";
    op(
        C,
        "create",
        s.create_run(&record("bf-race", manifest("bf-race", "x").digest()))
            .await,
    )?;
    let ts: Vec<_> = (0..8)
        .map(|i| {
            transition(
                "bf-race",
                RunState::Approved,
                RunState::Running,
                &format!("w{i}"),
            )
        })
        .collect();
    let results = join_all(ts.iter().map(|t| s.transition(t))).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results.iter().filter(|r| is_conflict(r)).count();
    ensure(
        wins == 1 && conflicts == 7,
        C,
        "transition is atomic: exactly one concurrent compare-and-set wins",
        || format!("{wins} won, {conflicts} conflicted: {results:?}"),
    )?;
    let recorded = op(C, "transitions", s.transitions(&"bf-race".into()).await)?.len();
    ensure(
        recorded == 1,
        C,
        "only the winning transition is recorded",
        || format!("{recorded} recorded"),
    )
}

/// Clause 4: a plan is stored once (with each chunk's source state) with one pending ledger row per
/// chunk.
pub async fn plans_are_stored_once(s: &dyn RunStore) -> CheckResult {
    const C: &str = "plans_are_stored_once";
    const CLAUSE: &str =
        "put_plan stores the plan and pending chunks; same work is a no-op, other work a Conflict";
    let p = plan("bf-p", 5);
    op(C, "put", s.put_plan(&p).await)?;
    op(C, "put again", s.put_plan(&p).await)?;
    ensure(
        is_conflict(&s.put_plan(&plan("bf-p", 6)).await),
        C,
        CLAUSE,
        || "a different plan replaced the first".into(),
    )?;
    let got = op(C, "get", s.plan(&"bf-p".into()).await)?;
    ensure(
        got.as_ref().is_some_and(|g| g.same_work(&p)),
        C,
        CLAUSE,
        || format!("{got:?}"),
    )?;
    ensure(
        got.as_ref()
            .is_some_and(|g| g.chunks == p.chunks && g.resolved_from == p.resolved_from),
        C,
        "the plan reads back with every chunk's source state and the ref it was resolved from",
        || format!("stored {got:?}, expected {p:?}"),
    )?;
    let chunks = op(C, "chunks", s.chunks(&"bf-p".into()).await)?;
    ensure(
        chunks.len() == 5
            && chunks.iter().enumerate().all(|(i, c)| {
                c.index as usize == i && c.status == ChunkStatus::Pending && c.attempts == 0
            }),
        C,
        CLAUSE,
        || format!("{chunks:?}"),
    )
}

/// Clause 5: concurrent claims never share a chunk, and claims go in index order.
pub async fn claims_are_exclusive_and_ordered(s: &dyn RunStore) -> CheckResult {
    const C: &str = "claims_are_exclusive_and_ordered";
    op(C, "plan", s.put_plan(&plan("bf-c", 12)).await)?;
    let run = RunId::from("bf-c");
    let first = op(
        C,
        "claim",
        s.claim_chunk(&run, "first", t0(), Duration::from_secs(60))
            .await,
    )?;
    ensure(
        first
            .as_ref()
            .is_some_and(|l| l.index == 0 && l.attempt == 1),
        C,
        "the lowest-index claimable chunk is leased first",
        || format!("{first:?}"),
    )?;
    let workers: Vec<String> = (0..16).map(|i| format!("w{i}")).collect();
    let claims = join_all(
        workers
            .iter()
            .map(|w| s.claim_chunk(&run, w, t0(), Duration::from_secs(60))),
    )
    .await;
    let mut got = Vec::new();
    for c in claims {
        if let Some(l) = op(C, "claim", c)? {
            got.push(l.chunk_id);
        }
    }
    got.sort();
    let n = got.len();
    got.dedup();
    ensure(
        n == 11 && got.len() == 11,
        C,
        "two concurrent claims never get the same chunk",
        || format!("{n} claims, {} distinct", got.len()),
    )?;
    let none = op(
        C,
        "claim",
        s.claim_chunk(&run, "late", t0(), Duration::from_secs(60))
            .await,
    )?;
    ensure(
        none.is_none(),
        C,
        "claim_chunk returns None when nothing is claimable",
        || format!("{none:?}"),
    )
}

/// Clauses 5 and 6: expired leases are reclaimed, a worker takes its own lease back, stale leases are
/// fenced, done chunks are never claimed again.
pub async fn leases_expire_and_are_fenced(s: &dyn RunStore) -> CheckResult {
    const C: &str = "leases_expire_and_are_fenced";
    const FENCE: &str = "heartbeat, complete and fail succeed only for the current lease";
    op(C, "plan", s.put_plan(&plan("bf-l", 2)).await)?;
    let run = RunId::from("bf-l");
    let lease = Duration::from_secs(30);
    let a = op(C, "claim", s.claim_chunk(&run, "a", t0(), lease).await)?
        .ok_or_else(|| fail(C, "claim", "nothing to claim"))?;
    let b = op(C, "claim", s.claim_chunk(&run, "b", t0(), lease).await)?
        .ok_or_else(|| fail(C, "claim", "nothing to claim"))?;
    let early = t0() + chrono::Duration::seconds(29);
    let none = op(C, "claim", s.claim_chunk(&run, "c", early, lease).await)?;
    ensure(
        none.is_none(),
        C,
        "a live lease is not claimed by another worker",
        || format!("{none:?}"),
    )?;
    let again = op(C, "claim", s.claim_chunk(&run, "a", early, lease).await)?;
    ensure(
        again
            .as_ref()
            .is_some_and(|l| l.chunk_id == a.chunk_id && l.attempt == 2),
        C,
        "the same worker takes its own lease back",
        || format!("{again:?}"),
    )?;
    let a2 = again.ok_or_else(|| fail(C, "claim", "no lease"))?;
    let late = t0() + chrono::Duration::seconds(61);
    let c = op(C, "claim", s.claim_chunk(&run, "c", late, lease).await)?;
    ensure(
        c.as_ref()
            .is_some_and(|l| l.chunk_id == a.chunk_id && l.attempt == 3),
        C,
        "an expired lease is reclaimed",
        || format!("{c:?}"),
    )?;
    let c = c.ok_or_else(|| fail(C, "claim", "no lease"))?;
    let outcome = ChunkOutcome::default();
    ensure(
        is_conflict(&s.heartbeat(&a2, late, lease).await),
        C,
        FENCE,
        || "stale heartbeat accepted".into(),
    )?;
    ensure(
        is_conflict(&s.complete_chunk(&a2, &outcome, late).await),
        C,
        FENCE,
        || "stale completion accepted".into(),
    )?;
    ensure(
        is_conflict(&s.fail_chunk(&a2, "x", late).await),
        C,
        FENCE,
        || "stale failure accepted".into(),
    )?;
    op(C, "complete", s.complete_chunk(&c, &outcome, late).await)?;
    // b expired too; fail it, reclaim it, finish it.
    op(
        C,
        "heartbeat",
        s.heartbeat(&b, early, lease).await.map(|_| ()),
    )?;
    op(C, "fail", s.fail_chunk(&b, "boom", early).await)?;
    let b2 = op(C, "claim", s.claim_chunk(&run, "d", early, lease).await)?
        .ok_or_else(|| fail(C, "failed chunks are claimable", "not claimed"))?;
    op(C, "complete", s.complete_chunk(&b2, &outcome, early).await)?;
    let none = op(
        C,
        "claim",
        s.claim_chunk(&run, "e", late + chrono::Duration::days(1), lease)
            .await,
    )?;
    ensure(
        none.is_none(),
        C,
        "Done chunks are never claimed again",
        || format!("{none:?}"),
    )
}

/// Clause 11: `claim_chunk_within` leases nothing while `max_leased` chunks of the run hold live
/// leases (the claimer's own included), never takes an unexpired lease back, not even the
/// claimer's own, a lease given back with `fail_chunk` frees its place, and so do expired ones.
pub async fn claims_stay_within_the_limit(s: &dyn RunStore) -> CheckResult {
    const C: &str = "claims_stay_within_the_limit";
    op(C, "plan", s.put_plan(&plan("bf-w", 4)).await)?;
    let run = RunId::from("bf-w");
    let lease = Duration::from_secs(30);
    let within = |w: &'static str, at: DateTime<Utc>| s.claim_chunk_within(&run, w, at, lease, 2);
    let mut held = Vec::new();
    for w in ["a", "b"] {
        let got = op(C, "claim", within(w, t0()).await)?;
        ensure(
            got.is_some(),
            C,
            "claims below the limit are granted",
            || format!("{w}: {got:?}"),
        )?;
        held.extend(got);
    }
    let soon = t0() + chrono::Duration::seconds(5);
    for w in ["c", "a"] {
        let none = op(C, "claim", within(w, soon).await)?;
        ensure(
            none.is_none(),
            C,
            "nothing is leased while the limit's live leases are held, the claimer's own included",
            || format!("{w}: {none:?}"),
        )?;
    }
    op(
        C,
        "give back",
        s.fail_chunk(&held[0], "restarted", soon).await,
    )?;
    let freed = op(C, "claim", within("c", soon).await)?;
    ensure(
        freed
            .as_ref()
            .is_some_and(|l| l.index == 0 && l.attempt == 2),
        C,
        "a lease given back frees its place",
        || format!("{freed:?}"),
    )?;
    let late = t0() + chrono::Duration::seconds(61);
    let mut got = Vec::new();
    for w in ["d", "e", "f"] {
        got.push(op(C, "claim", within(w, late).await)?.map(|l| l.index));
    }
    ensure(
        got == [Some(0), Some(1), None],
        C,
        "expired leases free their places, and the limit holds again",
        || format!("{got:?}"),
    )
}

/// Clause 7: concurrent appends get distinct, increasing sequence numbers; records read back typed,
/// as written.
pub async fn evidence_sequence_increases(s: &dyn RunStore) -> CheckResult {
    const C: &str = "evidence_sequence_increases";
    let run = RunId::from("bf-e");
    let records: Vec<EvidenceRecord> = (0..10)
        .map(|i| EvidenceRecord::Note {
            name: format!("note-{i}"),
            detail: serde_json::json!({"i": i, "text": "ünï 'quoted'"}),
        })
        .collect();
    let results = join_all(
        records
            .iter()
            .map(|record| s.append_evidence(&run, t0(), "w", record)),
    )
    .await;
    let mut seqs = Vec::new();
    for r in results {
        seqs.push(op(C, "append", r)?);
    }
    seqs.sort_unstable();
    ensure(
        seqs == (1..=10).collect::<Vec<u64>>(),
        C,
        "append_evidence assigns increasing sequence numbers per run",
        || format!("{seqs:?}"),
    )?;
    let ev = op(C, "evidence", s.evidence(&run).await)?;
    ensure(
        ev.len() == 10 && ev.windows(2).all(|w| w[0].seq < w[1].seq),
        C,
        "evidence reads back in order",
        || format!("{ev:?}"),
    )?;
    let mut got: Vec<&EvidenceRecord> = ev.iter().map(|e| &e.record).collect();
    got.sort_by_key(|r| format!("{r:?}"));
    let mut want: Vec<&EvidenceRecord> = records.iter().collect();
    want.sort_by_key(|r| format!("{r:?}"));
    ensure(
        got == want,
        C,
        "evidence is never changed: records read back as appended",
        || format!("read {got:?}, appended {want:?}"),
    )
}

/// Clause 8: the accepted pointer moves only from the expected run, and one of several racers wins.
pub async fn accepted_pointer_is_compare_and_set(s: &dyn RunStore) -> CheckResult {
    const C: &str = "accepted_pointer_is_compare_and_set";
    const CLAUSE: &str =
        "swap_accepted sets the pointer only if the current run is the expected one";
    let p = |run: &str| AcceptedPointer {
        target: "t".into(),
        run_id: run.into(),
        accepted_at: t0(),
        accepted_by: "owner".into(),
    };
    let pointers: Vec<_> = (0..6).map(|i| p(&format!("r{i}"))).collect();
    let results = join_all(pointers.iter().map(|ptr| s.swap_accepted(None, ptr))).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    ensure(wins == 1, C, CLAUSE, || {
        format!("{wins} racers set the first pointer: {results:?}")
    })?;
    let current =
        op(C, "accepted", s.accepted("t").await)?.ok_or_else(|| fail(C, CLAUSE, "no pointer"))?;
    ensure(
        is_conflict(&s.swap_accepted(Some(&"nobody".into()), &p("x")).await),
        C,
        CLAUSE,
        || "moved from the wrong run".into(),
    )?;
    op(
        C,
        "swap",
        s.swap_accepted(Some(&current.run_id), &p("next")).await,
    )?;
    let now = op(C, "accepted", s.accepted("t").await)?.map(|a| a.run_id);
    ensure(now == Some("next".into()), C, CLAUSE, || format!("{now:?}"))
}

/// Clause 9: `runs` lists matching runs newest first (by creation, then run id) and honours the
/// filter's state, target and limit.
pub async fn runs_are_listed_newest_first(s: &dyn RunStore) -> CheckResult {
    const C: &str = "runs_are_listed_newest_first";
    const CLAUSE: &str = "runs lists runs matching the filter, newest first";
    let runs = [
        ("bf-l1", 0, "t"),
        ("bf-l2", 2, "t"),
        ("bf-l3", 1, "u"),
        ("bf-l4", 2, "t"),
    ];
    for (run, minutes, target) in runs {
        let at = t0() + chrono::Duration::minutes(minutes);
        let r = RunRecord {
            target: target.into(),
            created_at: at,
            updated_at: at,
            ..record(run, manifest(run, "x").digest())
        };
        op(C, "create", s.create_run(&r).await)?;
    }
    op(
        C,
        "transition",
        s.transition(&transition(
            "bf-l2",
            RunState::Approved,
            RunState::Running,
            "w",
        ))
        .await,
    )?;
    let ids = |v: Vec<RunRecord>| {
        v.into_iter()
            .map(|r| r.run_id.to_string())
            .collect::<Vec<_>>()
    };
    let all = ids(op(C, "runs", s.runs(&RunFilter::all()).await)?);
    ensure(
        all == ["bf-l4", "bf-l2", "bf-l3", "bf-l1"],
        C,
        CLAUSE,
        || format!("listed {all:?}"),
    )?;
    let of_t = ids(op(
        C,
        "runs",
        s.runs(&RunFilter::all().target("t").limit(2)).await,
    )?);
    ensure(of_t == ["bf-l4", "bf-l2"], C, CLAUSE, || {
        format!("target t, limit 2: listed {of_t:?}")
    })?;
    let running = ids(op(
        C,
        "runs",
        s.runs(&RunFilter::all().state(RunState::Running)).await,
    )?);
    ensure(running == ["bf-l2"], C, CLAUSE, || {
        format!("state running: listed {running:?}")
    })
}

/// Clause 10: `complete_chunk` stores the outcome's artifact (and counts and digests) with the ledger
/// row, and `chunks` returns it.
pub async fn artifacts_are_stored_with_the_chunk(s: &dyn RunStore) -> CheckResult {
    const C: &str = "artifacts_are_stored_with_the_chunk";
    const CLAUSE: &str =
        "complete_chunk stores the outcome's artifact and digest format with the ledger row";
    op(C, "plan", s.put_plan(&plan("bf-a", 2)).await)?;
    let run = RunId::from("bf-a");
    let lease = op(
        C,
        "claim",
        s.claim_chunk(&run, "w", t0(), Duration::from_secs(60))
            .await,
    )?
    .ok_or_else(|| fail(C, "claim", "nothing to claim"))?;
    let rows = crate::sink::rows(12, 0);
    let outcome = ChunkOutcome {
        input_count: 12,
        output_count: 12,
        digests: backfill_core::digest::PartitionDigests::of_rows(&rows),
        artifact: StagedArtifact(serde_json::json!({
            "table": "bfs_testkit_target_bf_a",
            "chunk": lease.chunk_id.as_str(),
            "attempt": lease.attempt,
            "files": ["a b.parquet", "ünï.parquet"],
        })),
        // Not this release's format, so a store that drops the field is caught.
        digest_format: backfill_core::digest::DIGEST_FORMAT_VERSION + 5,
    };
    op(
        C,
        "complete",
        s.complete_chunk(&lease, &outcome, t0()).await,
    )?;
    let chunks = op(C, "chunks", s.chunks(&run).await)?;
    let got = chunks.iter().find(|c| c.chunk_id == lease.chunk_id);
    ensure(
        got.is_some_and(|c| {
            c.status == ChunkStatus::Done
                && c.artifact == outcome.artifact
                && c.digest_format == outcome.digest_format
                && c.digests == outcome.digests
                && c.output_count == 12
                && c.input_count == 12
        }),
        C,
        CLAUSE,
        || format!("ledger row {got:?}, completed with {outcome:?}"),
    )
}
