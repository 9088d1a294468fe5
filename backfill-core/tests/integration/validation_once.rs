//! Several workers finishing a run together validate it once: the one that staged the last chunk
//! validates, the others wait for its outcome instead of reading every staged row again.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::evidence::EvidenceRecord;
use backfill_core::memory::MemorySource;
use backfill_core::plan::{PlannedChunk, SourcePlan};
use backfill_core::prelude::*;
use backfill_core::validate::{ValidationContext, ValidationOutcome};
use common::*;
use futures::stream::{BoxStream, StreamExt};

/// The fixtures' source, a few milliseconds a batch: every worker has loaded the run before any
/// finishes it.
#[derive(Debug)]
struct Slow(MemorySource<Event>);

#[async_trait]
impl BackfillSource<Event> for Slow {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn plan(&self, m: &RunManifest) -> backfill_core::Result<SourcePlan> {
        self.0.plan(m).await
    }
    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, backfill_core::Result<Vec<Event>>> {
        self.0
            .read(chunk)
            .then(|b| async move {
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
                b
            })
            .boxed()
    }
}

/// A validator that takes its time, as one reading every staged row does.
#[derive(Debug)]
struct Thorough;

#[async_trait]
impl Validator<Row> for Thorough {
    fn name(&self) -> &str {
        "thorough"
    }
    async fn validate(
        &self,
        _: &ValidationContext<'_, Row>,
    ) -> backfill_core::Result<ValidationOutcome> {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Ok(ValidationOutcome::pass(
            "thorough",
            "read everything",
            serde_json::Value::Null,
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_finishing_together_validate_the_run_once() {
    for round in 0..5 {
        let parts = Parts::new();
        let mut m = manifest(&format!("bf-validate-once-{round}"));
        m.safety.manual_publish = true;
        let approved = approve(m);
        let workers: Vec<_> = (0..4)
            .map(|i| {
                Executor::builder(
                    parts.control(),
                    Arc::new(Slow(source())),
                    Arc::new(Scale::default()),
                    parts.sink.clone(),
                    parts.publisher.clone(),
                )
                .options(RunnerOptions::worker(format!("w{i}")))
                .validator(Arc::new(Thorough))
                .build()
            })
            .collect();
        workers[0].control().submit(&approved).await.unwrap();
        let tasks: Vec<_> = workers
            .into_iter()
            .map(|w| {
                let id = approved.run_id().clone();
                tokio::spawn(async move { w.run(&id).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().state, RunState::Validated);
        }
        let evidence = parts.store.evidence(approved.run_id()).await.unwrap();
        let mut validators: Vec<&str> = evidence
            .iter()
            .filter_map(|e| match &e.record {
                EvidenceRecord::Validation(o) => Some(o.validator.as_str()),
                _ => None,
            })
            .collect();
        let all = validators.len();
        validators.sort_unstable();
        validators.dedup();
        assert!(!validators.is_empty());
        assert_eq!(
            all,
            validators.len(),
            "round {round}: validated more than once"
        );
    }
}
