//! Dry runs, manual publish, owner review, supersession, rollback and unknown publish outcomes.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::memory::{MemoryPublisher, MemorySource};
use backfill_core::prelude::*;
use backfill_core::publish::{PublishRequest, RollbackRequest};
use backfill_core::store::ChunkStatus;
use backfill_core::validate::{BusinessDelta, UniqueKey};
use common::*;
use futures::stream::BoxStream;

#[tokio::test]
async fn dry_run_computes_and_validates_but_publishes_nothing() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-dry");
    m.mode = ExecutionMode::DryRun;
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Validated);
    assert_eq!(report.output_rows, 270);
    assert!(parts.publisher.snapshot().is_empty());
    assert!(parts
        .store
        .accepted("amounts_daily")
        .await
        .unwrap()
        .is_none());
    let err = runner
        .control()
        .publish(approved.run_id(), "owner")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PublishRefused { .. }), "{err}");
    assert!(parts.publisher.snapshot().is_empty());
}

#[tokio::test]
async fn manual_publish_stops_at_validated_until_published() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-manual");
    m.safety.manual_publish = true;
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    assert_eq!(
        runner.run(approved.run_id()).await.unwrap().state,
        RunState::Validated
    );
    assert!(parts.publisher.snapshot().is_empty());
    // Running again does not publish either.
    assert_eq!(
        runner.run(approved.run_id()).await.unwrap().state,
        RunState::Validated
    );
    let receipt = runner
        .control()
        .publish(approved.run_id(), "owner")
        .await
        .unwrap();
    assert_eq!(receipt.rows, 270);
    assert_eq!(
        runner.status(approved.run_id()).await.unwrap().state,
        RunState::Published
    );
    // Publishing again returns the same receipt.
    assert_eq!(
        runner
            .control()
            .publish(approved.run_id(), "owner")
            .await
            .unwrap(),
        receipt
    );
}

#[tokio::test]
async fn failed_validation_rejects_and_publishes_nothing() {
    let parts = Parts::new();
    let runner = parts
        .runner(Arc::new(source()), Scale::default())
        // Accounts repeat every day: not a unique key.
        .validator(Arc::new(UniqueKey::new("account", |r: &Row| {
            r.account.clone()
        })))
        .build();
    let approved = approve(manifest("bf-bad"));
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    match &err {
        Error::ValidationFailed { failed, .. } => {
            assert_eq!(failed, &vec!["unique(account)".to_owned()])
        }
        other => panic!("{other}"),
    }
    let report = runner.status(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Rejected);
    assert!(report
        .validations
        .iter()
        .any(|v| v.verdict == Verdict::Fail));
    assert!(parts.publisher.snapshot().is_empty());
    let err = runner
        .control()
        .publish(approved.run_id(), "owner")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PublishRefused { .. }));
}

/// Publishes run `bf-v1` (factor 2), then restates with `bf-v2` (factor 3, version 2.0.0).
async fn publish_then_restate(parts: &Parts) -> (Executor<Scale>, ApprovedManifest) {
    let v1 = parts.runner(Arc::new(source()), Scale::default()).build();
    let approved = approve(manifest("bf-v1"));
    v1.control().submit(&approved).await.unwrap();
    assert_eq!(
        v1.run(approved.run_id()).await.unwrap().state,
        RunState::Published
    );

    let fixed = Scale {
        factor: 3,
        version: "2.0.0",
    };
    let v2 = parts
        .runner(Arc::new(source()), fixed)
        .validator(Arc::new(BusinessDelta::new("cents", |r: &Row| r.cents)))
        .build();
    let mut m = manifest("bf-v2");
    m.transform.version = "2.0.0".into();
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        business_delta_max_pct: Some(20),
        ..Default::default()
    });
    let approved = approve(m);
    v2.control().submit(&approved).await.unwrap();
    (v2, approved)
}

#[tokio::test]
async fn business_delta_over_threshold_waits_for_owner_then_supersedes() {
    let parts = Parts::new();
    let (v2, approved) = publish_then_restate(&parts).await;
    let report = v2.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::AwaitingReview);
    let delta = report
        .validations
        .iter()
        .find(|v| v.validator == "business_delta(cents)")
        .unwrap();
    assert_eq!(delta.verdict, Verdict::NeedsReview);
    assert_eq!(delta.details["partitions"][0]["delta_pct"], 50);
    // Still the old output.
    assert!(parts
        .publisher
        .snapshot()
        .values()
        .flatten()
        .all(|r| r.run_id == "bf-v1"));

    let err = v2
        .control()
        .review(approved.run_id(), true, "data-platform", "looks fine")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SelfApproval { .. }), "{err}");
    assert_eq!(
        v2.control()
            .review(
                approved.run_id(),
                true,
                "owner",
                "1.5x expected from the fix"
            )
            .await
            .unwrap(),
        RunState::Validated
    );
    let report = v2.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    assert!(parts
        .publisher
        .snapshot()
        .values()
        .flatten()
        .all(|r| r.run_id == "bf-v2"));
    assert_eq!(
        parts
            .store
            .accepted("amounts_daily")
            .await
            .unwrap()
            .unwrap()
            .run_id
            .as_str(),
        "bf-v2"
    );
    assert_eq!(
        parts
            .store
            .run(&"bf-v1".into())
            .await
            .unwrap()
            .unwrap()
            .state,
        RunState::Superseded
    );
}

