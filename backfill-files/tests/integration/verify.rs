//! Planning checks the landing area against its producer manifests; reading verifies every file
//! before a row of it is used; bad input is a typed error naming the file (and line).

use crate::common;

use std::sync::Arc;

use backfill_core::manifest::DuplicateFilePolicy;
use backfill_core::plan::ResolvedPlan;
use backfill_core::source::BackfillSource;
use backfill_core::{Error, ErrorKind};
use backfill_files::{Decision, FileRow, FileSource, FilesState, LocalLanding, MalformedRow};
use common::{day, Order};
use futures::StreamExt;

fn source(root: &std::path::Path) -> FileSource<Order> {
    FileSource::new(Arc::new(LocalLanding::new(root)))
}

async fn plan(
    root: &std::path::Path,
    policy: DuplicateFilePolicy,
) -> backfill_core::Result<ResolvedPlan> {
    let m = common::manifest("bf-verify", day(1, 1), day(4, 1), policy);
    let p = source(root).plan(&m).await?;
    Ok(ResolvedPlan::new(
        &m.run_id,
        m.digest(),
        p,
        common::run::now(),
    ))
}

/// The first item every chunk's read yields.
async fn first_items(
    root: &std::path::Path,
    plan: &ResolvedPlan,
) -> Vec<backfill_core::Result<Vec<FileRow<Order>>>> {
    let s = source(root);
    let mut out = Vec::new();
    for c in &plan.chunks {
        if let Some(item) = s.read(c).next().await {
            out.push(item);
        }
    }
    out
}

#[tokio::test]
async fn a_file_changed_after_planning_is_an_error_naming_it_before_any_row() {
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    common::landing(&root);
    let plan = plan(&root, DuplicateFilePolicy::Reject)
        .await
        .expect("plan");
    let path = "landing/2025/03/orders-2025-03-10.csv";
    common::write(
        &root,
        path,
        &common::csv(&common::orders("x", day(3, 10), 5, 999)),
    );
    let march = plan
        .chunks
        .iter()
        .find(|c| c.label == "2025-03")
        .expect("march");
    let items: Vec<_> = source(&root).read(march).collect().await;
    // late.jsonl sorts first and is intact; the changed file fails before any of its rows.
    let err = items
        .iter()
        .find_map(|i| i.as_ref().err())
        .expect("an error");
    assert_eq!(err.kind(), ErrorKind::NonDeterministic, "{err}");
    assert!(
        matches!(err, Error::NonDeterministic { detail, .. }
            if detail.starts_with(&format!("file {path} changed after planning"))),
        "{err}"
    );
    let rows: Vec<&FileRow<Order>> = items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .flatten()
        .collect();
    assert!(rows.iter().all(|r| r.lineage.path != path));
}

#[tokio::test]
async fn malformed_rows_are_typed_errors_naming_file_and_line() {
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    common::write(
        &root,
        "landing/2025/01/a.csv",
        "id,day,cents\no-1,2025-01-02,5\no-2,2025-01-02,five\n",
    );
    common::write(
        &root,
        "landing/2025/02/b.jsonl",
        "{\"id\":\"o-3\",\"day\":\"2025-02-02\",\"cents\":1}\n\n{\"id\":\n",
    );
    let plan = plan(&root, DuplicateFilePolicy::Reject)
        .await
        .expect("plan");
    let errors: Vec<MalformedRow> = first_items(&root, &plan)
        .await
        .into_iter()
        .filter_map(Result::err)
        .map(|e| {
            assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
            match e {
                Error::Adapter { source, .. } => {
                    *source.downcast::<MalformedRow>().expect("a malformed row")
                }
                other => panic!("{other}"),
            }
        })
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        (errors[0].path.as_str(), errors[0].line),
        ("landing/2025/01/a.csv", 3)
    );
    assert_eq!(
        (errors[1].path.as_str(), errors[1].line),
        ("landing/2025/02/b.jsonl", 3)
    );
    assert!(errors.iter().all(|e| e.run_id == "bf-verify"));
}

