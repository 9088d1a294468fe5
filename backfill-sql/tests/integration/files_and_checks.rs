//! The file-import ledger's duplicate policies and the in-database validators, on every engine.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::manifest::DuplicateFilePolicy;
use backfill_core::prelude::*;
use backfill_core::sink::StageRequest;
use backfill_core::validate::ValidationContext;
use backfill_sql::{
    Column, FileDecision, FileIdentity, FileLedger, SqlCheck, SqlPublisher, SqlRow, SqlSink,
    SqlType,
};
use chrono::{NaiveDate, TimeZone, Utc};
use futures::stream::{self, StreamExt};

fn file(path: &str, hash: &str) -> FileIdentity {
    FileIdentity {
        path: path.into(),
        size: 1234,
        content_hash: hash.into(),
        business_date: NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
        schema_version: "v3".into(),
    }
}

fn manifest(policy: &str) -> RunManifest {
    let mut m = RunManifest::new(
        format!("bf-files-{policy}"),
        RunKind::Backfill,
        ExecutionMode::Backfill,
    );
    m.source.duplicate_files = match policy {
        "ignore" => Some(DuplicateFilePolicy::Ignore),
        "reprocess" => Some(DuplicateFilePolicy::Reprocess),
        "correction" => Some(DuplicateFilePolicy::Correction),
        "reject" => Some(DuplicateFilePolicy::Reject),
        _ => None,
    };
    m
}

#[tokio::test]
async fn duplicate_files_follow_the_manifest_policy() {
    for engine in common::engines() {
        let ns = engine.namespace("files");
        let ledger = FileLedger::new(ns.pool().await).await.unwrap();
        let now = Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap();
        let first = match ledger
            .register(
                &manifest("ignore"),
                &file("landing/2025/01/a.csv", "sha256:aa"),
                now,
            )
            .await
            .unwrap()
        {
            FileDecision::Process(r) => r,
            other => panic!("{}: {other:?}", engine.name),
        };
        assert_eq!(first.status, "pending");
        ledger.accept(&first.file_id, &"bf-1".into()).await.unwrap();
        assert_eq!(
            ledger
                .get(&first.file_id)
                .await
                .unwrap()
                .unwrap()
                .accepted_run_id,
            Some("bf-1".into())
        );

        // Same content under another path.
        let copy = file("landing/2025/01/a-copy.csv", "sha256:aa");
        assert!(matches!(
            ledger
                .register(&manifest("ignore"), &copy, now)
                .await
                .unwrap(),
            FileDecision::Skip(_)
        ));
        // Same path, new content.
        let changed = file("landing/2025/01/a.csv", "sha256:bb");
        match ledger
            .register(&manifest("correction"), &changed, now)
            .await
            .unwrap()
        {
            FileDecision::Correction(r) => {
                assert_eq!(r.corrects_file_id.as_deref(), Some(first.file_id.as_str()))
            }
            other => panic!("{}: {other:?}", engine.name),
        }
        let again = file("landing/2025/01/a.csv", "sha256:cc");
        assert!(matches!(
            ledger
                .register(&manifest("reprocess"), &again, now)
                .await
                .unwrap(),
            FileDecision::Reprocess(_)
        ));
        let err = ledger
            .register(&manifest("reject"), &file("x/a.csv", "sha256:aa"), now)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("duplicate policy is reject"),
            "{err}"
        );
        // The policy must be stated.
        let err = ledger
            .register(&manifest(""), &file("new.csv", "sha256:zz"), now)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidManifest { field, .. } if field == "source.duplicate_files"),
            "{err}"
        );
        // A policy that does not exist is refused when the manifest is read, naming the field.
        let text = serde_json::json!({
            "run_id": "bf-files-maybe",
            "kind": "backfill",
            "source": {"duplicate_files": "maybe"},
        });
        let err = RunManifest::from_json(&text.to_string()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidManifest { field, .. } if field == "source.duplicate_files"),
            "{err}"
        );
        assert!(err.to_string().contains("maybe"));
        ns.drop().await;
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Row {
    key: String,
    month: String,
    days: Option<i64>,
}

