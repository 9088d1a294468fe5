//! The job's runs operated through a bare control plane (store and publisher, no transform, source
//! or sink), and the evidence bundle it exports: verified, then failing once a published row is
//! altered behind the SDK's back.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use backfill_core::evidence::bundle::{verify_rows, EvidenceBundle};
use backfill_core::prelude::*;
use backfill_examples::sla::job::{HISTORY_RUN, OWNER, REQUESTER, RESTATEMENT_RUN, TARGET};
use backfill_examples::sla::transform::CaseSlaMonth;
use backfill_sql::{SqlPool, SqlPublisher, SqlSink};
use common::{job, published, store, table, text, warehouse, warehouse_url};

/// What an operations tool links: the run store and the target's publisher, nothing else.
async fn bare_control(dir: &Path) -> Control {
    let pool = SqlPool::connect(&warehouse_url(dir)).await.unwrap();
    let publisher = SqlPublisher::<CaseSlaMonth>::new(pool, TARGET)
        .await
        .unwrap();
    Control::new(Arc::new(store(dir).await))
        .with_target(Arc::new(publisher))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_review_publish_and_rollback_work_through_a_bare_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let rid = RunId::from(RESTATEMENT_RUN);
    let hid = RunId::from(HISTORY_RUN);

    // The job publishes the history and submits the restatement as a draft, then stops.
    let submitted = job(dir.path(), &["--submit-only"]);
    assert!(submitted.status.success(), "{}", text(&submitted));
    let control = bare_control(dir.path()).await;
    assert_eq!(control.run(&rid).await.unwrap().state, RunState::Draft);
    assert_eq!(control.run(&hid).await.unwrap().state, RunState::Published);

    // Approval: never by the requester; the owner's binds the stored digest.
    let e = control.approve(&rid, REQUESTER).await.unwrap_err();
    assert!(matches!(e, Error::SelfApproval { .. }), "{e}");
    let approved = control.approve(&rid, OWNER).await.unwrap();
    assert_eq!(approved.state, RunState::Approved);

    // The job executes the approved run (nothing to approve any more) and leaves it for review.
    let executed = job(dir.path(), &["--owner-decision", "wait"]);
    assert!(executed.status.success(), "{}", text(&executed));
    assert!(
        !text(&executed).contains("approved by"),
        "{}",
        text(&executed)
    );
    assert_eq!(
        control.run(&rid).await.unwrap().state,
        RunState::AwaitingReview
    );
    let db = warehouse(dir.path()).await;
    let history_rows = published(&db).await;
    assert!(history_rows.iter().all(|r| r.4 == HISTORY_RUN));

    // Review and publication: the owner, through the bare control plane.
    let e = control
        .review(&rid, true, REQUESTER, "my own change")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SelfApproval { .. }), "{e}");
    let state = control
        .review(&rid, true, OWNER, "explained by the timezone fix; REG-2291")
        .await
        .unwrap();
    assert_eq!(state, RunState::Validated);
    let receipt = control.publish(&rid, OWNER).await.unwrap();
    assert_eq!(receipt.partitions.len(), 12);
    assert_eq!(control.run(&rid).await.unwrap().state, RunState::Published);
    assert_eq!(control.run(&hid).await.unwrap().state, RunState::Superseded);
    let pointer = control.store().accepted(TARGET).await.unwrap().unwrap();
    assert_eq!(pointer.run_id, rid);
    let restated = published(&db).await;
    assert!(restated.iter().all(|r| r.4 == RESTATEMENT_RUN));
    assert_eq!(restated.len() as u64, receipt.rows);

    // Rollback: back to the run the restatement replaced, its rows restored exactly.
    let receipt = control
        .rollback_run(&rid, OWNER, "dashboard owners not ready")
        .await
        .unwrap();
    assert_eq!(receipt.rows, history_rows.len() as u64);
    assert_eq!(control.run(&rid).await.unwrap().state, RunState::RolledBack);
    assert_eq!(control.run(&hid).await.unwrap().state, RunState::Published);
    assert_eq!(published(&db).await, history_rows);
    // Idempotent: asking again changes nothing.
    control
        .rollback_run(&rid, OWNER, "dashboard owners not ready")
        .await
        .unwrap();
    assert_eq!(published(&db).await, history_rows);

    // The job sees what the control plane did, republishes nothing, and its bundle verifies.
    let again = job(dir.path(), &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("nothing republished") && text(&again).contains("verified"),
        "{}",
        text(&again)
    );
    assert_eq!(control.run(&rid).await.unwrap().state, RunState::RolledBack);
    assert_eq!(published(&db).await, history_rows);
}

/// `sqlite3 <db> <sql>`: a change made outside the SDK, by the database's own shell.
fn sqlite3(db: &Path, sql: &str) {
    let which = std::process::Command::new("sh")
        .args(["-c", "command -v sqlite3"])
        .output()
        .unwrap();
    assert!(
        which.status.success(),
        "the sqlite3 command-line shell is needed (Debian: apt-get install sqlite3)"
    );
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_bundle_verifies_and_fails_once_a_published_row_is_altered() {
    let dir = tempfile::tempdir().unwrap();
    let first = job(dir.path(), &[]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("verified (6 checks"),
        "{}",
        text(&first)
    );

    // The bundle the job wrote: offline, then against staged and published rows.
    let path = dir.path().join(format!("{RESTATEMENT_RUN}-evidence.json"));
    let bundle = EvidenceBundle::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(bundle.run_id().as_str(), RESTATEMENT_RUN);
    assert!(bundle.verify().passed(), "{:?}", bundle.verify());
    let pool = SqlPool::connect(&warehouse_url(dir.path())).await.unwrap();
    let sink = SqlSink::<CaseSlaMonth>::new(pool.clone(), TARGET)
        .await
        .unwrap();
    let publisher = SqlPublisher::<CaseSlaMonth>::new(pool, TARGET)
        .await
        .unwrap();
    let v = verify_rows(&bundle, Some(&sink), Some(&publisher))
        .await
        .unwrap();
    assert!(v.passed(), "{v:?}");
    let names: Vec<&str> = v.checks.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"published_rows_match_ledger"), "{names:?}");

    // One published row altered with the sqlite3 shell.
    let warehouse = dir.path().join("warehouse.db");
    let t = table();
    sqlite3(
        &warehouse,
        &format!(
            "UPDATE {t} SET breached = 1 - breached WHERE id = (SELECT MIN(id) FROM {t} WHERE month = '2025-03')"
        ),
    );

    // The ledger and the receipt still agree with each other and with staging, not with the target.
    assert!(bundle.verify().passed());
    let v = verify_rows(&bundle, Some(&sink), Some(&publisher))
        .await
        .unwrap();
    let failed: Vec<&str> = v.failures().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(failed, ["published_rows_match_ledger"], "{v:?}");
    assert!(v.failures()[0].detail.contains("2025-03"), "{v:?}");

    // The job's own verification fails too, and says where.
    let again = job(dir.path(), &[]);
    assert_eq!(again.status.code(), Some(4), "{}", text(&again));
    let log = text(&again);
    assert!(
        log.contains("VERIFICATION FAILED: published_rows_match_ledger"),
        "{log}"
    );
}
