//! The import ledger contract, checked on the in-memory ledger and on backfill-sql's `FileLedger`
//! in SQLite; and the duplicate-policy table of `decide`, cell by cell.

use crate::common;

use backfill_core::manifest::DuplicateFilePolicy as P;
use backfill_files::{decide, ImportLedger, ImportRecord, ImportStatus, MemoryLedger};
use backfill_sql::{FileLedger, SqlPool};
use common::day;

fn rec(
    source: &str,
    sha: &str,
    path: &str,
    status: ImportStatus,
    corrects: Option<&str>,
) -> ImportRecord {
    ImportRecord {
        source: source.into(),
        sha256: sha.into(),
        path: path.into(),
        size: 10,
        business_date: day(1, 15),
        schema_version: Some("v1".into()),
        run_id: "bf-1".into(),
        status,
        corrects: corrects.map(Into::into),
        recorded_at: common::run::now(),
    }
}

fn status(rows: &[ImportRecord], sha: &str) -> Option<ImportStatus> {
    rows.iter().find(|r| r.sha256 == sha).map(|r| r.status)
}

async fn contract(ledger: &dyn ImportLedger) {
    use ImportStatus::*;
    let a = "landing/2025/01/a.csv";
    ledger
        .commit(&[
            rec("s", "aa", a, Accepted, None),
            rec("other", "zz", a, Accepted, None),
        ])
        .await
        .expect("commit");
    // Found by path or by hash, within the source only.
    let by_path = ledger.known("s", &[a.into()], &[]).await.expect("known");
    assert_eq!(by_path.len(), 1);
    assert_eq!(
        (by_path[0].path.as_str(), by_path[0].sha256.as_str()),
        (a, "aa")
    );
    assert_eq!(by_path[0].business_date, day(1, 15));
    assert_eq!(by_path[0].schema_version.as_deref(), Some("v1"));
    assert_eq!(by_path[0].run_id, "bf-1");
    assert_eq!(
        ledger
            .known("s", &[], &["aa".into()])
            .await
            .expect("known")
            .len(),
        1
    );
    assert!(ledger
        .known("s", &[], &["zz".into()])
        .await
        .expect("known")
        .is_empty());
    // An accepted content is never turned rejected; committing twice changes nothing.
    ledger
        .commit(&[rec("s", "aa", a, Rejected, None)])
        .await
        .expect("commit");
    ledger
        .commit(&[rec("s", "aa", a, Accepted, None)])
        .await
        .expect("commit");
    let rows = ledger.known("s", &[a.into()], &[]).await.expect("known");
    assert_eq!((rows.len(), status(&rows, "aa")), (1, Some(Accepted)));
    // A correction supersedes, and the superseded content stays superseded on a retried commit.
    ledger
        .commit(&[rec("s", "bb", a, Accepted, Some("aa"))])
        .await
        .expect("commit");
    ledger
        .commit(&[rec("s", "aa", a, Accepted, None)])
        .await
        .expect("retry");
    let rows = ledger.known("s", &[a.into()], &[]).await.expect("known");
    assert_eq!(status(&rows, "aa"), Some(Superseded));
    assert_eq!(status(&rows, "bb"), Some(Accepted));
    // A rejection of new content is recorded.
    ledger
        .commit(&[rec("s", "cc", a, Rejected, None)])
        .await
        .expect("commit");
    let rows = ledger.known("s", &[], &["cc".into()]).await.expect("known");
    assert_eq!(status(&rows, "cc"), Some(Rejected));
    // Only accepted contents of the dates make them up.
    let made_of = ledger
        .accepted("s", day(1, 1), day(2, 1))
        .await
        .expect("accepted");
    assert_eq!(
        made_of
            .iter()
            .map(|r| r.sha256.as_str())
            .collect::<Vec<_>>(),
        vec!["bb"]
    );
    assert!(ledger
        .accepted("s", day(1, 16), day(2, 1))
        .await
        .expect("accepted")
        .is_empty());
}

#[tokio::test]
async fn the_memory_ledger_keeps_the_contract() {
    contract(&MemoryLedger::new()).await;
}

#[tokio::test]
async fn the_sqlite_ledger_keeps_the_contract() {
    let tmp = common::temp();
    let dir = tmp.path().to_path_buf();
    let pool = SqlPool::connect(&format!("sqlite:{}", dir.join("l.db").display()))
        .await
        .expect("sqlite");
    contract(&FileLedger::new(pool).await.expect("ledger")).await;
}

#[test]
fn decide_follows_the_policy_table() {
    use ImportStatus::Accepted;
    let known = [rec("s", "aa", "a.csv", Accepted, None)];
    let cell = |policy, path: &str, sha: &str| decide(policy, path, sha, &known).as_str();
    for p in [P::Ignore, P::Reprocess, P::Correction, P::Reject] {
        assert_eq!(cell(p, "new.csv", "nn"), "process", "{p:?}");
        assert_eq!(
            cell(p, "a.csv", "aa"),
            "skip",
            "{p:?}: same path, same content"
        );
    }
    let same_path_new_content = [
        (P::Ignore, "skip"),
        (P::Reprocess, "reprocess"),
        (P::Correction, "correction"),
        (P::Reject, "reject"),
    ];
    for (p, expected) in same_path_new_content {
        assert_eq!(cell(p, "a.csv", "bb"), expected, "{p:?}");
    }
    let known_content_new_path = [
        (P::Ignore, "skip"),
        (P::Reprocess, "reprocess"),
        (P::Correction, "skip"),
        (P::Reject, "reject"),
    ];
    for (p, expected) in known_content_new_path {
        assert_eq!(cell(p, "b.csv", "aa"), expected, "{p:?}");
    }
    // Content refused once is judged again, not taken as imported.
    let refused = [rec("s", "cc", "a.csv", ImportStatus::Rejected, None)];
    assert_eq!(
        decide(P::Reject, "a.csv", "cc", &refused).as_str(),
        "process"
    );
}