impl OutputRow for Row {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

impl SqlRow for Row {
    const COLUMNS: &'static [Column] = &[
        Column::new("key", SqlType::Text),
        Column::new("month", SqlType::Text),
        Column::nullable("days", SqlType::BigInt),
    ];
    const PARTITION_COLUMN: &'static str = "month";
}

fn row(key: &str, month: &str, days: Option<i64>) -> Row {
    Row {
        key: key.into(),
        month: month.into(),
        days,
    }
}

#[tokio::test]
async fn checks_run_in_the_database() {
    for engine in common::engines() {
        let ns = engine.namespace("checks");
        let pool = ns.pool().await;
        let sink = Arc::new(SqlSink::<Row>::new(pool.clone(), "sla").await.unwrap());
        let publisher = SqlPublisher::<Row>::new(pool, "sla").await.unwrap();
        let m = RunManifest::new("bf-checks", RunKind::Backfill, ExecutionMode::Backfill);
        let ctx = TransformContext::fixed(m.run_id.clone(), ExecutionMode::Backfill, Utc::now());
        let rows = vec![
            row("a", "2025-01", Some(3)),
            row("b", "2025-01", None),
            row("a", "2025-02", Some(-1)),
            row("a", "2025-02", Some(500)),
        ];
        sink.stage(
            StageRequest {
                run_id: &m.run_id,
                chunk_id: &"c".into(),
                attempt: 1,
                lineage: ctx.lineage(),
            },
            stream::iter([Ok(rows.clone())]).boxed(),
        )
        .await
        .unwrap();
        let good_ledger = PartitionDigests::of_rows(&rows);
        let bad_ledger = PartitionDigests::of_rows(&rows[..3]);
        let check = |ledger: &PartitionDigests, v: SqlCheck<Row>| {
            let sink = sink.clone();
            let publisher = &publisher;
            let m = &m;
            let ledger = ledger.clone();
            async move {
                let cx = ValidationContext {
                    run_id: &m.run_id,
                    manifest: m,
                    chunks: &[],
                    ledger: &ledger,
                    staged: sink.as_ref(),
                    current: publisher,
                    accepted: None,
                };
                v.validate(&cx).await.unwrap()
            }
        };
        let name = engine.name;
        assert_eq!(
            check(&good_ledger, SqlCheck::partition_counts(&sink))
                .await
                .verdict,
            Verdict::Pass,
            "{name}"
        );
        let out = check(&bad_ledger, SqlCheck::partition_counts(&sink)).await;
        assert_eq!(out.verdict, Verdict::Fail, "{name}");
        assert_eq!(out.details["mismatched"][0]["partition"], "2025-02");
        assert_eq!(
            check(
                &good_ledger,
                SqlCheck::unique(&sink, &["key", "month"]).unwrap()
            )
            .await
            .verdict,
            Verdict::Fail,
            "{name}"
        );
        assert_eq!(
            check(
                &good_ledger,
                SqlCheck::unique(&sink, &["key", "days"]).unwrap()
            )
            .await
            .verdict,
            Verdict::Pass,
            "{name}"
        );
        assert_eq!(
            check(&good_ledger, SqlCheck::not_null(&sink, "days").unwrap())
                .await
                .details["null_rows"],
            1,
            "{name}"
        );
        assert_eq!(
            check(&good_ledger, SqlCheck::not_null(&sink, "key").unwrap())
                .await
                .verdict,
            Verdict::Pass
        );
        let out = check(
            &good_ledger,
            SqlCheck::range(&sink, "days", 0.0, 400.0).unwrap(),
        )
        .await;
        assert_eq!(
            (out.verdict, out.details["out_of_range_rows"].as_i64()),
            (Verdict::Fail, Some(2)),
            "{name}"
        );
        assert!(SqlCheck::not_null(&sink, "nope").is_err());
        assert!(SqlCheck::not_null(&sink, "x; DROP TABLE t").is_err());
        ns.drop().await;
    }
}
