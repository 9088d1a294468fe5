//! `sla-backfill estimate`: the SLA restatement estimated before approval from its manifest file
//! (nothing stored) and as a submitted run (kept as evidence); a priced estimate over the
//! manifest's `max_cost_usd` exits 1 and the run is refused before any chunk.

use crate::common;

use backfill_examples::sla::job::{OWNER, RESTATEMENT_RUN};
use common::text;
use common::tool::{manifest, Tool};
use serde_json::Value;

#[test]
fn the_restatement_is_estimated_before_approval_and_an_over_budget_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tool::new(dir.path());
    let restatement = manifest("sla-restatement.json");

    // From the file: 14 monthly chunks sized by the source's counts; no prices, no cost.
    let e = t.json(&["estimate", &restatement]);
    let est = &e["estimate"];
    assert_eq!(est["chunks"].as_array().unwrap().len(), 14, "{e}");
    assert_eq!(est["coverage"]["status"], "exact", "{e}");
    let records = est["records"].as_u64().unwrap();
    assert!(records > 10_000, "{e}");
    assert_eq!(est["cost_usd"], Value::Null);
    assert_eq!(e["over_budget"], Value::Null);
    assert_eq!(t.run_state(RESTATEMENT_RUN), None, "nothing was stored");

    // Priced at $1 per thousand records, the same input costs more than the $5 ceiling.
    let mut priced: Value =
        serde_json::from_str(&std::fs::read_to_string(&restatement).unwrap()).unwrap();
    priced["safety"]["cost_model"] =
        serde_json::json!({"rows_per_second": 20_000, "usd_per_million_rows": 1_000});
    let priced_path = t.path("priced.json");
    std::fs::write(&priced_path, priced.to_string()).unwrap();
    let out = t.exits(1, &["estimate", &priced_path]);
    assert!(
        out.contains("REFUSED at start") && out.contains("safety.max_cost_usd"),
        "{out}"
    );
    assert!(out.contains("(ceiling $5: OVER)"), "{out}");

    // As a submitted run: the estimate is kept in its evidence.
    t.ok(&["submit", &priced_path]);
    t.exits(1, &["estimate", RESTATEMENT_RUN, "--as", "alice"]);
    let trail = t.ok(&["evidence", RESTATEMENT_RUN]);
    let line = trail
        .lines()
        .find(|l| l.contains("estimated: 14 chunks"))
        .unwrap_or_else(|| panic!("{trail}"));
    assert!(line.contains("alice") && line.contains(&format!("{records} input records")));

    // Approved and run: refused before any chunk, the run failed, nothing staged.
    t.ok(&["approve", RESTATEMENT_RUN, "--as", OWNER]);
    let o = t.output(&["run", RESTATEMENT_RUN]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("safety.max_cost_usd"), "{out}");
    assert_eq!(t.run_state(RESTATEMENT_RUN).as_deref(), Some("failed"));
    let trail = t.ok(&["evidence", RESTATEMENT_RUN]);
    assert!(!trail.contains("chunk "), "{trail}");
}
