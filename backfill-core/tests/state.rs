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
fn illegal_transitions_are_typed_errors() {
    use RunState::*;
    let run = RunId::from("bf-200");
    for (from, to) in [
        (Draft, Running),
        (Approved, Published),
        (Running, Published),
        (Staged, Published),
        (AwaitingReview, Published),
        (Rejected, Validated),
        (Published, Cancelled),
        (Cancelled, Running),
        (RolledBack, Published),
        (Published, Published),
    ] {
        let err = from.check_transition(to, &run).unwrap_err();
        match &err {
            Error::IllegalTransition {
                run_id,
                from: f,
                to: t,
            } => {
                assert_eq!((run_id, *f, *t), (&run, from, to));
            }
            other => panic!("{other}"),
        }
        assert_eq!(err.kind(), ErrorKind::Refused);
        assert!(err.to_string().contains("bf-200"));
    }
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
