//! A run whose manifest's mutation is `correction_events`, end to end: the executor stages and
//! validates it, the control plane publishes it through a `CorrectionPublisher` registered for the
//! outbox, once; it cannot be rolled back.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use backfill_core::correction::ChangeKind;
use backfill_core::memory::MemoryOutbox;
use backfill_core::prelude::*;
use common::*;

const OUTBOX: &str = "amounts_corrections";

#[tokio::test]
async fn a_correction_events_run_is_published_once_through_the_control_plane() {
    let parts = Parts::new();
    let history = approve(manifest("bf-v1"));
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    runner.control().submit(&history).await.unwrap();
    assert_eq!(
        runner.run(history.run_id()).await.unwrap().state,
        RunState::Published
    );

    let outbox = Arc::new(MemoryOutbox::new(OUTBOX));
    let corrections = Arc::new(CorrectionPublisher::new(
        outbox.clone(),
        parts.publisher.clone(),
        parts.sink.clone(),
        Correction::new(
            "AmountCorrected",
            |r: &Row| format!("{}/{}", r.account, r.day),
            |r: &Row| r.id.clone(),
            |r: &Row| serde_json::json!({ "cents": r.cents }),
        ),
    ));
    let control = parts.control().with_target(corrections.clone()).unwrap();
    let restated = Scale {
        factor: 3,
        version: "1.1.0",
    };
    let executor = Executor::builder(
        control.clone(),
        Arc::new(source()),
        Arc::new(restated),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .build();
    let mut m = manifest("bf-v2");
    m.target.kind = "outbox".into();
    m.target.name = OUTBOX.into();
    m.target.mutation = Some(Mutation::CorrectionEvents);
    m.transform.version = "1.1.0".into();
    let approved = approve(m);
    control.submit(&approved).await.unwrap();
    let report = executor.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);

    // Every amount but one changed (A-1's first day is 0 cents either way): one event per changed
    // account and day, each once, correcting v1's row; the unchanged one has none.
    let events = outbox.events();
    assert_eq!(events.len(), 269);
    let keys: BTreeSet<&str> = events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys.len(), 269);
    assert!(!keys.contains("A-1/2025-01-01"));
    assert!(events.iter().all(|e| e.change() == ChangeKind::Changed
        && e.produced_by_run_id.as_str() == "bf-v2"
        && e.reason == "fix amounts"));
    let receipt = report.receipt.clone().unwrap();
    assert_eq!(receipt.target, OUTBOX);
    assert_eq!(receipt.rows, 269);

    // Publishing again changes nothing; the rows of amounts_daily are v1's still.
    assert_eq!(
        control.publish(approved.run_id(), "owner").await.unwrap(),
        receipt
    );
    assert_eq!(outbox.writes(), 1);
    let jan = parts.publisher.snapshot()[&PartitionKey::new("2025-01")].clone();
    assert!(jan.iter().all(|r| r.run_id == "bf-v1"));

    // Events cannot be taken back (the control plane refuses before the publisher, which has no
    // rollback, would).
    let err = control
        .rollback_run(approved.run_id(), "owner", "undo")
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NotSupported | ErrorKind::Refused),
        "{err}"
    );
    assert_eq!(outbox.events().len(), 269);
}
