//! What the SQL run store adds to the testkit's store suite, on every engine: run listing filtered in
//! SQL, typed evidence with its kind column, corrupt evidence refused as corrupt.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use backfill_core::context::ExecutionMode;
use backfill_core::ids::RunId;
use backfill_core::manifest::ManifestDigest;
use backfill_core::state::RunState;
use backfill_core::store::{EvidenceKind, EvidenceRecord, RunFilter, RunRecord, RunStore};
use backfill_core::Error;
use backfill_sql::{SqlPool, SqlStore};
use chrono::{DateTime, TimeZone, Utc};

fn at(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, h, 0, 0).unwrap()
}

fn run(id: &str, target: &str, by: &str, state: RunState, h: u32) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        manifest_version: 1,
        manifest_digest: ManifestDigest::of_bytes(id.as_bytes()),
        target: target.into(),
        mode: ExecutionMode::Backfill,
        requested_by: by.into(),
        state,
        created_at: at(h),
        updated_at: at(h),
    }
}

async fn exec(pool: &SqlPool, sql: &str) {
    let sql = pool.dialect().sql(sql).into_owned();
    match pool {
        SqlPool::Postgres(p) => drop(sqlx::query(&sql).execute(p).await.unwrap()),
        SqlPool::MySql(p) => drop(sqlx::query(&sql).execute(p).await.unwrap()),
        SqlPool::Sqlite(p) => drop(sqlx::query(&sql).execute(p).await.unwrap()),
    }
}

fn ids(runs: &[RunRecord]) -> Vec<&str> {
    runs.iter().map(|r| r.run_id.as_str()).collect()
}

#[tokio::test]
async fn runs_are_filtered_newest_first() {
    for engine in common::engines() {
        let ns = engine.namespace("store_runs");
        let store = SqlStore::new(ns.pool().await).await.unwrap();
        for r in [
            run("bf-a", "sla", "alice", RunState::Published, 1),
            run("bf-b", "sla", "bob", RunState::Failed, 2),
            run("bf-c", "fx", "alice", RunState::Running, 3),
            run("bf-d", "sla", "alice", RunState::Running, 3),
        ] {
            store.create_run(&r).await.unwrap();
        }
        let all = store.runs(&RunFilter::all()).await.unwrap();
        assert_eq!(
            ids(&all),
            ["bf-d", "bf-c", "bf-b", "bf-a"],
            "{}",
            engine.name
        );
        assert_eq!(all[3].requested_by, "alice");
        let q = |f: RunFilter| {
            let store = &store;
            async move { store.runs(&f).await.unwrap() }
        };
        assert_eq!(
            ids(&q(RunFilter::all().target("sla")).await),
            ["bf-d", "bf-b", "bf-a"]
        );
        assert_eq!(
            ids(&q(RunFilter::all().requested_by("alice").target("sla")).await),
            ["bf-d", "bf-a"]
        );
        assert_eq!(
            ids(&q(RunFilter::all()
                .state(RunState::Running)
                .state(RunState::Failed))
            .await),
            ["bf-d", "bf-c", "bf-b"]
        );
        assert_eq!(
            ids(&q(RunFilter::all().created_after(at(2))).await),
            ["bf-d", "bf-c", "bf-b"]
        );
        assert_eq!(ids(&q(RunFilter::all().limit(2)).await), ["bf-d", "bf-c"]);
        assert!(q(RunFilter::all().requested_by("mallory")).await.is_empty());
        ns.drop().await;
    }
}

