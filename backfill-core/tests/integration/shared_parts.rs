//! Shared and boxed sinks, publishers and policies are sinks, publishers and policies themselves.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use backfill_core::memory::{MemoryPublisher, MemorySink};
use backfill_core::prelude::*;
use common::*;

#[tokio::test]
async fn a_run_through_arc_and_box_wrappers_publishes_into_the_wrapped_parts() {
    let parts = Parts::new();
    let sink = Arc::new(MemorySink::<Row>::new("staging"));
    let publisher = Arc::new(MemoryPublisher::<Row>::new("amounts_daily", &sink));
    // Box<dyn …> and Arc<Arc<…>> wrappers, as registries and decorators hold them.
    let boxed_sink: Box<dyn StagingSink<Row>> = Box::new(sink.clone());
    let shared_publisher: Arc<dyn Publisher> = Arc::new(publisher.clone());
    let boxed_reader: Box<dyn TargetReader<Row>> = Box::new(publisher.clone());
    let policy: Box<dyn SinkPolicy> = Box::new(Arc::new(DefaultSinkPolicy));
    let control = Control::new(parts.store.clone())
        .with_clock(Arc::new(FixedClock(at())))
        .with_target(Arc::new(shared_publisher))
        .unwrap();
    let runner = Executor::builder(
        control,
        Arc::new(source()),
        Arc::new(Scale::default()),
        Arc::new(boxed_sink),
        Arc::new(boxed_reader),
    )
    .policy(Arc::new(policy))
    .build();
    let approved = approve(manifest("bf-wrapped"));
    runner.control().submit(&approved).await.unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    // The wrapped parts did the work.
    let visible: usize = publisher.snapshot().values().map(Vec::len).sum();
    assert_eq!(visible as u64, report.output_rows);
    assert!(publisher
        .inspect(approved.run_id())
        .await
        .unwrap()
        .is_some());
    let staged: Vec<Vec<Row>> =
        futures::TryStreamExt::try_collect(sink.read_staged(approved.run_id()))
            .await
            .unwrap();
    assert_eq!(
        staged.iter().map(Vec::len).sum::<usize>() as u64,
        report.output_rows
    );
}

#[test]
fn a_boxed_policy_refuses_what_the_default_refuses() {
    let policy: Arc<dyn SinkPolicy> = Arc::new(Box::new(DefaultSinkPolicy));
    let m = manifest("bf-policy");
    let webhook = SinkDescriptor::side_effecting("webhook", "http");
    let err = policy.check(&webhook, &m).unwrap_err();
    assert!(matches!(err, Error::ForbiddenSink { .. }), "{err}");
    assert!(policy
        .check(&SinkDescriptor::internal("staging", "memory"), &m)
        .is_ok());
}