#[tokio::test]
async fn owner_rejection_is_final() {
    let parts = Parts::new();
    let (v2, approved) = publish_then_restate(&parts).await;
    v2.run(approved.run_id()).await.unwrap();
    assert_eq!(
        v2.control()
            .review(approved.run_id(), false, "owner", "too big")
            .await
            .unwrap(),
        RunState::Rejected
    );
    assert_eq!(
        v2.run(approved.run_id()).await.unwrap().state,
        RunState::Rejected
    );
    assert!(parts
        .publisher
        .snapshot()
        .values()
        .flatten()
        .all(|r| r.run_id == "bf-v1"));
}

#[tokio::test]
async fn rollback_moves_the_pointer_back_and_restores_output() {
    let parts = Parts::new();
    let before = {
        let (v2, approved) = publish_then_restate(&parts).await;
        let old = parts.publisher.snapshot();
        v2.run(approved.run_id()).await.unwrap();
        v2.control()
            .review(approved.run_id(), true, "owner", "ok")
            .await
            .unwrap();
        v2.run(approved.run_id()).await.unwrap();
        let receipt = v2
            .control()
            .rollback(
                "amounts_daily",
                &"bf-v1".into(),
                "owner",
                "downstream broke",
            )
            .await
            .unwrap();
        assert_eq!(receipt.run_id.as_str(), "bf-v1");
        old
    };
    assert_eq!(parts.publisher.snapshot(), before);
    assert_eq!(
        parts
            .store
            .accepted("amounts_daily")
            .await
            .unwrap()
            .unwrap()
            .run_id
            .as_str(),
        "bf-v1"
    );
    assert_eq!(
        parts
            .store
            .run(&"bf-v1".into())
            .await
            .unwrap()
            .unwrap()
            .state,
        RunState::Published
    );
    let v2 = parts.store.run(&"bf-v2".into()).await.unwrap().unwrap();
    assert_eq!(v2.state, RunState::RolledBack);
    let last = parts
        .store
        .transitions(&"bf-v2".into())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.by.as_str(), last.reason.as_str()),
        ("owner", "downstream broke")
    );
}

/// A publisher whose first publish commits and then reports a transient error: the unknown outcome.
#[derive(Debug)]
struct CommitThenFail {
    inner: MemoryPublisher<Row>,
    publishes: AtomicU32,
}

#[async_trait]
impl Publisher for CommitThenFail {
    fn descriptor(&self) -> SinkDescriptor {
        self.inner.descriptor()
    }
    fn capabilities(&self) -> PublisherCapabilities {
        self.inner.capabilities()
    }
    async fn publish(&self, req: PublishRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        let n = self.publishes.fetch_add(1, Ordering::SeqCst);
        let receipt = self.inner.publish(req).await?;
        if n == 0 {
            return Err(Error::transient("test", Injected));
        }
        Ok(receipt)
    }
    async fn inspect(&self, run_id: &RunId) -> backfill_core::Result<Option<PublishReceipt>> {
        self.inner.inspect(run_id).await
    }
    async fn rollback(&self, req: RollbackRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        self.inner.rollback(req).await
    }
    async fn inspect_rollback(
        &self,
        from: &RunId,
        to: &RunId,
    ) -> backfill_core::Result<Option<PublishReceipt>> {
        self.inner.inspect_rollback(from, to).await
    }
}

impl TargetReader<Row> for CommitThenFail {
    fn read_current<'a>(
        &'a self,
        partition: &'a PartitionKey,
    ) -> BoxStream<'a, backfill_core::Result<Vec<Row>>> {
        self.inner.read_current(partition)
    }
}

#[tokio::test]
async fn unknown_publish_outcome_is_inspected_not_repeated() {
    let parts = Parts::new();
    let publisher = Arc::new(CommitThenFail {
        inner: MemoryPublisher::new("amounts_daily", &parts.sink),
        publishes: AtomicU32::new(0),
    });
    let control = Control::new(parts.store.clone())
        .with_clock(Arc::new(FixedClock(at())))
        .with_target(publisher.clone())
        .unwrap();
    let runner = Executor::builder(
        control,
        Arc::new(source()),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        publisher.clone(),
    )
    .build();
    let approved = approve(manifest("bf-unknown"));
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        parts
            .store
            .run(approved.run_id())
            .await
            .unwrap()
            .unwrap()
            .state,
        RunState::Validated
    );

    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    assert_eq!(
        publisher.publishes.load(Ordering::SeqCst),
        1,
        "published twice"
    );
    assert_eq!(report.receipt.unwrap().rows, 270);
    assert_eq!(
        parts
            .store
            .accepted("amounts_daily")
            .await
            .unwrap()
            .unwrap()
            .run_id
            .as_str(),
        "bf-unknown"
    );
}

