//! `SqlOutbox` on every engine, through `CorrectionPublisher`: the accepted output is a table the
//! `SqlPublisher` published, the restatement is staged by the `SqlSink`, and the events land in an
//! outbox table with their receipt. Publishing twice writes nothing twice, an unknown outcome is
//! found by `inspect`, a failed write leaves nothing, and the engine's own command-line client
//! (`sqlite3`, `psql`, `mariadb`) reads the outbox back as an independent reader.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;
use crate::publishing;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backfill_core::correction::{
    ChangeKind, Correction, CorrectionEvent, CorrectionOutbox, CorrectionPublisher, EventOrigin,
};
use backfill_core::digest::PartitionDigests;
use backfill_core::prelude::*;
use backfill_core::publish::{ChunkArtifact, PublishRequest};
use backfill_sql::{QualifiedName, SqlOutbox, SqlPool, SqlPublisher, SqlSink};
use backfill_testkit::faults::{FaultKind, FaultyOutbox, OutboxFault};
use publishing::{at, manifest, rows, Parts, Sla};

const MONTHS: [&str; 2] = ["2025-01", "2025-02"];
const TARGET: &str = "sla_rows";
const HISTORY: &str = "bf-history";
const RESTATED: &str = "bf-restated";

fn correction() -> Correction<Sla> {
    Correction::new(
        "CaseSlaBreachCorrected",
        |r: &Sla| r.case_id.clone(),
        |r: &Sla| format!("evt-{}-{}-v{}", r.month, r.case_id, r.version),
        // Only the fact consumers track; `version` and `note` differ on every run.
        |r: &Sla| serde_json::json!({ "breached": r.breached }),
    )
}

/// Old rows: 20 cases a month, breached every 3rd. New rows: 21 cases, breached every 4th,
/// without C-0005.
fn old_rows() -> Vec<Sla> {
    rows(&MONTHS, 20, 1, 3)
}

fn new_rows() -> Vec<Sla> {
    let mut v = rows(&MONTHS, 21, 2, 4);
    v.retain(|r| r.case_id != "C-0005");
    v
}

/// The changed (month, case) pairs, computed apart from the publisher.
fn expected_changes() -> BTreeSet<(String, String)> {
    let side = |v: Vec<Sla>| -> BTreeMap<(String, String), bool> {
        v.into_iter()
            .map(|r| ((r.month, r.case_id), r.breached))
            .collect()
    };
    let (old, new) = (side(old_rows()), side(new_rows()));
    old.keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}

/// The outbox table: in the test's own schema or database, qualified (`silver.…` on SQLite).
fn outbox_name(ns: &common::Namespace) -> String {
    match ns.engine.name {
        "sqlite" => "silver.sla_corrections".to_owned(),
        _ => format!("{}.sla_corrections", ns.ident),
    }
}

/// One engine with the accepted history published and the restatement staged.
struct World {
    ns: common::Namespace,
    pool: SqlPool,
    outbox: String,
    manifest: RunManifest,
    digests: PartitionDigests,
    artifacts: Vec<ChunkArtifact>,
}

impl World {
    async fn new(ns: common::Namespace) -> Self {
        let pool = ns.pool().await;
        let parts = Parts::new(pool.clone(), TARGET).await;
        let hm = manifest(HISTORY, TARGET, Mutation::ReplacePartitions, &MONTHS);
        parts.stage_and_publish(&hm, old_rows(), None).await;
        let run = RunId::from(RESTATED);
        let artifacts = parts.stage(&run, new_rows()).await;
        let outbox = outbox_name(&ns);
        let mut m = manifest(RESTATED, &outbox, Mutation::CorrectionEvents, &MONTHS);
        m.reason = "TIMEZONE_BUG_RESTATEMENT".into();
        Self {
            ns,
            pool,
            outbox,
            manifest: m,
            digests: PartitionDigests::of_rows(&new_rows()),
            artifacts,
        }
    }

    async fn sql_outbox(&self) -> Arc<SqlOutbox> {
        Arc::new(
            SqlOutbox::new(self.ns.pool().await, &self.outbox)
                .await
                .unwrap(),
        )
    }

