//! The control plane and the preflight refusals of core v2: pinned snapshots, plan coverage,
//! publisher capabilities, validation-plan names, empty declared partitions, cancel by id, evidence
//! export and verification.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::evidence::bundle::{verify_rows, EvidenceBundle};
use backfill_core::evidence::EvidenceRecord;
use backfill_core::plan::{ChunkSpec, SourcePlan};
use backfill_core::prelude::*;
use backfill_core::store::ChunkStatus;
use backfill_core::validate::UniqueKey;
use common::*;
use futures::stream::BoxStream;

#[tokio::test]
async fn a_snapshot_other_than_the_pin_is_refused_before_any_chunk_runs() {
    let parts = Parts::new();
    let src = Arc::new(source().snapshot("s-2"));
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let approved = approve(manifest("bf-pin"));
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    match err.root() {
        Error::SnapshotMismatch {
            pinned, resolved, ..
        } => assert_eq!((pinned.as_str(), resolved.as_str()), ("s-1", "s-2")),
        other => panic!("expected SnapshotMismatch, got {other}"),
    }
    assert!(src.read_log().is_empty(), "no chunk may be read");
    assert!(parts.store.plan(approved.run_id()).await.unwrap().is_none());
}

#[tokio::test]
async fn lineage_records_the_resolved_snapshot() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-resolved");
    m.source.snapshot = None;
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    runner.run(approved.run_id()).await.unwrap();
    let evidence = parts.store.evidence(approved.run_id()).await.unwrap();
    let planned = evidence
        .iter()
        .find_map(|e| match &e.record {
            EvidenceRecord::PlanResolved { snapshot, .. } => snapshot.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(planned, "s-1");
    let plan = parts.store.plan(approved.run_id()).await.unwrap().unwrap();
    let ctx = TransformContext::for_manifest(approved.manifest(), plan.planned_at)
        .with_input_snapshot(plan.snapshot.clone());
    assert_eq!(ctx.lineage().input_snapshot.as_deref(), Some("s-1"));
}

/// A source whose plan leaves out one day (or counts one twice).
#[derive(Debug)]
struct Gappy {
    overlap: bool,
}

#[async_trait]
impl BackfillSource<Event> for Gappy {
    fn name(&self) -> &str {
        "gappy"
    }
    async fn plan(&self, _m: &RunManifest) -> backfill_core::Result<SourcePlan> {
        let second_from = if self.overlap {
            day(2025, 2, 1)
        } else {
            day(2025, 2, 3)
        };
        Ok(SourcePlan {
            snapshot: Some("s-1".into()),
            resolved_from: None,
            chunks: vec![
                ChunkSpec::new(
                    InputRange::Dates {
                        from: day(2025, 1, 1),
                        to_exclusive: day(2025, 2, 2),
                    },
                    "a",
                ),
                ChunkSpec::new(
                    InputRange::Dates {
                        from: second_from,
                        to_exclusive: day(2025, 4, 1),
                    },
                    "b",
                ),
            ],
        })
    }
    fn read(
        &self,
        _chunk: &backfill_core::plan::PlannedChunk,
    ) -> BoxStream<'static, backfill_core::Result<Vec<Event>>> {
        panic!("a plan with gaps or overlaps must never be read")
    }
}

