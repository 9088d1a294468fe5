//! A reconciliation of the SLA restatement through `sla-backfill`: v3.1.0 over 2025 against the
//! accepted v2.4.1 history. It reports what the restatement would change (month by month, every
//! changed case-month, the breach delta) and leaves the target, the accepted pointer and the history
//! run as they were; publishing it is refused.

use crate::common;

use backfill_examples::sla::job::{HISTORY_RUN, OWNER, REQUESTER};
use backfill_examples::sla::manifests::RECONCILIATION_RUN;
use common::published;
use common::tool::{manifest, state, Tool};
use serde_json::Value;

fn validation<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["validations"]
        .as_array()
        .and_then(|v| v.iter().find(|o| o["validator"] == name))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_reports_what_the_restatement_would_change_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tool::new(dir.path());
    t.ok(&["submit", &manifest("sla-history.json")]);
    t.ok(&["approve", HISTORY_RUN, "--as", OWNER]);
    t.ok(&["run", HISTORY_RUN]);
    let db = t.warehouse().await;
    let history = published(&db).await;
    assert!(history.len() > 10_000);

    t.ok(&["submit", &manifest("sla-reconciliation.json")]);
    let refused = t.exits(1, &["approve", RECONCILIATION_RUN, "--as", REQUESTER]);
    assert!(refused.contains("cannot also approve"), "{refused}");
    t.ok(&["approve", RECONCILIATION_RUN, "--as", OWNER]);
    t.ok(&["run", RECONCILIATION_RUN]);
    // Validated, not awaiting review: the breach delta over the threshold is part of the report.
    let st = t.json(&["status", RECONCILIATION_RUN]);
    assert_eq!(state(&st), "validated", "{st}");
    assert_eq!(
        validation(&st, "business_delta(breaches)")["verdict"],
        "needs_review"
    );
    let diff = validation(&st, "diff_against_accepted");
    assert!(
        diff["summary"]
            .as_str()
            .is_some_and(|s| s.contains("case-months changed in 12 months")),
        "{diff}"
    );
    let compared = validation(&st, "compare_with_accepted");
    assert_eq!(compared["details"]["against"], HISTORY_RUN, "{compared}");
    assert_eq!(
        compared["details"]["partitions"].as_array().map(Vec::len),
        Some(12)
    );

    // The operator's diff: every month, the changed case-months and the breaches moved.
    let d = t.json(&["diff", RECONCILIATION_RUN]);
    let months = d.as_array().unwrap();
    assert_eq!(months.len(), 12);
    let changed: usize = months
        .iter()
        .map(|m| m["changed_keys"].as_array().unwrap().len())
        .sum();
    assert!(changed > 0);
    let breaches = |side: &str| -> i64 {
        months
            .iter()
            .map(|m| m["measures"][0][side].as_i64().unwrap())
            .sum()
    };
    assert_ne!(breaches("before"), breaches("after"));

    // Nothing changed, and nothing will: publish is refused, the history stays accepted.
    let out = t.exits(1, &["publish", RECONCILIATION_RUN, "--as", OWNER]);
    assert!(out.contains("never published"), "{out}");
    assert_eq!(published(&db).await, history);
    let of = |id: &str| t.run_state(id);
    assert_eq!(of(HISTORY_RUN).as_deref(), Some("published"));
    assert_eq!(of(RECONCILIATION_RUN).as_deref(), Some("validated"));
}