    /// A publisher on a fresh pool (as another process would build it) writing to `outbox`.
    async fn publisher(&self, outbox: Arc<dyn CorrectionOutbox>) -> CorrectionPublisher<Sla> {
        let pool = self.ns.pool().await;
        CorrectionPublisher::new(
            outbox,
            Arc::new(
                SqlPublisher::<Sla>::new(pool.clone(), TARGET)
                    .await
                    .unwrap(),
            ),
            Arc::new(SqlSink::<Sla>::new(pool, TARGET).await.unwrap()),
            correction(),
        )
    }

    fn request(&self) -> PublishRequest<'_> {
        PublishRequest {
            run_id: &self.manifest.run_id,
            manifest: &self.manifest,
            digests: &self.digests,
            artifacts: &self.artifacts,
            previous: None,
            at: at(),
        }
    }

    fn table(&self) -> String {
        QualifiedName::parse(&self.outbox)
            .unwrap()
            .quoted(self.pool.dialect())
    }

    async fn count(&self, sql: &str) -> i64 {
        match &self.pool {
            SqlPool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            SqlPool::MySql(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            SqlPool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn event_rows(&self) -> i64 {
        self.count(&format!("SELECT COUNT(*) FROM {}", self.table()))
            .await
    }

    async fn receipt_rows(&self) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM bf_publications WHERE target = '{}'",
            self.outbox
        ))
        .await
    }

    /// `(event_id column, payload parsed)` of every row, in partition and key order.
    async fn stored(&self) -> Vec<(String, CorrectionEvent)> {
        let q = |c: &str| self.pool.dialect().quote(c);
        let sql = format!(
            "SELECT event_id, payload FROM {} ORDER BY {}, {}",
            self.table(),
            q("partition"),
            q("key")
        );
        let rows: Vec<(String, String)> = match &self.pool {
            SqlPool::Postgres(p) => sqlx::query_as(&sql).fetch_all(p).await,
            SqlPool::MySql(p) => sqlx::query_as(&sql).fetch_all(p).await,
            SqlPool::Sqlite(p) => sqlx::query_as(&sql).fetch_all(p).await,
        }
        .unwrap();
        rows.into_iter()
            .map(|(id, payload)| (id, serde_json::from_str(&payload).unwrap()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_twice_stores_each_changed_key_once_and_no_duplicate_rows() {
    for e in common::engines() {
        let w = World::new(e.namespace("outbox_twice")).await;
        let want = expected_changes();
        assert!(want.len() > 10, "the fixture changes keys");
        let p = w.publisher(w.sql_outbox().await).await;
        assert_eq!(p.inspect(&w.manifest.run_id).await.unwrap(), None);
        let first = p.publish(w.request()).await.unwrap();
        assert_eq!(first.rows, want.len() as u64, "{}", e.name);
        assert_eq!(first.target, w.outbox);
        assert_eq!(first.mutation, "correction_events");

        let stored = w.stored().await;
        let keys: BTreeSet<(String, String)> = stored
            .iter()
            .map(|(_, ev)| (ev.partition.to_string(), ev.key.clone()))
            .collect();
        assert_eq!(keys, want, "{}", e.name);
        assert_eq!(keys.len(), stored.len(), "{}: each key once", e.name);
        for (id, ev) in &stored {
            assert_eq!(id, &ev.event_id);
            assert_eq!(ev.event_type, "CaseSlaBreachCorrected");
            assert_eq!(ev.reason, "TIMEZONE_BUG_RESTATEMENT");
            assert_eq!(ev.produced_by_run_id.as_str(), RESTATED);
            match ev.change() {
                ChangeKind::Added => assert_eq!(ev.key, "C-0020"),
                ChangeKind::Removed => assert_eq!(ev.key, "C-0005"),
                ChangeKind::Changed => assert_eq!(
                    ev.corrects_event_id.as_deref(),
                    Some(format!("evt-{}-{}-v1", ev.partition, ev.key).as_str())
                ),
            }
        }

        // Again, through a second publisher and pool: the same receipt, nothing written.
        let again = w.publisher(w.sql_outbox().await).await;
        assert_eq!(again.publish(w.request()).await.unwrap(), first);
        // And straight to the outbox with other events: the stored receipt wins.
        let direct = w
            .sql_outbox()
            .await
            .write(&w.manifest.run_id, &[], &first)
            .await
            .unwrap();
        assert_eq!(direct, first);
        assert_eq!(w.event_rows().await, want.len() as i64, "{}", e.name);
        assert_eq!(w.receipt_rows().await, 1, "{}", e.name);
        w.ns.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_commit_is_found_by_inspect_and_never_written_twice() {
    for e in common::engines() {
        let w = World::new(e.namespace("outbox_unknown")).await;
        let faulty = Arc::new(FaultyOutbox::new(
            w.sql_outbox().await,
            OutboxFault::CommitThenFail,
            FaultKind::Transient,
        ));
        let crashed = w.publisher(faulty.clone()).await;
        let err = crashed.publish(w.request()).await.unwrap_err();
        assert!(err.is_retryable(), "{}: {err}", e.name);
        assert_eq!(faulty.writes(), 1);
        let rows = w.event_rows().await;
        assert_eq!(rows, expected_changes().len() as i64);

        // A fresh process asks the database.
        let fresh = w.publisher(w.sql_outbox().await).await;
        let found = fresh
            .inspect(&w.manifest.run_id)
            .await
            .unwrap()
            .expect("the committed write is found");
        assert_eq!(found.rows, rows as u64);
        assert_eq!(fresh.publish(w.request()).await.unwrap(), found);
        assert_eq!(w.event_rows().await, rows, "{}", e.name);
        assert_eq!(w.receipt_rows().await, 1, "{}", e.name);
        w.ns.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_half_way_leaves_neither_events_nor_receipt() {
    for e in common::engines() {
        let w = World::new(e.namespace("outbox_atomic")).await;
        let outbox = w.sql_outbox().await;
        let p = w.publisher(outbox.clone()).await;
        p.publish(w.request()).await.unwrap();
        let before = w.event_rows().await;

        // Another run whose last event repeats an id already stored: its earlier events were
        // inserted by the time the primary key refuses it, and all of it rolls back.
        let other = RunId::from("bf-other");
        let mut events = w
            .stored()
            .await
            .into_iter()
            .map(|(_, ev)| ev)
            .collect::<Vec<_>>();
        let repeated = events[0].clone();
        for ev in &mut events {
            ev.event_id = format!("other-{}", ev.event_id);
        }
        events.push(repeated);
        let receipt = PublishReceipt {
            run_id: other.clone(),
            rows: events.len() as u64,
            ..p.inspect(&w.manifest.run_id).await.unwrap().unwrap()
        };
        assert!(outbox.write(&other, &events, &receipt).await.is_err());
        assert_eq!(outbox.inspect(&other).await.unwrap(), None, "{}", e.name);
        assert_eq!(w.event_rows().await, before, "{}", e.name);
        assert_eq!(w.receipt_rows().await, 1, "{}", e.name);
        w.ns.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_own_client_reads_the_outbox_back() {
    for e in common::engines() {
        let w = World::new(e.namespace("outbox_cli")).await;
        let p = w.publisher(w.sql_outbox().await).await;
        p.publish(w.request()).await.unwrap();
        let q = |c: &str| w.pool.dialect().quote(c);
        let sql = format!(
            "SELECT payload FROM {} ORDER BY {}, {}",
            w.table(),
            q("partition"),
            q("key")
        );
        let Some(text) = common::cli(&w.ns, &sql) else {
            w.ns.drop().await;
            continue;
        };
        let read: Vec<CorrectionEvent> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{l}: {err}")))
            .collect();
        // The same events the pure diff computes from the same rows.
        let run = w.manifest.run_id.clone();
        let origin = EventOrigin::new(&run, &w.manifest.reason, at());
        let mut want = Vec::new();
        for m in MONTHS {
            let of = |v: Vec<Sla>| v.into_iter().filter(|r| r.month == m).collect::<Vec<_>>();
            want.extend(
                correction()
                    .diff_partition(&origin, &m.into(), &of(old_rows()), &of(new_rows()))
                    .unwrap(),
            );
        }
        assert_eq!(read, want, "{}", e.name);
        let ids: BTreeSet<&str> = read.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), read.len());
        w.ns.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_passes_the_testkits_conformance_checks() {
    for e in common::engines() {
        let ns = e.namespace("outbox_conformance");
        let outbox = SqlOutbox::new(ns.pool().await, &outbox_name(&ns))
            .await
            .unwrap();
        let failures = backfill_testkit::outbox::run_all(&outbox, ns.ident.as_str()).await;
        assert!(failures.is_empty(), "{}: {failures:#?}", e.name);
        ns.drop().await;
    }
}
