//! The lifecycle state machine.

#![allow(clippy::clone_on_ref_ptr)]

use backfill_core::prelude::*;

#[test]
fn the_documented_path_is_legal() {
    use RunState::*;
    for (from, to) in [
        (Draft, Approved),
        (Approved, Running),
        (Running, Staged),
        (Running, Failed),
        (Failed, Running),
        (Staged, Validated),
        (Staged, AwaitingReview),
        (Staged, Rejected),
        (AwaitingReview, Validated),
        (AwaitingReview, Rejected),
        (Validated, Published),
        (Published, Superseded),
        (Published, RolledBack),
        (Superseded, Published),
        (Running, Cancelled),
    ] {
        assert!(from.can_transition_to(to), "{from} -> {to}");
    }
}

#[test]
fn events_not_allowed_in_a_state_lead_nowhere() {
    use backfill_core::state::{next, Event as E};
    use RunState::*;
    for (from, event) in [
        (Draft, E::Start),
        (Approved, E::Publish),
        (Running, E::Publish),
        (Staged, E::Publish),
        (AwaitingReview, E::Publish),
        (Rejected, E::ReviewAccepted),
        (Published, E::Cancel),
        (Cancelled, E::Start),
        (RolledBack, E::Reinstate),
        (Published, E::Publish),
    ] {
        assert_eq!(next(from, event), None, "{from} + {event:?}");
    }
    // Every state change the machine allows is one event from one state.
    for from in RunState::ALL {
        for to in RunState::ALL {
            let events: Vec<E> = E::ALL
                .into_iter()
                .filter(|e| next(from, *e) == Some(to))
                .collect();
            assert!(events.len() <= 1, "{from} -> {to} by {events:?}");
        }
    }
}

#[tokio::test]
async fn an_event_the_state_does_not_allow_is_a_typed_error_naming_the_run() {
    use std::sync::Arc;
    let store = Arc::new(backfill_core::memory::MemoryStore::new());
    let control = Control::new(store);
    let mut m = RunManifest::new("bf-200", RunKind::Backfill, ExecutionMode::Backfill);
    m.requested_by = "alice".into();
    control.submit_draft(&m).await.unwrap();
    let run = RunId::from("bf-200");
    assert_eq!(
        control.cancel(&run, "alice", "not needed").await.unwrap(),
        RunState::Cancelled
    );
    let err = control.cancel(&run, "alice", "again").await.unwrap_err();
    match &err {
        Error::IllegalEvent { run_id, state, .. } => {
            assert_eq!((run_id.as_str(), *state), ("bf-200", RunState::Cancelled));
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Refused);
    assert!(err.to_string().contains("bf-200"));
}

#[test]
fn nothing_is_published_without_validation() {
    // Every path into Published passes through Validated (or is a rollback reinstating Superseded).
    for from in RunState::ALL {
        if from.can_transition_to(RunState::Published) {
            assert!(
                matches!(from, RunState::Validated | RunState::Superseded),
                "{from}"
            );
        }
    }
    for s in RunState::ALL {
        assert_eq!(RunState::parse(s.as_str()), Some(s));
    }
}
