//! `--correction-events`: the main job publishes its changed case-months as
//! `CaseSlaBreachCorrected` events into `silver.case_sla_corrections`, once; checked against the
//! diff CSV the owner reviewed (an independent list of the changed case-months).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use backfill_core::correction::{ChangeKind, CorrectionEvent};
use backfill_examples::sla::corrections::{EVENT_TYPE, OUTBOX};
use backfill_examples::sla::job::{HISTORY_RUN, RESTATEMENT_RUN};
use backfill_sql::{Dialect, QualifiedName};
use common::{job, text, warehouse};
use sqlx::sqlite::SqlitePool;

/// `(event_id column, payload)` of every outbox row.
async fn outbox_rows(db: &SqlitePool) -> Vec<(String, CorrectionEvent)> {
    let t = QualifiedName::parse(OUTBOX)
        .unwrap()
        .quoted(Dialect::Sqlite);
    let rows: Vec<(String, String)> = sqlx::query_as(&format!("SELECT event_id, payload FROM {t}"))
        .fetch_all(db)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(id, p)| (id, serde_json::from_str(&p).unwrap()))
        .collect()
}

/// Every changed case-month in the owner's diff CSV: `(month, case) -> change`.
fn diff_csv(dir: &std::path::Path) -> BTreeMap<(String, String), String> {
    let csv = std::fs::read_to_string(dir.join(format!("{RESTATEMENT_RUN}-diff.csv"))).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ((f[0].to_owned(), f[1].to_owned()), f[3].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_publishes_2467_correction_events_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = job(dir.path(), &["--correction-events"]);
    let log = text(&first);
    assert!(first.status.success(), "{log}");
    assert!(
        log.contains(&format!("published 2467 correction events to {OUTBOX}")),
        "{log}"
    );

    let db = warehouse(dir.path()).await;
    let rows = outbox_rows(&db).await;
    assert_eq!(rows.len(), 2467);
    let ids: BTreeSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 2467, "unique event ids");

    // Each changed case-month of the owner's diff exactly once, with the same kind of change.
    let want = diff_csv(dir.path());
    assert_eq!(want.len(), 2467);
    let mut got = BTreeMap::new();
    for (id, e) in &rows {
        assert_eq!(id, &e.event_id);
        assert_eq!(e.event_type, EVENT_TYPE);
        assert_eq!(e.produced_by_run_id.as_str(), RESTATEMENT_RUN);
        assert_eq!(
            e.supersedes_run_id.as_ref().map(|r| r.as_str()),
            Some(HISTORY_RUN)
        );
        assert!(e.reason.contains("timezone bug"), "{}", e.reason);
        assert_eq!(
            e.corrects_event_id.is_some(),
            e.change() != ChangeKind::Added
        );
        let change = match e.change() {
            ChangeKind::Added => "added",
            ChangeKind::Changed => "changed",
            ChangeKind::Removed => "removed",
        };
        let key = (e.partition.to_string(), e.key.clone());
        assert!(got.insert(key, change.to_owned()).is_none(), "{e:?}");
    }
    assert_eq!(got, want);

    // Again: nothing new in the outbox, and one receipt for it.
    let second = job(dir.path(), &["--correction-events"]);
    let log = text(&second);
    assert!(second.status.success(), "{log}");
    assert!(log.contains("nothing new"), "{log}");
    assert!(!log.contains("published 2467 correction events"), "{log}");
    assert_eq!(outbox_rows(&db).await.len(), 2467);
    let receipts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bf_publications WHERE target = ?")
        .bind(OUTBOX)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(receipts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_published_without_the_flag_get_no_events_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    assert!(job(dir.path(), &[]).status.success());
    let late = job(dir.path(), &["--correction-events"]);
    let log = text(&late);
    assert!(late.status.success(), "{log}");
    assert!(log.contains("nothing left to compare"), "{log}");
}
