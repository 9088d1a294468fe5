//! The generic `backfill` binary on a SQLite store, as an operator types it: manifests (template,
//! checklist exit codes, schema, digest), submit, approvals (the requester is refused), notes, runs,
//! status, evidence, and clear refusals for what needs a pipeline's registry or names nothing.

use std::path::Path;
use std::process::{Command, Output};

use backfill_core::manifest::RunManifest;

fn backfill(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backfill"))
        .current_dir(dir)
        .env_remove("BACKFILL_STORE")
        .args(["--store", "runs.db"])
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn fixed(template: &str) -> String {
    template
        .replace(
            "reason: \"\"",
            "reason: \"carrier rates were restated for Q1\"",
        )
        .replace("requested_by: \"\"", "requested_by: \"logistics-data\"")
        .replace("  partitions: []", "  partitions: [\"2025-01\"]")
        .replace("  snapshot: \"\"", "  snapshot: \"export-2025-02-01\"")
        .replace("  git_commit: \"\"", "  git_commit: \"1a2b3c4\"")
}

#[test]
fn the_runbook_steps_that_need_no_transform() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A template: it loads, and its checklist blocks approval until filled in.
    let t = backfill(d, &["manifest", "new", "--run", "bf-cli-1"]);
    assert!(t.status.success(), "{}", text(&t));
    let template = String::from_utf8(t.stdout).unwrap();
    std::fs::write(d.join("m.yaml"), &template).unwrap();
    let c = backfill(d, &["manifest", "check", "m.yaml"]);
    assert_eq!(c.status.code(), Some(1), "{}", text(&c));
    assert!(text(&c).contains("reason_missing") && text(&c).contains("NOT approvable"));
    // Blocking findings come first.
    let first = String::from_utf8_lossy(&c.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    assert!(first.starts_with("[Blocking]"), "{first}");
    std::fs::write(d.join("m.yaml"), fixed(&template)).unwrap();
    let c = backfill(d, &["--json", "manifest", "check", "m.yaml"]);
    assert!(c.status.success(), "{}", text(&c));
    let v: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    assert_eq!(v["approvable"], true);
    // Digest and schema are the library's.
    let m = RunManifest::load(d.join("m.yaml")).unwrap();
    let dg = backfill(d, &["manifest", "digest", "m.yaml"]);
    assert_eq!(
        String::from_utf8_lossy(&dg.stdout).trim(),
        m.digest().as_str()
    );
    let s = backfill(d, &["manifest", "schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(schema, RunManifest::json_schema());

    // Submit; the requester may not approve; someone else may.
    let s = backfill(d, &["submit", "m.yaml"]);
    assert!(s.status.success(), "{}", text(&s));
    let a = backfill(d, &["approve", "bf-cli-1", "--as", "logistics-data"]);
    assert_eq!(a.status.code(), Some(1));
    assert!(text(&a).contains("bf-cli-1"), "{}", text(&a));
    let a = backfill(d, &["approve", "bf-cli-1", "--as", "finance-owner"]);
    assert!(a.status.success(), "{}", text(&a));
    // A note for the record; runs, status and evidence show the run.
    let n = backfill(
        d,
        &[
            "note",
            "bf-cli-1",
            "--name",
            "communication",
            "--text",
            "told #finance",
        ],
    );
    assert!(n.status.success(), "{}", text(&n));
    let r = backfill(d, &["--json", "runs", "--state", "approved"]);
    let runs: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{}", text(&r));
    assert_eq!(runs[0]["run_id"], "bf-cli-1");
    let r = backfill(d, &["runs", "--requester", "somebody-else"]);
    assert!(text(&r).contains("0 runs"), "{}", text(&r));
    // Age: created within the last hour, yes; within the last zero hours, no.
    let r = backfill(d, &["--json", "runs", "--age-hours", "1"]);
    let recent: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(recent.as_array().map(Vec::len), Some(1), "{}", text(&r));
    let r = backfill(d, &["--json", "runs", "--age-hours", "0"]);
    let none: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(none.as_array().map(Vec::len), Some(0), "{}", text(&r));
    let st = backfill(d, &["--json", "status", "bf-cli-1"]);
    let status: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(status["state"], "approved");
    let e = backfill(d, &["evidence", "bf-cli-1"]);
    let trail = text(&e);
    assert!(
        trail.contains("approved by finance-owner")
            && trail.contains("note communication: told #finance"),
        "{trail}"
    );
    let x = backfill(
        d,
        &["evidence", "export", "bf-cli-1", "--out", "bundle.json"],
    );
    assert!(x.status.success(), "{}", text(&x));
    assert!(std::fs::read_to_string(d.join("bundle.json"))
        .unwrap()
        .contains("told #finance"));

    // What needs the pipeline's registry, or names nothing, is refused clearly.
    let p = backfill(d, &["publish", "bf-cli-1"]);
    assert_eq!(p.status.code(), Some(1));
    assert!(
        text(&p).contains("silver.my_table") && text(&p).contains("not registered"),
        "{}",
        text(&p)
    );
    let r = backfill(d, &["run", "bf-cli-1"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(text(&r).contains("my-transform"), "{}", text(&r));
    let u = backfill(d, &["status", "bf-nope"]);
    assert_eq!(u.status.code(), Some(1));
    assert!(text(&u).contains("bf-nope"), "{}", text(&u));
    std::fs::write(
        d.join("bad.json"),
        r#"{"run_id": "bf-bad", "kind": "restatement", "colour": "red"}"#,
    )
    .unwrap();
    let b = backfill(d, &["manifest", "check", "bad.json"]);
    assert_eq!(b.status.code(), Some(1));
    assert!(text(&b).contains("colour"), "{}", text(&b));
    let usage = backfill(d, &["approve", "bf-cli-1"]);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
}
