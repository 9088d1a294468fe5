//! The design checklist (seed §30): `check` has a finding for every question (a problem when the
//! manifest leaves it open, an answer for staging, rollback and evidence), and every finding says
//! which question it answers.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use backfill_core::context::ExecutionMode;
use backfill_core::manifest::{Mutation, RunKind, RunManifest, CHECKLIST};
use common::*;

#[test]
fn every_checklist_question_has_a_finding_and_every_finding_names_one() {
    let mut complete = manifest("bf-checklist");
    complete.target.consumers = vec!["finance-dashboard".into()];
    let empty = RunManifest::new("bf-empty", RunKind::Restatement, ExecutionMode::Backfill);
    let mut findings = complete.check().0;
    // A complete manifest answers staging, rollback and evidence itself.
    for q in [
        "Is output written to staging first?",
        "What is rollback/supersession strategy?",
        "Is run evidence preserved?",
    ] {
        assert!(
            findings.iter().any(|f| f.question == q),
            "{q:?}: {findings:#?}"
        );
    }
    findings.extend(empty.check().0);
    for q in CHECKLIST {
        assert!(
            findings.iter().any(|f| f.question == q),
            "no finding answers {q:?}: {findings:#?}"
        );
    }
    for f in &findings {
        assert!(
            CHECKLIST.contains(&f.question.as_str()),
            "{} answers a question not on the checklist: {:?}",
            f.code,
            f.question
        );
    }
}

#[test]
fn the_rollback_strategy_follows_the_mutation() {
    let strategy = |mutation: Mutation| {
        let mut m = manifest("bf-rollback");
        m.target.mutation = Some(mutation);
        m.check()
            .0
            .into_iter()
            .find(|f| f.code == "rollback_strategy")
            .map(|f| f.message)
            .unwrap_or_default()
    };
    assert!(strategy(Mutation::ReplacePartitions).contains("archive"));
    assert!(strategy(Mutation::ShadowSwap).contains("pointer"));
    assert!(strategy(Mutation::CorrectionEvents).contains("cannot be taken back"));
}