#[tokio::test]
async fn plans_with_gaps_or_overlaps_are_refused() {
    for (overlap, needle) in [(false, "gap [2025-02-02, 2025-02-03)"), (true, "overlap")] {
        let parts = Parts::new();
        let runner = Executor::builder(
            parts.control(),
            Arc::new(Gappy { overlap }),
            Arc::new(Scale::default()),
            parts.sink.clone(),
            parts.publisher.clone(),
        )
        .build();
        let approved = approve(manifest(if overlap { "bf-over" } else { "bf-gap" }));
        runner.control().submit(&approved).await.unwrap();
        let err = runner.run(approved.run_id()).await.unwrap_err();
        assert!(
            matches!(err.root(), Error::PlanCoverage { detail, .. } if detail.contains(needle)),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_mutation_the_publisher_cannot_apply_is_refused_at_preflight() {
    let parts = Parts::new();
    let src = Arc::new(source());
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let mut m = manifest("bf-merge");
    m.target.mutation = Some(Mutation::MergeByKey {
        key: vec!["id".into()],
        version_column: "day".into(),
        delete_column: None,
    });
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { what, .. } if what.contains("merge_by_key")),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::NotSupported);
    assert!(src.read_log().is_empty());
}

#[tokio::test]
async fn a_target_without_a_registered_publisher_is_refused_at_preflight() {
    let parts = Parts::new();
    let src = Arc::new(source());
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let mut m = manifest("bf-elsewhere");
    m.target.name = "other_table".into();
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { what, .. } if what.contains("other_table")),
        "{err}"
    );
    assert!(src.read_log().is_empty());
}

#[tokio::test]
async fn validation_plan_names_must_be_implemented() {
    let parts = Parts::new();
    let src = Arc::new(source());
    let runner = parts
        .runner(src.clone(), Scale::default())
        .validator(Arc::new(UniqueKey::new("id", |r: &Row| r.id.clone())))
        .build();
    let mut m = manifest("bf-checks");
    m.validation.as_mut().unwrap().checks = vec!["unique(id)".into(), "no_orphans".into()];
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidManifest { field, message, .. }
            if field == "validation.checks[1]" && message.contains("no_orphans")),
        "{err}"
    );
    let mut m = manifest("bf-gate");
    m.validation.as_mut().unwrap().quality_gate = Some("finance".into());
    // A check may name a validator of the gate.
    m.validation.as_mut().unwrap().checks = vec!["unique(id)".into()];
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidManifest { field, .. } if field == "validation.quality_gate"),
        "{err}"
    );
    assert!(src.read_log().is_empty());

    // Registered, the gate runs.
    let runner = parts
        .runner(Arc::new(source()), Scale::default())
        .quality_gate(
            "finance",
            vec![Arc::new(UniqueKey::new("id", |r: &Row| r.id.clone()))],
        )
        .build();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    assert!(report
        .validations
        .iter()
        .any(|v| v.validator == "unique(id)"));
}

#[tokio::test]
async fn replace_partitions_refuses_to_empty_a_declared_partition() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-empty");
    m.target.partitions.push("2025-04".into());
    let approved = approve(m.clone());
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(
        matches!(&err, Error::ValidationFailed { failed, .. } if failed == &["declared_partitions_staged"]),
        "{err}"
    );
    assert!(parts.publisher.snapshot().is_empty());

    m.run_id = "bf-empty-ok".into();
    m.target.allow_empty_partitions = true;
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    assert_eq!(
        report
            .receipt
            .unwrap()
            .partitions
            .last()
            .map(|p| p.as_str()),
        Some("2025-04")
    );
}

#[tokio::test]
async fn cancel_by_id_is_persisted_honoured_and_resumable() {
    let parts = Parts::new();
    let src = Arc::new(source());
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let approved = approve(manifest("bf-cancel"));
    let control = runner.control().clone();
    control.submit(&approved).await.unwrap();
    // An operator cancels through the control plane alone; a worker that starts later refuses.
    control
        .cancel(approved.run_id(), "ops", "wrong window")
        .await
        .unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Cancelled);
    assert!(src.read_log().is_empty());
    let evidence = parts.store.evidence(approved.run_id()).await.unwrap();
    assert!(evidence.iter().any(|e| matches!(
        &e.record,
        EvidenceRecord::CancelRequested { reason } if reason == "wrong window"
    )));
    // Reopened, the run resumes and finishes.
    control
        .reopen(approved.run_id(), "ops", "window fixed")
        .await
        .unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
}