#[tokio::test]
async fn evidence_is_typed_and_corrupt_rows_are_refused() {
    for engine in common::engines() {
        let ns = engine.namespace("store_evidence");
        let pool = ns.pool().await;
        let store = SqlStore::new(pool.clone()).await.unwrap();
        let id = RunId::from("bf-evidence");
        let note = EvidenceRecord::Note {
            name: "diff_csv".into(),
            detail: serde_json::json!({"sha256": "ab", "rows": 3}),
        };
        let cancel = EvidenceRecord::CancelRequested {
            reason: "wrong calendar".into(),
        };
        assert_eq!(
            store
                .append_evidence(&id, at(1), "alice", &note)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .append_evidence(&id, at(2), "bob", &cancel)
                .await
                .unwrap(),
            2
        );
        let got = store.evidence(&id).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].seq, got[0].by.as_str(), &got[0].record),
            (1, "alice", &note)
        );
        assert_eq!(
            (got[1].at, got[1].kind()),
            (at(2), EvidenceKind::CancelRequested)
        );

        // The kind column holds the record's kind, so stores can be queried by kind.
        let kinds: Vec<String> = match &pool {
            SqlPool::Postgres(p) => sqlx::query_scalar("SELECT kind FROM bf_evidence ORDER BY seq")
                .fetch_all(p)
                .await
                .unwrap(),
            SqlPool::MySql(p) => sqlx::query_scalar("SELECT kind FROM bf_evidence ORDER BY seq")
                .fetch_all(p)
                .await
                .unwrap(),
            SqlPool::Sqlite(p) => sqlx::query_scalar("SELECT kind FROM bf_evidence ORDER BY seq")
                .fetch_all(p)
                .await
                .unwrap(),
        };
        assert_eq!(kinds, ["note", "cancel_requested"]);

        // A row of an unknown format version, and one that is not JSON: both corrupt, naming the row.
        exec(
            &pool,
            "UPDATE bf_evidence SET detail = '{\"v\": 99, \"type\": \"note\"}' WHERE seq = 2",
        )
        .await;
        match store.evidence(&id).await {
            Err(Error::Corrupt { what, detail }) => {
                assert!(
                    what.contains("evidence record 2") && what.contains("bf-evidence"),
                    "{what}"
                );
                assert!(detail.contains("99"), "{detail}");
            }
            other => panic!(
                "{}: expected a corrupt evidence error, got {other:?}",
                engine.name
            ),
        }
        exec(
            &pool,
            "UPDATE bf_evidence SET detail = 'not json' WHERE seq = 2",
        )
        .await;
        assert!(matches!(
            store.evidence(&id).await,
            Err(Error::Corrupt { .. })
        ));
        ns.drop().await;
    }
}

fn approved_manifest() -> backfill_core::manifest::ApprovedManifest {
    use backfill_core::manifest::*;
    let mut m = RunManifest::new("bf-together", RunKind::Backfill, ExecutionMode::Backfill);
    m.reason = "workers started together".into();
    m.requested_by = "alice".into();
    m.source.name = "events".into();
    m.source.snapshot = Some("s-1".into());
    m.source.range = Some(InputRange::Dates {
        from: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        to_exclusive: chrono::NaiveDate::from_ymd_opt(2025, 2, 1).unwrap(),
    });
    m.transform.name = "t".into();
    m.transform.version = "1".into();
    m.target.name = "out".into();
    m.target.mutation = Some(Mutation::ReplacePartitions);
    m.target.partitions = vec!["2025-01".into()];
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..Default::default()
    });
    m.approve("bob", at(9)).unwrap()
}

/// Workers started at the same moment on a fresh store, each submitting the same approved
/// manifest (what every worker of a job does first): every one connects, the schema is migrated
/// once (one row per version, read back with the engine's own client), the run is created once,
/// approved once, and every worker gets it back approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_started_together_on_a_fresh_store_all_connect_and_migrate_once() {
    use backfill_core::control::Control;
    let approved = approved_manifest();
    for engine in common::engines() {
        for round in 0..3 {
            let ns = engine.namespace("concurrent_start");
            let starts: Vec<_> = (0..8)
                .map(|_| {
                    let (url, opts, approved) = (ns.url.clone(), ns.opts.clone(), approved.clone());
                    tokio::spawn(async move {
                        let store = SqlStore::connect_with(&url, &opts).await?;
                        let control = Control::new(std::sync::Arc::new(store.clone()));
                        control.submit(&approved).await.map(|r| (store, r))
                    })
                })
                .collect();
            let mut store = None;
            for (i, s) in starts.into_iter().enumerate() {
                match s.await.unwrap() {
                    Ok((s, record)) => {
                        assert_eq!(
                            record.state,
                            RunState::Approved,
                            "{} worker {i}",
                            engine.name
                        );
                        store = Some(s);
                    }
                    Err(e) => panic!(
                        "{} round {round}: worker {i} failed to start: {e}",
                        engine.name
                    ),
                }
            }
            let store = store.unwrap();
            let id = approved.run_id();
            let approvals = store
                .evidence(id)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| matches!(e.record, EvidenceRecord::Approved(_)))
                .count();
            assert_eq!(approvals, 1, "{} round {round}", engine.name);
            let transitions = store.transitions(id).await.unwrap();
            assert_eq!(
                transitions.len(),
                1,
                "{} round {round}: {transitions:?}",
                engine.name
            );
            if let Some(rows) = common::cli(
                &ns,
                "SELECT COUNT(*), COUNT(DISTINCT version), MAX(version) FROM bf_schema_migrations",
            ) {
                let v = backfill_sql::SCHEMA_VERSION;
                assert_eq!(
                    rows.replace('\t', "|"),
                    format!("{v}|{v}|{v}"),
                    "{} round {round}",
                    engine.name
                );
            }
            ns.drop().await;
        }
    }
}
