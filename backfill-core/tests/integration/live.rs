//! A run sharing its target with live writers: the freeze of its window, publication refused after
//! an early thaw, and the manifest checks of `target.live_writes`.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::live::{LiveWrites, TargetWindows};
use backfill_core::memory::MemoryWindows;
use backfill_core::prelude::*;
use common::*;

fn freezing(run_id: &str, partitions: &[&str]) -> ApprovedManifest {
    let mut m = manifest(run_id);
    m.target.live_writes = LiveWrites::Freeze;
    m.target.partitions = partitions.iter().map(|p| (*p).into()).collect();
    m.safety.manual_publish = true;
    approve(m)
}

fn executor(parts: &Parts, windows: &Arc<MemoryWindows>) -> Executor<Scale> {
    Executor::builder(
        parts.control().with_windows(windows.clone()),
        Arc::new(source()),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .build()
}

fn live(p: &str) -> Vec<String> {
    vec![p.to_owned()]
}

#[tokio::test]
async fn a_freezing_run_holds_its_window_from_start_to_publication() {
    let parts = Parts::new();
    let windows = Arc::new(MemoryWindows::new());
    let bf = executor(&parts, &windows);
    windows
        .admit("amounts_daily", &live("2025-01"), "live-1", at())
        .await
        .unwrap();
    let approved = freezing("bf-freeze", &["2025-01", "2025-02", "2025-03"]);
    bf.control().submit(&approved).await.unwrap();
    // Approved, not started: nothing frozen yet.
    windows
        .admit("amounts_daily", &live("2025-02"), "live-1", at())
        .await
        .unwrap();

    let report = bf.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Validated);
    let err = windows
        .admit("amounts_daily", &live("2025-03"), "live-1", at())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WindowFrozen { run_id, partition, .. } if run_id.as_str() == "bf-freeze" && partition == "2025-03"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    // Outside the window, and on other targets, live writes go on.
    windows
        .admit("amounts_daily", &live("2025-04"), "live-1", at())
        .await
        .unwrap();
    windows
        .admit("other", &live("2025-03"), "live-1", at())
        .await
        .unwrap();

    bf.control()
        .publish(approved.run_id(), "owner")
        .await
        .unwrap();
    windows
        .admit("amounts_daily", &live("2025-03"), "live-1", at())
        .await
        .unwrap();
    let evidence = parts.store.evidence(approved.run_id()).await.unwrap();
    let frozen: Vec<_> = evidence
        .iter()
        .filter_map(|e| match &e.record {
            EvidenceRecord::WindowFrozen { target, watermark } => Some((target, watermark)),
            _ => None,
        })
        .collect();
    let want = BTreeMap::from([
        ("2025-01".to_owned(), 1),
        ("2025-02".to_owned(), 1),
        ("2025-03".to_owned(), 0),
    ]);
    assert_eq!(frozen, [(&"amounts_daily".to_owned(), &want)]);
    let thawed: Vec<_> = evidence
        .iter()
        .filter_map(|e| match &e.record {
            EvidenceRecord::WindowThawed { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thawed, ["published"]);
}

#[tokio::test]
async fn a_second_run_cannot_freeze_a_partition_another_holds_and_a_cancel_releases_it() {
    let parts = Parts::new();
    let windows = Arc::new(MemoryWindows::new());
    let bf = executor(&parts, &windows);
    let first = freezing("bf-first", &["2025-01", "2025-02", "2025-03"]);
    let mut m = manifest("bf-second");
    m.target.live_writes = LiveWrites::Freeze;
    m.target.partitions = vec!["2025-03".into()];
    m.source.range = Some(InputRange::Dates {
        from: day(2025, 3, 1),
        to_exclusive: day(2025, 4, 1),
    });
    let second = approve(m);
    bf.control().submit(&first).await.unwrap();
    bf.control().submit(&second).await.unwrap();
    bf.run(first.run_id()).await.unwrap();

    let err = bf.run(second.run_id()).await.unwrap_err();
    assert!(
        matches!(&err, Error::WindowFrozen { run_id, partition, .. } if run_id.as_str() == "bf-first" && partition == "2025-03"),
        "{err}"
    );
    assert_eq!(
        bf.control().run(second.run_id()).await.unwrap().state,
        RunState::Approved,
        "the refused run did not start"
    );
    // All or nothing: the refused freeze holds no partition.
    let held: Vec<_> = windows
        .windows("amounts_daily")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|w| w.frozen_by.map(|r| (w.partition, r.to_string())))
        .collect();
    assert!(held.iter().all(|(_, r)| r == "bf-first"), "{held:?}");

    bf.control()
        .cancel(first.run_id(), "owner", "superseded by a wider fix")
        .await
        .unwrap();
    windows
        .admit("amounts_daily", &live("2025-01"), "live-1", at())
        .await
        .unwrap();
    let report = bf.run(second.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    // Published by the runner: thawed again.
    windows
        .admit("amounts_daily", &live("2025-03"), "live-1", at())
        .await
        .unwrap();
}

#[tokio::test]
async fn publication_is_refused_when_the_window_was_written_after_an_early_thaw() {
    let parts = Parts::new();
    let windows = Arc::new(MemoryWindows::new());
    let bf = executor(&parts, &windows);
    let approved = freezing("bf-thawed", &["2025-01", "2025-02", "2025-03"]);
    bf.control().submit(&approved).await.unwrap();
    bf.run(approved.run_id()).await.unwrap();
    windows
        .thaw(approved.run_id(), "amounts_daily")
        .await
        .unwrap();
    windows
        .admit("amounts_daily", &live("2025-02"), "orders-stream", at())
        .await
        .unwrap();
    let err = bf
        .control()
        .publish(approved.run_id(), "owner")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::PublishRefused { .. }), "{msg}");
    assert!(
        msg.contains("partition 2025-02")
            && msg.contains("orders-stream")
            && msg.contains("1 writes since"),
        "{msg}"
    );
    assert!(parts.publisher.snapshot().is_empty(), "nothing published");
    assert!(parts
        .store
        .accepted("amounts_daily")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_freeze_without_a_window_registry_is_a_configuration_error() {
    let parts = Parts::new();
    let bf = parts.runner(Arc::new(source()), Scale::default()).build();
    let approved = freezing("bf-unregistered", &["2025-01", "2025-02", "2025-03"]);
    bf.control().submit(&approved).await.unwrap();
    let err = bf.run(approved.run_id()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("target.live_writes"), "{err}");
}

#[test]
fn live_writes_must_fit_the_mutation() {
    let cases = [
        (
            LiveWrites::Freeze,
            Mutation::ReplacePartitions,
            false,
            "live_freeze_without_window",
        ),
        (
            LiveWrites::SourceVersionMerge,
            Mutation::ReplacePartitions,
            true,
            "live_merge_needs_merge_by_key",
        ),
        (
            LiveWrites::VersionedWrites,
            Mutation::ShadowSwap,
            true,
            "live_versions_need_versioned_output",
        ),
    ];
    for (live, mutation, partitions, code) in cases {
        let mut m = manifest("bf-live");
        m.target.live_writes = live;
        m.target.mutation = Some(mutation);
        if !partitions {
            m.target.partitions.clear();
        }
        let f = m.check();
        assert!(f.contains(code), "{code}: {f:?}");
        let finding = f.0.iter().find(|x| x.code == code).unwrap();
        assert_eq!(finding.field, "target.live_writes");
        assert_eq!(finding.question, "What is the publication strategy?");
        assert!(m.approve("owner", at()).is_err(), "{code} blocks approval");
    }
    let mut ok = manifest("bf-live");
    ok.target.live_writes = LiveWrites::SourceVersionMerge;
    ok.target.mutation = Some(Mutation::MergeByKey {
        key: vec!["id".into()],
        version_column: "source_version".into(),
        delete_column: None,
    });
    assert!(!ok.check().0.iter().any(|f| f.field == "target.live_writes"));
}

#[test]
fn live_writes_read_from_manifests_and_stay_out_of_old_digests() {
    let plain = manifest("bf-live");
    let json = serde_json::to_value(&plain).unwrap();
    assert!(
        json["target"].get("live_writes").is_none(),
        "default not written"
    );
    let mut v = json.clone();
    v["target"]["liveWrites"] = "freeze".into();
    let m: RunManifest = serde_json::from_value(v).unwrap();
    assert_eq!(m.target.live_writes, LiveWrites::Freeze);
    let mut v = json;
    v["target"]["live_writes"] = "last_writer_wins".into();
    let err = serde_json::from_value::<RunManifest>(v).unwrap_err();
    assert!(err.to_string().contains("last_writer_wins"), "{err}");
}