#[tokio::test]
async fn a_worker_stops_when_the_run_is_cancelled_elsewhere() {
    let parts = Parts::new();
    let src = Arc::new(source().chunk_by(backfill_core::memory::ChunkBy::Days(1)));
    let runner = Arc::new(parts.runner(src.clone(), Scale::default()).build());
    let mut m = manifest("bf-cancel-2");
    m.safety.limits.pause_between_windows_ms = 5;
    let approved = approve(m);
    let control = runner.control().clone();
    control.submit(&approved).await.unwrap();
    let run_id = approved.run_id().clone();
    let worker = {
        let runner = runner.clone();
        let run_id = run_id.clone();
        tokio::spawn(async move { runner.run(&run_id).await })
    };
    // Cancel as soon as the first chunk is done.
    loop {
        let chunks = parts.store.chunks(&run_id).await.unwrap();
        if chunks.iter().any(|c| c.status == ChunkStatus::Done) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    control.cancel(&run_id, "ops", "stop").await.unwrap();
    let result = worker.await.unwrap();
    assert!(
        matches!(&result, Err(e) if e.root().kind() == ErrorKind::Cancelled),
        "{result:?}"
    );
    let chunks = parts.store.chunks(&run_id).await.unwrap();
    let done = chunks
        .iter()
        .filter(|c| c.status == ChunkStatus::Done)
        .count();
    assert!(done < chunks.len(), "the worker stopped early");
    assert_eq!(
        control.run(&run_id).await.unwrap().state,
        RunState::Cancelled
    );
}

#[tokio::test]
async fn runs_are_listed_and_filtered() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    for id in ["bf-l1", "bf-l2"] {
        runner
            .control()
            .submit(&approve(manifest(id)))
            .await
            .unwrap();
    }
    runner.run(&"bf-l1".into()).await.unwrap();
    let control = runner.control();
    let all = control.runs(&RunFilter::all()).await.unwrap();
    assert_eq!(all.len(), 2);
    let published = control
        .runs(&RunFilter::all().state(RunState::Published))
        .await
        .unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].run_id.as_str(), "bf-l1");
    let mine = control
        .runs(&RunFilter::all().requested_by("data-platform").limit(1))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert!(control
        .runs(&RunFilter::all().target("nothing"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn export_and_verify_pass_and_fail_after_one_row_is_altered() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let approved = approve(manifest("bf-verify"));
    runner.control().submit(&approved).await.unwrap();
    runner.run(approved.run_id()).await.unwrap();
    let bundle = runner.control().export(approved.run_id()).await.unwrap();
    let json = bundle.to_json_pretty();
    let bundle = EvidenceBundle::from_json(&json).unwrap();
    assert!(bundle.verify().passed(), "{:?}", bundle.verify().failures());
    let online = verify_rows(
        &bundle,
        Some(parts.sink.as_ref() as &dyn StagingSink<Row>),
        Some(parts.publisher.as_ref() as &dyn TargetReader<Row>),
    )
    .await
    .unwrap();
    assert!(online.passed(), "{:?}", online.failures());

    // One staged row altered: the staged check fails.
    let chunk = &bundle.chunks[0].chunk_id;
    let mut rows = parts.sink.chunk_rows(approved.run_id(), chunk);
    rows[0].cents += 1;
    assert!(parts
        .sink
        .tamper(approved.run_id(), chunk, 0, rows[0].clone()));
    let v = verify_rows(
        &bundle,
        Some(parts.sink.as_ref() as &dyn StagingSink<Row>),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        v.failures()
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["staged_rows_match_ledger"]
    );

    // One ledger digest altered in the bundle: the receipt and chunk evidence disagree with it.
    let mut forged = bundle.clone();
    let other = forged.chunks[1].digests.clone();
    forged.chunks[0].digests = other;
    let names: Vec<String> = forged
        .verify()
        .failures()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert!(
        names.contains(&"ledger_matches_receipt".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"chunk_evidence_matches_ledger".to_owned()));

    // The manifest text altered: its digest no longer matches the approval.
    let mut forged = bundle.clone();
    forged.manifest.json = forged.manifest.json.replace("fix amounts", "fix nothing");
    assert_eq!(forged.verify().failures()[0].name, "manifest_digest");
}

#[tokio::test]
async fn a_published_row_altered_fails_online_verification() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let approved = approve(manifest("bf-verify-2"));
    runner.control().submit(&approved).await.unwrap();
    runner.run(approved.run_id()).await.unwrap();
    let bundle = runner.control().export(approved.run_id()).await.unwrap();
    // Published rows are read back from a reader that shows one changed row.
    let reader = AlteredReader(parts.publisher.clone());
    let v = verify_rows(&bundle, None, Some(&reader as &dyn TargetReader<Row>))
        .await
        .unwrap();
    assert_eq!(
        v.failures()
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["published_rows_match_ledger"]
    );
}

/// Reads the real target but changes the first row of every partition.
#[derive(Debug)]
struct AlteredReader(Arc<backfill_core::memory::MemoryPublisher<Row>>);

impl TargetReader<Row> for AlteredReader {
    fn read_current<'a>(
        &'a self,
        partition: &'a PartitionKey,
    ) -> BoxStream<'a, backfill_core::Result<Vec<Row>>> {
        use futures::StreamExt;
        let mut first = true;
        self.0
            .read_current(partition)
            .map(move |batch| {
                batch.map(|mut rows| {
                    if first && !rows.is_empty() {
                        rows[0].cents += 1;
                        first = false;
                    }
                    rows
                })
            })
            .boxed()
    }
}

