//! backfill-core's memory implementations pass every suite; deliberately broken ones fail.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::manifest::Mutation;
use backfill_core::memory::{MemoryPublisher, MemorySink, MemoryStore};
use backfill_core::publish::{
    PublishReceipt, PublishRequest, Publisher, PublisherCapabilities, RollbackRequest, TargetReader,
};
use backfill_core::sink::{SinkDescriptor, StagingSink};
use backfill_core::state::Transition;
use backfill_core::store::RunStore;
use backfill_testkit::{PublishTarget, PublisherHarness, SinkHarness, StoreHarness, TestRow};
use common::{AppendingSink, UnfencedSink};
use futures::stream::BoxStream;

struct Memory;

#[async_trait]
impl StoreHarness for Memory {
    async fn build(&self, _: &str) -> backfill_core::Result<Arc<dyn RunStore>> {
        Ok(Arc::new(MemoryStore::new()))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[async_trait]
impl SinkHarness for Memory {
    async fn build(&self, _: &str) -> backfill_core::Result<Arc<dyn StagingSink<TestRow>>> {
        Ok(Arc::new(MemorySink::new("staging")))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

type Pair = (
    Arc<dyn StagingSink<TestRow>>,
    Arc<dyn PublishTarget<TestRow>>,
);

/// A memory sink and its publisher.
fn memory_pair() -> (Arc<MemorySink<TestRow>>, MemoryPublisher<TestRow>) {
    let sink = Arc::new(MemorySink::new("staging"));
    let publisher = MemoryPublisher::new("target", &sink);
    (sink, publisher)
}

#[async_trait]
impl PublisherHarness for Memory {
    async fn build(&self, _: &str) -> backfill_core::Result<Pair> {
        let (sink, publisher) = memory_pair();
        Ok((sink, Arc::new(publisher)))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

backfill_testkit::store_conformance!(memory_store, || Memory);
backfill_testkit::sink_conformance!(memory_sink, || Memory);
backfill_testkit::publisher_conformance!(memory_publisher, || Memory);

struct Appending;
#[async_trait]
impl SinkHarness for Appending {
    async fn build(&self, _: &str) -> backfill_core::Result<Arc<dyn StagingSink<TestRow>>> {
        Ok(Arc::new(AppendingSink::new()))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_sink_that_appends_on_restage_fails() {
    let f = backfill_testkit::sink::run_check(&Appending, "restage_replaces_the_chunk")
        .await
        .unwrap_err();
    assert_eq!(f.check, "restage_replaces_the_chunk");
    assert!(f.clause.contains("never adds"), "{f}");
}

/// A publisher that wraps the memory target and changes one behaviour.
#[derive(Debug)]
struct Broken {
    inner: MemoryPublisher<TestRow>,
    bug: PublisherBug,
    publishes: std::sync::atomic::AtomicU32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublisherBug {
    /// Republishes (with a new receipt) every time.
    NotIdempotent,
    /// `inspect_rollback` never answers.
    ForgetsRollbacks,
    /// Lists merge_by_key, which the memory target cannot do.
    OverstatesModes,
    /// Declares only replace-partitions, without rollback (not a bug: a smaller publisher).
    ReplaceOnly,
}

#[async_trait]
impl Publisher for Broken {
    fn descriptor(&self) -> SinkDescriptor {
        self.inner.descriptor()
    }
    fn capabilities(&self) -> PublisherCapabilities {
        let caps = self.inner.capabilities();
        match self.bug {
            PublisherBug::OverstatesModes => {
                let mut modes: Vec<&'static str> = caps.mutations.iter().copied().collect();
                modes.push("merge_by_key");
                PublisherCapabilities::with_mutations(modes)
                    .rollback(true)
                    .read_back(true)
                    .atomic_multi_partition(true)
            }
            PublisherBug::ReplaceOnly => {
                PublisherCapabilities::with_mutations([Mutation::ReplacePartitions.name()])
                    .read_back(true)
            }
            _ => caps,
        }
    }
    async fn publish(&self, req: PublishRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        let mut r = self.inner.publish(req).await?;
        if self.bug == PublisherBug::NotIdempotent {
            let n = self
                .publishes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r.reference = format!("attempt {n}");
        }
        Ok(r)
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
        match self.bug {
            PublisherBug::ForgetsRollbacks => Ok(None),
            _ => self.inner.inspect_rollback(from, to).await,
        }
    }
}

impl TargetReader<TestRow> for Broken {
    fn read_current<'a>(
        &'a self,
        p: &'a PartitionKey,
    ) -> BoxStream<'a, backfill_core::Result<Vec<TestRow>>> {
        self.inner.read_current(p)
    }
}

#[async_trait]
impl PublisherHarness for PublisherBug {
    async fn build(&self, _: &str) -> backfill_core::Result<Pair> {
        let (sink, inner) = memory_pair();
        let broken = Broken {
            inner,
            bug: *self,
            publishes: Default::default(),
        };
        Ok((sink, Arc::new(broken)))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_publisher_that_is_not_idempotent_fails() {
    let f = backfill_testkit::publisher::run_check(
        &PublisherBug::NotIdempotent,
        "publish_is_idempotent",
    )
    .await
    .unwrap_err();
    assert!(f.clause.contains("idempotent"), "{f}");
    // The first mode the memory target lists names the failure.
    assert!(f.details.starts_with("with replace_partitions:"), "{f}");
}

#[tokio::test]
async fn a_publisher_that_cannot_inspect_its_rollbacks_fails() {
    let f = backfill_testkit::publisher::run_check(
        &PublisherBug::ForgetsRollbacks,
        "rollback_is_idempotent_and_inspectable",
    )
    .await
    .unwrap_err();
    assert!(f.clause.contains("inspect_rollback"), "{f}");
}

#[tokio::test]
async fn a_mode_the_publisher_lists_but_cannot_do_fails_with_its_name() {
    let f = backfill_testkit::publisher::run_check(
        &PublisherBug::OverstatesModes,
        "publish_makes_staged_rows_visible",
    )
    .await
    .unwrap_err();
    assert!(f.details.starts_with("with merge_by_key:"), "{f}");
}

#[tokio::test]
async fn modes_and_rollback_a_publisher_does_not_declare_are_skipped_not_failed() {
    for (check, result) in backfill_testkit::publisher::run_all(&PublisherBug::ReplaceOnly).await {
        result.unwrap_or_else(|f| panic!("{check}: {f}"));
    }
}

/// The memory target lists four modes; the publisher suite (expanded above) exercises each.
#[test]
fn the_publisher_suite_exercises_the_four_modes_of_the_memory_target() {
    let caps = memory_pair().1.capabilities();
    let exercised: Vec<&str> = backfill_testkit::publisher::known_modes()
        .iter()
        .map(|m| m.name())
        .filter(|m| caps.supports(m))
        .collect();
    assert_eq!(
        exercised,
        [
            "replace_partitions",
            "append_with_run_id",
            "shadow_swap",
            "versioned_output"
        ]
    );
}

struct Unfenced;
#[async_trait]
impl SinkHarness for Unfenced {
    async fn build(&self, _: &str) -> backfill_core::Result<Arc<dyn StagingSink<TestRow>>> {
        Ok(Arc::new(UnfencedSink::default()))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_sink_without_fencing_fails_and_passes_the_rest() {
    let f = backfill_testkit::sink::run_check(&Unfenced, "stale_attempt_is_fenced")
        .await
        .unwrap_err();
    assert!(f.clause.contains("Conflict"), "{f}");
    assert!(f.details.contains("stale attempt staged 25 rows"), "{f}");
    for check in backfill_testkit::sink::CHECKS {
        if *check != "stale_attempt_is_fenced" {
            backfill_testkit::sink::run_check(&Unfenced, check)
                .await
                .unwrap_or_else(|f| panic!("{f}"));
        }
    }
}

/// A store whose compare-and-set reads, yields, then writes: not atomic.
#[derive(Debug, Default)]
struct RacyStore(MemoryStore);

#[async_trait]
impl RunStore for RacyStore {
    async fn put_manifest(
        &self,
        m: &backfill_core::manifest::StoredManifest,
    ) -> backfill_core::Result<()> {
        self.0.put_manifest(m).await
    }
    async fn manifest(
        &self,
        r: &RunId,
    ) -> backfill_core::Result<Option<backfill_core::manifest::StoredManifest>> {
        self.0.manifest(r).await
    }
    async fn create_run(&self, r: &backfill_core::store::RunRecord) -> backfill_core::Result<()> {
        self.0.create_run(r).await
    }
    async fn run(
        &self,
        r: &RunId,
    ) -> backfill_core::Result<Option<backfill_core::store::RunRecord>> {
        self.0.run(r).await
    }
    async fn transition(&self, t: &Transition) -> backfill_core::Result<()> {
        // Check, then act later: every concurrent caller passes the check.
        let current = self.0.run(&t.run_id).await?.map(|r| r.state);
        tokio::task::yield_now().await;
        if current != Some(t.from) {
            return Err(backfill_core::Error::Conflict {
                run_id: t.run_id.clone(),
                what: "state".into(),
                expected: t.from.to_string(),
                found: format!("{current:?}"),
            });
        }
        let now = self
            .0
            .run(&t.run_id)
            .await?
            .map(|r| r.state)
            .unwrap_or(t.from);
        self.0
            .transition(&Transition {
                from: now,
                ..t.clone()
            })
            .await
    }
    async fn transitions(&self, r: &RunId) -> backfill_core::Result<Vec<Transition>> {
        self.0.transitions(r).await
    }
    async fn put_plan(&self, p: &backfill_core::plan::ResolvedPlan) -> backfill_core::Result<()> {
        self.0.put_plan(p).await
    }
    async fn plan(
        &self,
        r: &RunId,
    ) -> backfill_core::Result<Option<backfill_core::plan::ResolvedPlan>> {
        self.0.plan(r).await
    }
    async fn claim_chunk(
        &self,
        r: &RunId,
        w: &str,
        now: chrono::DateTime<chrono::Utc>,
        l: std::time::Duration,
    ) -> backfill_core::Result<Option<backfill_core::store::ChunkLease>> {
        self.0.claim_chunk(r, w, now, l).await
    }
    async fn heartbeat(
        &self,
        l: &backfill_core::store::ChunkLease,
        now: chrono::DateTime<chrono::Utc>,
        d: std::time::Duration,
    ) -> backfill_core::Result<backfill_core::store::ChunkLease> {
        self.0.heartbeat(l, now, d).await
    }
    async fn complete_chunk(
        &self,
        l: &backfill_core::store::ChunkLease,
        o: &backfill_core::store::ChunkOutcome,
        now: chrono::DateTime<chrono::Utc>,
    ) -> backfill_core::Result<()> {
        self.0.complete_chunk(l, o, now).await
    }
    async fn fail_chunk(
        &self,
        l: &backfill_core::store::ChunkLease,
        e: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> backfill_core::Result<()> {
        self.0.fail_chunk(l, e, now).await
    }
    async fn chunks(
        &self,
        r: &RunId,
    ) -> backfill_core::Result<Vec<backfill_core::store::ChunkRecord>> {
        self.0.chunks(r).await
    }
    async fn append_evidence(
        &self,
        r: &RunId,
        at: chrono::DateTime<chrono::Utc>,
        by: &str,
        record: &backfill_core::store::EvidenceRecord,
    ) -> backfill_core::Result<u64> {
        self.0.append_evidence(r, at, by, record).await
    }
    async fn evidence(
        &self,
        r: &RunId,
    ) -> backfill_core::Result<Vec<backfill_core::store::Evidence>> {
        self.0.evidence(r).await
    }
    async fn accepted(
        &self,
        t: &str,
    ) -> backfill_core::Result<Option<backfill_core::store::AcceptedPointer>> {
        self.0.accepted(t).await
    }
    async fn swap_accepted(
        &self,
        e: Option<&RunId>,
        p: &backfill_core::store::AcceptedPointer,
    ) -> backfill_core::Result<()> {
        self.0.swap_accepted(e, p).await
    }
    async fn runs(
        &self,
        f: &backfill_core::store::RunFilter,
    ) -> backfill_core::Result<Vec<backfill_core::store::RunRecord>> {
        self.0.runs(f).await
    }
}

struct Racy;
#[async_trait]
impl StoreHarness for Racy {
    async fn build(&self, _: &str) -> backfill_core::Result<Arc<dyn RunStore>> {
        Ok(Arc::new(RacyStore::default()))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_store_whose_compare_and_set_is_not_atomic_fails() {
    let f = backfill_testkit::store::run_check(&Racy, "concurrent_transitions_one_wins")
        .await
        .unwrap_err();
    assert!(f.clause.contains("atomic"), "{f}");
    // The sequential clauses alone do not catch it.
    assert!(
        backfill_testkit::store::run_check(&Racy, "transitions_are_compare_and_set")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn unknown_checks_are_failures_and_namespaces_are_valid_names() {
    assert!(backfill_testkit::store::run_check(&Memory, "no_such_check")
        .await
        .is_err());
    let ns = backfill_testkit::namespace_for(
        "a check name that is much longer than any database allows for names",
    );
    assert!(
        ns.len() <= 63
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "{ns}"
    );
    assert_ne!(
        ns,
        backfill_testkit::namespace_for(
            "a check name that is much longer than any database allows for names"
        )
    );
}