#[tokio::test]
async fn producer_manifests_are_checked_file_by_file() {
    // A listed file that is missing.
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    common::landing(&root);
    std::fs::remove_file(root.join("landing/2025/02/late.jsonl")).expect("rm");
    let err = plan(&root, DuplicateFilePolicy::Reject)
        .await
        .expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains("landing/2025/02/late.jsonl")
            && err.to_string().contains("manifest/2025/02/manifest.json"),
        "{err}"
    );

    // A file whose content is not what the manifest lists.
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    common::landing(&root);
    common::write(
        &root,
        "landing/2025/02/late.jsonl",
        &common::jsonl(&common::orders("z", day(2, 1), 3, 1)),
    );
    let err = plan(&root, DuplicateFilePolicy::Reject)
        .await
        .expect_err("hash");
    assert!(
        matches!(&err, Error::Conflict { what, .. } if what == "file landing/2025/02/late.jsonl"),
        "{err}"
    );

    // A landed file the manifest does not list.
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    common::landing(&root);
    common::write(
        &root,
        "landing/2025/02/extra.csv",
        &common::csv(&common::orders("e", day(2, 3), 1, 1)),
    );
    let err = plan(&root, DuplicateFilePolicy::Reject)
        .await
        .expect_err("unlisted");
    assert!(
        matches!(&err, Error::Conflict { what, .. } if what == "file landing/2025/02/extra.csv"),
        "{err}"
    );
}

#[tokio::test]
async fn manifest_metadata_is_persisted_in_the_source_state() {
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    common::landing(&root);
    let plan = plan(&root, DuplicateFilePolicy::Reject)
        .await
        .expect("plan");
    let feb: FilesState = plan.chunks[1].state.parse().expect("state");
    let late = feb
        .files
        .iter()
        .find(|f| f.path.ends_with("late.jsonl"))
        .expect("late");
    assert_eq!(late.manifest_id.as_deref(), Some("orders-2025-02"));
    assert_eq!(late.schema_version.as_deref(), Some("v3"));
    assert_eq!(late.business_date, day(2, 28));
    assert!(late.producer_ts.is_some());
    let paths: Vec<&str> = feb.files.iter().map(|f| f.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(plan
        .snapshot
        .as_deref()
        .is_some_and(|s| s.starts_with("files:sha256:")));
}

#[tokio::test]
async fn planning_refuses_what_it_cannot_honour() {
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    common::landing(&root);
    // A pin that is not the landing's content.
    let mut m = common::manifest("bf-pin", day(1, 1), day(4, 1), DuplicateFilePolicy::Reject);
    m.source.snapshot = Some("files:sha256:00".into());
    let err = source(&root).plan(&m).await.expect_err("pin");
    assert!(matches!(err, Error::SnapshotMismatch { .. }), "{err}");
    // No duplicate policy.
    let mut m = common::manifest(
        "bf-nopolicy",
        day(1, 1),
        day(4, 1),
        DuplicateFilePolicy::Reject,
    );
    m.source.duplicate_files = None;
    let err = source(&root).plan(&m).await.expect_err("policy");
    assert!(
        matches!(&err, Error::InvalidManifest { field, .. } if field == "source.duplicate_files"),
        "{err}"
    );
    // A format it does not read.
    common::write(&root, "landing/2025/01/orders.xlsx", "binary");
    let err = plan(&root, DuplicateFilePolicy::Reject)
        .await
        .expect_err("format");
    assert_eq!(err.kind(), ErrorKind::NotSupported, "{err}");
    assert!(
        err.to_string().contains("landing/2025/01/orders.xlsx"),
        "{err}"
    );
}

#[tokio::test]
async fn the_same_content_twice_in_one_landing_follows_the_policy() {
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    let content = common::csv(&common::orders("d", day(1, 5), 2, 1));
    common::write(&root, "landing/2025/01/a.csv", &content);
    common::write(&root, "landing/2025/01/b.csv", &content);
    for (policy, expected) in [
        (DuplicateFilePolicy::Reject, "reject"),
        (DuplicateFilePolicy::Ignore, "skip"),
        (DuplicateFilePolicy::Reprocess, "reprocess"),
    ] {
        let plan = plan(&root, policy).await.expect("plan");
        let jan: FilesState = plan.chunks[0].state.parse().expect("state");
        let d: Vec<&str> = jan.files.iter().map(|f| f.decision.as_str()).collect();
        assert_eq!(d, vec!["process", expected], "{policy:?}");
        if let Decision::Reject { reason } = &jan.files[1].decision {
            assert!(
                reason.contains("landing/2025/01/b.csv")
                    && reason.contains("landing/2025/01/a.csv"),
                "{reason}"
            );
        }
    }
}