#[tokio::test]
async fn rollback_through_the_control_plane_is_idempotent() {
    let parts = Parts::new();
    let v1 = parts.runner(Arc::new(source()), Scale::default()).build();
    let a = approve(manifest("bf-r1"));
    v1.control().submit(&a).await.unwrap();
    v1.run(a.run_id()).await.unwrap();
    let fixed = Scale {
        factor: 3,
        version: "2.0.0",
    };
    let v2 = parts.runner(Arc::new(source()), fixed).build();
    let mut m = manifest("bf-r2");
    m.transform.version = "2.0.0".into();
    let b = approve(m);
    v2.control().submit(&b).await.unwrap();
    v2.run(b.run_id()).await.unwrap();
    // The operator's tool links no transform: a bare control plane over the same store and target.
    let control = parts.control();
    let first = control
        .rollback_run(b.run_id(), "ops", "bad numbers")
        .await
        .unwrap();
    let again = control
        .rollback("amounts_daily", a.run_id(), "ops", "bad numbers")
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(
        parts
            .store
            .accepted("amounts_daily")
            .await
            .unwrap()
            .unwrap()
            .run_id,
        *a.run_id()
    );
    assert_eq!(
        control.run(b.run_id()).await.unwrap().state,
        RunState::RolledBack
    );
    assert_eq!(
        control.run(a.run_id()).await.unwrap().state,
        RunState::Published
    );
    let rolled = parts
        .store
        .evidence(b.run_id())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.record, EvidenceRecord::RolledBack { .. }))
        .count();
    assert_eq!(rolled, 1, "evidence is recorded once");
}

/// Runs `first` and publishes it, then runs `second` (a fixed transform), whose run publishes and
/// supersedes `first`; returns both and the first run's receipt.
async fn published_then_superseded(
    parts: &Parts,
    first: &str,
    second: &str,
) -> (ApprovedManifest, ApprovedManifest, PublishReceipt) {
    let v1 = parts.runner(Arc::new(source()), Scale::default()).build();
    let a = approve(manifest(first));
    v1.control().submit(&a).await.unwrap();
    v1.run(a.run_id()).await.unwrap();
    let receipt = parts
        .control()
        .publish(a.run_id(), "worker-1")
        .await
        .unwrap();
    let fixed = Scale {
        factor: 3,
        version: "2.0.0",
    };
    let v2 = parts.runner(Arc::new(source()), fixed).build();
    let mut m = manifest(second);
    m.transform.version = "2.0.0".into();
    let b = approve(m);
    v2.control().submit(&b).await.unwrap();
    v2.run(b.run_id()).await.unwrap();
    (a, b, receipt)
}

