//! The file-import ledger keyed by content hash, per scope, on every engine: lookups by path or
//! hash, the transactional commit used by backfill-files, and the accepted contents of a date range.

use crate::common;

use backfill_core::ids::RunId;
use backfill_sql::{FileIdentity, FileLedger, FileRecord};
use chrono::{NaiveDate, TimeZone, Utc};

fn row(
    ledger: &FileLedger,
    path: &str,
    hash: &str,
    status: &str,
    corrects: Option<&str>,
) -> FileRecord {
    FileRecord {
        file_id: ledger.key(hash),
        identity: FileIdentity {
            path: path.into(),
            size: 42,
            content_hash: hash.into(),
            business_date: NaiveDate::from_ymd_opt(2025, 1, 15).unwrap(),
            schema_version: "v1".into(),
        },
        first_seen_at: Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap(),
        accepted_run_id: Some(RunId::from("bf-1")),
        corrects_file_id: corrects.map(|h| ledger.key(h)),
        status: status.into(),
    }
}

#[tokio::test]
async fn contents_are_keyed_by_hash_per_scope() {
    for engine in common::engines() {
        let ns = engine.namespace("ledger_hash");
        let base = FileLedger::new(ns.pool().await).await.unwrap();
        let orders = base.clone().scoped("orders");
        let refunds = base.clone().scoped("refunds");
        assert_ne!(orders.key("sha256:aa"), refunds.key("sha256:aa"));
        let a = "landing/2025/01/a.csv";
        orders
            .commit_rows(&[row(&orders, a, "sha256:aa", "accepted", None)])
            .await
            .unwrap();
        refunds
            .commit_rows(&[row(&refunds, a, "sha256:aa", "accepted", None)])
            .await
            .unwrap();
        // Each scope sees its own row only, by path or by hash.
        let by_path = orders.lookup(&[a.into()], &[]).await.unwrap();
        assert_eq!(by_path.len(), 1, "{}", engine.name);
        assert_eq!(by_path[0].file_id, orders.key("sha256:aa"));
        assert_eq!(
            orders
                .lookup(&[], &["sha256:aa".into()])
                .await
                .unwrap()
                .len(),
            1
        );
        // A correction supersedes; a retried commit changes nothing; accepted is never rejected.
        let fix = [row(&orders, a, "sha256:bb", "accepted", Some("sha256:aa"))];
        orders.commit_rows(&fix).await.unwrap();
        orders.commit_rows(&fix).await.unwrap();
        orders
            .commit_rows(&[row(&orders, a, "sha256:aa", "accepted", None)])
            .await
            .unwrap();
        orders
            .commit_rows(&[row(&orders, a, "sha256:bb", "rejected", None)])
            .await
            .unwrap();
        let rows = orders.lookup(&[a.into()], &[]).await.unwrap();
        let status = |h: &str| {
            rows.iter()
                .find(|r| r.identity.content_hash == h)
                .map(|r| r.status.clone())
        };
        assert_eq!(
            status("sha256:aa").as_deref(),
            Some("superseded"),
            "{}",
            engine.name
        );
        assert_eq!(
            status("sha256:bb").as_deref(),
            Some("accepted"),
            "{}",
            engine.name
        );
        assert_eq!(rows.len(), 2);
        // The other scope is untouched.
        let theirs = refunds.lookup(&[a.into()], &[]).await.unwrap();
        assert_eq!(theirs[0].status, "accepted");
        // The accepted contents of January.
        let jan = orders
            .accepted_between(
                NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                NaiveDate::from_ymd_opt(2025, 2, 1).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            jan.iter()
                .map(|r| r.identity.content_hash.as_str())
                .collect::<Vec<_>>(),
            vec!["sha256:bb"]
        );
        // Many values are looked up in batches.
        let many: Vec<String> = (0..450).map(|i| format!("sha256:{i:04}")).collect();
        assert_eq!(orders.lookup(&[], &many).await.unwrap().len(), 0);
        ns.drop().await;
    }
}
