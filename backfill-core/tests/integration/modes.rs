//! Modes with meaning: a reconciliation computes and compares and is never published, LIVE mode on
//! a historical run blocks approval, and the sink policy holds in every mode by sink class.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::policy::{DefaultSinkPolicy, SinkPolicy};
use backfill_core::prelude::*;
use backfill_core::sink::SinkDescriptor;
use backfill_core::sink_class::{SinkClass, SinkRule};
use common::*;

#[tokio::test]
async fn a_reconciliation_compares_with_the_accepted_output_and_publishes_nothing() {
    let parts = Parts::new();
    // v1 is the accepted output.
    let v1 = parts.runner(Arc::new(source()), Scale::default()).build();
    let history = approve(manifest("bf-v1"));
    v1.control().submit(&history).await.unwrap();
    assert_eq!(
        v1.run(history.run_id()).await.unwrap().state,
        RunState::Published
    );
    let accepted_rows = parts.publisher.snapshot();
    let pointer = parts.store.accepted("amounts_daily").await.unwrap();

    // v2 recomputes with another factor, in RECONCILIATION mode.
    let v2 = parts
        .runner(
            Arc::new(source()),
            Scale {
                factor: 3,
                version: "2.0.0",
            },
        )
        .build();
    let mut m = manifest("bf-recon");
    m.mode = ExecutionMode::Reconciliation;
    m.transform.version = "2.0.0".into();
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..Default::default()
    });
    let recon = approve(m);
    v2.control().submit(&recon).await.unwrap();
    let report = v2.run(recon.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Validated, "never published");
    let comparison = report
        .validations
        .iter()
        .find(|v| v.validator == "compare_with_accepted")
        .expect("the comparison is in the report");
    assert_eq!(comparison.verdict, Verdict::Pass);
    assert_eq!(
        comparison.details["differ"],
        serde_json::json!(["2025-01", "2025-02", "2025-03"]),
        "{comparison:?}"
    );
    assert!(
        comparison
            .summary
            .starts_with("3 of 3 partitions differ from the accepted run bf-v1"),
        "{}",
        comparison.summary
    );
    // The comparison is evidence.
    let evidence = parts.store.evidence(recon.run_id()).await.unwrap();
    assert!(evidence.iter().any(|e| matches!(&e.record,
        EvidenceRecord::Validation(o) if o.validator == "compare_with_accepted")));
    // Target and pointer untouched; publishing it is refused.
    assert_eq!(parts.publisher.snapshot(), accepted_rows);
    assert_eq!(
        parts.store.accepted("amounts_daily").await.unwrap(),
        pointer
    );
    let err = v2
        .control()
        .publish(recon.run_id(), "owner")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PublishRefused { .. }) && err.to_string().contains("reconciliation"),
        "{err}"
    );
    assert_eq!(parts.publisher.snapshot(), accepted_rows);

    // Recomputing what is accepted: the same rows per partition. (These rows carry their run's id,
    // so their digests still differ: a comparison on business content is the pipeline's own
    // validator, attached like any other.)
    let same = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-recon-same");
    m.mode = ExecutionMode::Reconciliation;
    let recon = approve(m);
    same.control().submit(&recon).await.unwrap();
    let report = same.run(recon.run_id()).await.unwrap();
    let comparison = report
        .validations
        .iter()
        .find(|v| v.validator == "compare_with_accepted")
        .unwrap();
    for p in comparison.details["partitions"].as_array().unwrap() {
        let rows = |k: &str| p[k].as_str().unwrap().split(':').next().unwrap().to_owned();
        assert_eq!(rows("accepted"), rows("recomputed"), "{p}");
    }
}

#[test]
fn live_mode_on_a_historical_run_blocks_approval() {
    for kind in [RunKind::Restatement, RunKind::Backfill, RunKind::Replay] {
        let mut m = manifest("bf-live");
        m.kind = kind;
        m.mode = ExecutionMode::Live;
        let findings = m.check();
        assert!(
            findings
                .0
                .iter()
                .any(|f| f.code == "live_mode_for_historical_run" && f.field == "mode"),
            "{kind:?}: {findings:?}"
        );
        assert!(m.approve("owner", at()).is_err(), "{kind:?}");
    }
    let mut m = manifest("bf-bootstrap");
    m.kind = RunKind::Bootstrap;
    m.mode = ExecutionMode::Live;
    assert!(!m
        .check()
        .0
        .iter()
        .any(|f| f.code == "live_mode_for_historical_run"));
}

fn with_mode(mode: ExecutionMode, allowed_sinks: &[&str]) -> RunManifest {
    let mut m = manifest("bf-policy");
    m.mode = mode;
    m.safety.side_effects = Some(SideEffectPolicy {
        allowed: !allowed_sinks.is_empty(),
        allowed_sinks: allowed_sinks.iter().map(|s| (*s).to_owned()).collect(),
    });
    m
}

#[test]
fn the_sink_policy_follows_the_class_table_in_every_mode() {
    use ExecutionMode::*;
    let policy = DefaultSinkPolicy;
    for class in SinkClass::ALL {
        for mode in [Live, Backfill, Replay, DryRun, Reconciliation] {
            let plain = SinkDescriptor::internal("out", "x").with_class(class);
            let own = plain.clone().isolated_target();
            let m = with_mode(mode, &[]);
            let rule = class.rule(mode);
            // Without the manifest naming the sink: the table, and side effects need allowing.
            let expect_plain = rule == SinkRule::Allowed && !class.has_external_side_effects();
            assert_eq!(
                policy.check(&plain, &m).is_ok(),
                expect_plain,
                "{class} in {mode}"
            );
            let expect_own = rule != SinkRule::Refused && !class.has_external_side_effects();
            assert_eq!(
                policy.check(&own, &m).is_ok(),
                expect_own,
                "{class} in {mode}, isolated"
            );
            // Named by the approved manifest: allowed in backfill and replay, never in a dry run
            // or a reconciliation.
            let named = with_mode(mode, &["out"]);
            let expect_named = match mode {
                Live | Backfill | Replay => true,
                _ => expect_plain,
            };
            assert_eq!(
                policy.check(&plain, &named).is_ok(),
                expect_named,
                "{class} in {mode}, named"
            );
        }
    }
    // The refusal names the run, the sink, the mode and why.
    let err = policy
        .check(
            &SinkDescriptor::internal("sms", "twilio").with_class(SinkClass::Notification),
            &with_mode(Backfill, &[]),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("bf-policy") && text.contains("sms") && text.contains("notification"),
        "{text}"
    );
}