/// A late worker publishing `first` (already published, since superseded by `later`) gets its
/// receipt, and neither the target's rows nor its pointer move.
async fn late_publish_changes_nothing(
    parts: &Parts,
    first: &ApprovedManifest,
    later: &ApprovedManifest,
    receipt: &PublishReceipt,
) {
    let before = parts.publisher.snapshot();
    let late = parts
        .control()
        .publish(first.run_id(), "worker-2")
        .await
        .unwrap();
    assert_eq!(&late, receipt);
    assert_eq!(
        parts.publisher.snapshot(),
        before,
        "the target is untouched"
    );
    assert_eq!(
        parts.accepted_run().await,
        *later.run_id(),
        "the pointer stays on the later run"
    );
}

#[tokio::test]
async fn publishing_a_run_already_published_and_superseded_answers_its_receipt() {
    let parts = Parts::new();
    let control = parts.control();
    let (a, b, first) = published_then_superseded(&parts, "bf-s1", "bf-s2").await;
    assert_eq!(
        control.run(a.run_id()).await.unwrap().state,
        RunState::Superseded
    );
    // A worker paused since before the supersession asks to publish the first run.
    late_publish_changes_nothing(&parts, &a, &b, &first).await;
    assert_eq!(
        control.run(a.run_id()).await.unwrap().state,
        RunState::Superseded
    );
    // A run rolled back is not republished by a late worker either: it stays refused.
    control
        .rollback_run(b.run_id(), "ops", "bad numbers")
        .await
        .unwrap();
    let err = control.publish(b.run_id(), "worker-3").await.unwrap_err();
    assert!(matches!(err, Error::PublishRefused { .. }), "{err}");
}

/// Fault campaign trial 940: a worker read the first run as `published`, was paused, and on waking
/// read the accepted pointer, which a later run had taken meanwhile. It took that later run for the
/// one its publication replaced: it superseded the later run and moved the pointer back.
#[tokio::test]
async fn a_late_worker_with_a_stale_published_state_leaves_a_later_run_alone() {
    let parts = Parts::new();
    let control = parts.control();
    let (a, b, first) = published_then_superseded(&parts, "bf-p1", "bf-p2").await;
    // What the late worker read before its pause: the first run still `published`.
    parts
        .store
        .transition(&backfill_core::state::Transition {
            run_id: a.run_id().clone(),
            from: RunState::Superseded,
            to: RunState::Published,
            by: "test".into(),
            at: at(),
            reason: "the state a paused worker read".into(),
        })
        .await
        .unwrap();

    late_publish_changes_nothing(&parts, &a, &b, &first).await;
    assert_eq!(
        control.run(b.run_id()).await.unwrap().state,
        RunState::Published,
        "the later run is not superseded"
    );
}

#[test]
fn the_default_worker_id_is_unique_per_process() {
    let id = backfill_core::runner::default_worker_id();
    assert!(id.contains(&std::process::id().to_string()), "{id}");
    assert_eq!(id, RunnerOptions::default().worker_id);
    assert_ne!(id, "local");
}

#[tokio::test]
async fn chunks_digested_in_another_format_are_not_resumed() {
    use backfill_core::store::ChunkOutcome;
    let parts = Parts::new();
    let src = Arc::new(source());
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let approved = approve(manifest("bf-format"));
    runner.control().submit(&approved).await.unwrap();
    // Plan with a fresh executor, then record one chunk as an older release (format 1) would have.
    let plan = backfill_core::plan::ResolvedPlan::new(
        approved.run_id(),
        approved.digest().clone(),
        src.plan(approved.manifest()).await.unwrap(),
        at(),
    );
    parts.store.put_plan(&plan).await.unwrap();
    let lease = parts
        .store
        .claim_chunk(
            approved.run_id(),
            "old-release",
            at(),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap()
        .unwrap();
    let old = ChunkOutcome {
        digest_format: 1,
        ..ChunkOutcome::default()
    };
    parts
        .store
        .complete_chunk(&lease, &old, at())
        .await
        .unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { what, .. } if what.contains("format 1")),
        "{err}"
    );
}