#[tokio::test]
async fn running_a_published_run_again_changes_nothing() {
    let parts = Parts::new();
    let src = Arc::new(source());
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let approved = approve(manifest("bf-again"));
    runner.control().submit(&approved).await.unwrap();
    let first = runner.run(approved.run_id()).await.unwrap();
    let evidence = parts.store.evidence(approved.run_id()).await.unwrap().len();
    let reads = src.read_log().len();
    // Submitting the same manifest is idempotent; a different one under the same id conflicts.
    runner.control().submit(&approved).await.unwrap();
    let mut other = manifest("bf-again");
    other.reason = "something else".into();
    let err = runner.control().submit(&approve(other)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    let second = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(src.read_log().len(), reads);
    assert_eq!(
        parts.store.evidence(approved.run_id()).await.unwrap().len(),
        evidence
    );
}

#[tokio::test]
async fn amendment_supersedes_the_unrun_version() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let v1 = approve(manifest("bf-am-1"));
    runner.control().submit(&v1).await.unwrap();
    let mut v2 = v1.amend("bf-am-2");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.supersedes.as_ref().unwrap().digest, *v1.digest());
    v2.reason = "fix amounts, narrower".into();
    let v2 = approve(v2);
    runner.control().submit(&v2).await.unwrap();
    assert_eq!(
        parts.store.run(v1.run_id()).await.unwrap().unwrap().state,
        RunState::Cancelled
    );
    assert_eq!(
        runner.run(v2.run_id()).await.unwrap().state,
        RunState::Published
    );
}

#[tokio::test]
async fn transform_that_is_not_the_manifests_is_refused() {
    let parts = Parts::new();
    let runner = parts
        .runner(
            Arc::new(source()),
            Scale {
                factor: 2,
                version: "9.9.9",
            },
        )
        .build();
    let approved = approve(manifest("bf-wrong-code"));
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidManifest { field, .. } if field == "transform"),
        "{err}"
    );
}

#[tokio::test]
async fn rows_outside_the_declared_partitions_are_refused() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-scope");
    m.target.partitions = vec!["2025-01".into(), "2025-02".into()];
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    match err.root() {
        Error::OutOfScope { partition, .. } => assert_eq!(partition, "2025-03"),
        other => panic!("{other}"),
    }
    assert!(parts.publisher.snapshot().is_empty());
}

#[tokio::test]
async fn parallel_and_sequential_runs_agree() {
    let mut digests = Vec::new();
    for parallel in [1, 4] {
        let parts = Parts::new();
        let runner = parts
            .runner(
                Arc::new(
                    MemorySource::by_date(events(), |e: &Event| e.day)
                        .snapshot("s-1")
                        .chunk_by(backfill_core::memory::ChunkBy::Days(7)),
                ),
                Scale::default(),
            )
            .build();
        let mut m = manifest("bf-par");
        m.safety.limits.max_chunks_in_parallel = parallel;
        let approved = approve(m);
        runner.control().submit(&approved).await.unwrap();
        let report = runner.run(approved.run_id()).await.unwrap();
        assert_eq!(report.chunks_total, 13);
        let chunks = parts.store.chunks(approved.run_id()).await.unwrap();
        assert!(chunks
            .iter()
            .all(|c| c.status == ChunkStatus::Done && c.attempts == 1));
        digests.push(report.digests);
    }
    assert_eq!(digests[0], digests[1]);
}

#[tokio::test]
async fn the_same_review_twice_stands_and_a_different_one_is_refused() {
    let parts = Parts::new();
    let (v2, approved) = publish_then_restate(&parts).await;
    v2.run(approved.run_id()).await.unwrap();
    let control = v2.control();
    let first = control
        .review(approved.run_id(), true, "owner", "expected")
        .await
        .unwrap();
    assert_eq!(first, RunState::Validated);
    // A retry, or a second worker of the same job: the decision stands, recorded once.
    let again = control
        .review(approved.run_id(), true, "owner", "expected")
        .await
        .unwrap();
    assert_eq!(again, RunState::Validated);
    let reviews = parts
        .store
        .evidence(approved.run_id())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            matches!(
                e.record,
                backfill_core::evidence::EvidenceRecord::Review { .. }
            )
        })
        .count();
    assert_eq!(reviews, 1);
    // The opposite decision, or another reviewer's, after the review is refused.
    let err = control
        .review(approved.run_id(), false, "owner", "changed my mind")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IllegalEvent { .. }), "{err}");
    let err = control
        .review(approved.run_id(), true, "auditor", "me too")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IllegalEvent { .. }), "{err}");
}
