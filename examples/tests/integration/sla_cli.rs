//! The runbook (`docs/runbook.md`) driven through the real `sla-backfill` binary on SQLite, its
//! Prometheus endpoint scraped during a run, and the shipped manifests kept equal to what the code
//! generates.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backfill_core::manifest::RunManifest;
use backfill_examples::sla::cli::{self, Warehouse, CHUNK_DELAY_ENV};
use backfill_examples::sla::job::{
    DRY_RUN, HISTORY_RUN, OWNER, REQUESTER, RESTATEMENT_RUN, TARGET,
};
use common::tool::{manifest, manifests_dir, state, Tool};
use common::{breaches_by_month, facts, published, table, text};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_manifests_are_what_the_code_generates() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("warehouse.db").display());
    let w = Warehouse::open(&url).await.unwrap();
    let bless = std::env::var_os("BACKFILL_BLESS").is_some();
    for (name, m) in cli::manifests(&w).await.unwrap() {
        let path = manifests_dir().join(name);
        let want = format!("{}\n", m.to_json_pretty());
        if bless {
            std::fs::create_dir_all(manifests_dir()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is not what the code generates; regenerate it with \
             BACKFILL_BLESS=1 cargo test -p backfill-examples --test integration sla_cli::shipped_manifests",
            path.display()
        );
        let loaded = RunManifest::load(&path).unwrap();
        assert_eq!(loaded.digest(), m.digest(), "{name}");
        assert!(
            !loaded.check().has_blocking(),
            "{name}: {:?}",
            loaded.check()
        );
    }
}

/// The runbook, step by step, as `docs/runbook.md` walks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbook_on_sqlite_from_manifest_to_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tool::new(dir.path());
    let (history, dry, restatement) = (
        manifest("sla-history.json"),
        manifest("sla-dry-run.json"),
        manifest("sla-restatement.json"),
    );

    // The accepted history being corrected: v2.4.1's 2025 output, published without review.
    t.ok(&["submit", &history]);
    t.ok(&["approve", HISTORY_RUN, "--as", OWNER]);
    let r = t.json(&["run", HISTORY_RUN]);
    assert_eq!(state(&r), "published", "{r}");
    let db = t.warehouse().await;
    let old_rows = published(&db).await;
    assert_eq!(old_rows.len(), 15_128);
    assert!(old_rows.iter().all(|r| r.4 == HISTORY_RUN));

    // 1. Define: a draft without a business reason is not approvable; the shipped one is.
    let mut draft: Value =
        serde_json::from_str(&std::fs::read_to_string(&restatement).unwrap()).unwrap();
    draft["reason"] = Value::from("");
    let draft_path = t.path("draft.json");
    std::fs::write(&draft_path, draft.to_string()).unwrap();
    let out = t.exits(1, &["manifest", "check", &draft_path]);
    assert!(
        out.contains("NOT approvable") && out.contains("reason"),
        "{out}"
    );
    let c = t.json(&["manifest", "check", &restatement]);
    assert_eq!(c["approvable"], true, "{c}");
    assert_eq!(c["run_id"], RESTATEMENT_RUN);

    // 2. Estimate: the plan resolves 14 monthly chunks at the pinned snapshot, nothing runs.
    let p = t.json(&[
        "plan",
        &restatement,
        "--rate",
        "50000",
        "--cost-per-million",
        "4",
    ]);
    assert_eq!(p["chunks"].as_array().unwrap().len(), 14, "{p}");
    // The source counted every chunk's input at planning: the estimate is the bronze events read.
    let e = &p["estimate"];
    assert_eq!(e["chunks_with_size"], 14, "{p}");
    let records = e["records"].as_u64().unwrap();
    assert!(records > 10_000, "{p}");
    assert!(
        (e["seconds"].as_f64().unwrap() - records as f64 / 50_000.0).abs() < 1e-6,
        "{p}"
    );
    assert!(
        (e["cost_usd"].as_f64().unwrap() - records as f64 / 1e6 * 4.0).abs() < 1e-9,
        "{p}"
    );
    assert_eq!(p["coverage"]["Ok"], "exact", "{p}");
    assert_eq!(p["pin"]["Ok"], "honoured", "{p}");

    // 3. Approve: stored as a draft by its requester, who cannot approve it; the owner does.
    let s = t.json(&["submit", &restatement]);
    assert_eq!(state(&s), "draft");
    let out = t.exits(1, &["approve", RESTATEMENT_RUN, "--as", REQUESTER]);
    assert!(
        out.contains(REQUESTER) && out.contains("cannot also approve"),
        "{out}"
    );
    let a = t.json(&["approve", RESTATEMENT_RUN, "--as", OWNER]);
    assert_eq!(state(&a), "approved");

    // 4. Dry run on a subset: January 2025, validated, never published.
    t.ok(&["submit", &dry]);
    t.ok(&["approve", DRY_RUN, "--as", OWNER]);
    let r = t.json(&["run", DRY_RUN]);
    assert_eq!(state(&r), "validated", "{r}");
    let out = t.exits(1, &["publish", DRY_RUN, "--as", OWNER]);
    assert!(out.contains("dry run is never published"), "{out}");
    let d = t.json(&["diff", DRY_RUN]);
    let d = d.as_array().unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["partition"], "2025-01");
    let january = d[0]["changed_keys"].as_array().unwrap().len();
    assert!(january > 0);
    t.ok(&[
        "cancel",
        DRY_RUN,
        "--as",
        OWNER,
        "--reason",
        "dry run reviewed",
    ]);
    assert_eq!(
        published(&db).await,
        old_rows,
        "the dry run changed nothing"
    );

    // 5. Run, killed with SIGKILL once 4 chunks are staged (chunks slowed so the kill lands
    // mid-run); `run` again resumes after the last recorded chunk.
    let mut child = Child(
        t.command(&["run", RESTATEMENT_RUN])
            .env(CHUNK_DELAY_ENV, "150")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains("chunk   4/14") {
            child.0.kill().unwrap();
            break;
        }
    }
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "killed: {status:?}");
    let st = t.json(&["status", RESTATEMENT_RUN]);
    assert_eq!(state(&st), "running", "{st}");
    let done = st["chunks_done"].as_u64().unwrap();
    assert!((4..14).contains(&done), "{st}");
    let o = t.output(&["run", RESTATEMENT_RUN, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("14 chunks planned, {done} already done")),
        "{err}"
    );
    assert!(
        !err.contains(&format!("chunk {done:>3}/14")),
        "a finished chunk ran again: {err}"
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(state(&r), "awaiting_review", "{r}");
    assert_eq!(r["chunks_done"], 14);
    assert_eq!(
        published(&db).await,
        old_rows,
        "nothing visible before publish"
    );

    // 6. Review the diff with the owner: every 2025 month changed, the same case-months as the
    // validator's CSV, January as in the dry run.
    let csv = t.path("changed.csv");
    let d = t.json(&["diff", RESTATEMENT_RUN, "--out", &csv]);
    let d = d.as_array().unwrap();
    let months: Vec<&str> = d.iter().map(|p| p["partition"].as_str().unwrap()).collect();
    assert_eq!(months.len(), 12, "{months:?}");
    assert!(months.iter().all(|m| m.starts_with("2025-")));
    let changed: usize = d
        .iter()
        .map(|p| {
            let n = p["changed_keys"].as_array().unwrap().len();
            assert!(n > 0, "{p}");
            n
        })
        .sum();
    assert_eq!(d[0]["changed_keys"].as_array().unwrap().len(), january);
    // The key measure per month: before is what readers see now (counted here in SQL), after is
    // what readers will see once published (counted again after step 8).
    let breaches = |p: &Value, side: &str| -> i64 {
        let m = &p["measures"][0];
        assert_eq!(m["name"], "breaches", "{p}");
        m[side].as_i64().unwrap()
    };
    let counted = breaches_by_month(&db).await;
    for p in d {
        let month = p["partition"].as_str().unwrap();
        assert_eq!(Some(&breaches(p, "before")), counted.get(month), "{p}");
    }
    let after: BTreeMap<String, i64> = d
        .iter()
        .map(|p| {
            (
                p["partition"].as_str().unwrap().to_owned(),
                breaches(p, "after"),
            )
        })
        .collect();
    assert_ne!(after, counted, "the restatement moves breaches");
    let written = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(written.lines().next(), Some("partition,key"));
    assert_eq!(written.lines().count(), changed + 1);
    let validator_csv = t.path(&format!("{RESTATEMENT_RUN}-diff.csv"));
    let validator_csv = std::fs::read_to_string(validator_csv).unwrap();
    assert_eq!(validator_csv.lines().count(), changed + 1);
    let out = t.exits(
        1,
        &[
            "review",
            RESTATEMENT_RUN,
            "accept",
            "--as",
            REQUESTER,
            "--note",
            "looks fine to me",
        ],
    );
    assert!(out.contains("cannot also approve"), "{out}");
    let v = t.json(&[
        "review",
        RESTATEMENT_RUN,
        "accept",
        "--as",
        OWNER,
        "--note",
        "breach changes explained by the timezone fix and the restated BR-SP calendar; REG-2291",
    ]);
    assert_eq!(state(&v), "validated", "{v}");

    // 7. Publish.
    let receipt = t.json(&["publish", RESTATEMENT_RUN, "--as", OWNER]);
    assert_eq!(receipt["rows"], 15_136, "{receipt}");
    let new_rows = facts(&db).await;
    assert_eq!(new_rows.len(), 15_136);
    assert!(new_rows.iter().all(|r| r.4 == RESTATEMENT_RUN));
    assert_eq!(
        breaches_by_month(&db).await,
        after,
        "the diff's after is what was published"
    );

    // 8. Monitor: `runs` lists it published, the history superseded; nothing left to diff.
    let of = |id: &str| t.run_state(id);
    assert_eq!(of(RESTATEMENT_RUN).as_deref(), Some("published"));
    assert_eq!(of(HISTORY_RUN).as_deref(), Some("superseded"));
    assert_eq!(of(DRY_RUN).as_deref(), Some("cancelled"));
    let only = t.json(&["runs", "--state", "published", "--target", TARGET]);
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
    let listing = t.ok(&["runs"]);
    assert!(
        listing.contains(RESTATEMENT_RUN) && listing.contains("published"),
        "{listing}"
    );
    let d = t.json(&["diff", RESTATEMENT_RUN]);
    assert!(
        d.as_array()
            .unwrap()
            .iter()
            .all(|p| p["changed_keys"].as_array().unwrap().is_empty()),
        "{d}"
    );

    // 9. Communicate, and write the post-run notes, into the evidence.
    t.ok(&[
        "note",
        RESTATEMENT_RUN,
        "--name",
        "communication",
        "--as",
        OWNER,
        "--text",
        "REG-2291 restatement published; regulatory-sla-report and enforcement-dashboard owners told",
    ]);
    t.ok(&[
        "note",
        RESTATEMENT_RUN,
        "--name",
        "post_run",
        "--text",
        "resumed once after a crash at chunk 4; no manual fixes",
    ]);

    // 10. Archive the evidence: the bundle verifies offline and against the target, carries the
    // notes, and stops verifying once a published row is changed behind its back.
    let bundle = t.path("evidence.json");
    t.ok(&["evidence", "export", RESTATEMENT_RUN, "--out", &bundle]);
    let exported = std::fs::read_to_string(&bundle).unwrap();
    assert!(exported.contains("communication") && exported.contains("post_run"));
    assert!(exported.contains("resumed once after a crash at chunk 4"));
    let v = t.json(&["verify", &bundle]);
    assert_eq!(v["checks"].as_array().unwrap().len(), 4, "{v}");
    let out = t.ok(&["verify", &bundle, "--against"]);
    assert!(out.contains("ok   published_rows_match_ledger"), "{out}");
    assert!(out.ends_with("verified\n"), "{out}");

    let changed = sqlx::query(&format!(
        "UPDATE {t} SET breached = 1 - breached WHERE id = (SELECT MIN(id) FROM {t} WHERE month = '2025-03')",
        t = table()
    ))
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    let out = t.exits(1, &["verify", &bundle, "--against"]);
    assert!(
        out.contains("FAIL published_rows_match_ledger: partitions differ: 2025-03"),
        "{out}"
    );
    assert!(out.contains("verification FAILED"), "{out}");
    // The bundle itself is intact: offline, it still verifies.
    t.ok(&["verify", &bundle]);

    // 11. Rollback: the accepted pointer moves back and v2.4.1's rows are restored exactly.
    let out = t.ok(&[
        "rollback",
        RESTATEMENT_RUN,
        "--as",
        OWNER,
        "--reason",
        "owner holds the restatement until the regulator signs off",
    ]);
    assert!(out.contains(HISTORY_RUN), "{out}");
    assert_eq!(published(&db).await, old_rows);
    let of = |id: &str| t.run_state(id);
    assert_eq!(of(RESTATEMENT_RUN).as_deref(), Some("rolled_back"));
    assert_eq!(of(HISTORY_RUN).as_deref(), Some("published"));
    let trail = t.ok(&["evidence", RESTATEMENT_RUN]);
    assert!(trail.contains("rolled back silver.case_sla_monthly to bf-2025-case-sla-v2-4-1"));
    db.close().await;
}

/// Kills the child when the test ends early.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Every metric name of the seed's §25, read from the Prometheus endpoint while a run goes.
#[test]
fn the_prometheus_endpoint_serves_every_metric_during_a_run() {
    use backfill_core::telemetry as m;
    let names = [
        m::INPUT_RECORDS_TOTAL,
        m::OUTPUT_RECORDS_TOTAL,
        m::REJECTED_RECORDS_TOTAL,
        m::CHUNKS_COMPLETED_TOTAL,
        m::CHUNK_DURATION_SECONDS,
        m::SINK_WRITE_LATENCY_MS,
        m::VALIDATION_FAILURES_TOTAL,
        m::COST_ESTIMATE,
        m::PUBLISH_DURATION_SECONDS,
    ];
    let dir = tempfile::tempdir().unwrap();
    let t = Tool::new(dir.path());
    t.ok(&["submit", &manifest("sla-history.json")]);
    t.ok(&["approve", HISTORY_RUN, "--as", OWNER]);
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // 14 chunks, 250 ms after each: the run lasts several seconds.
    let mut child = Child(
        t.command(&[
            "--json-logs",
            "run",
            HISTORY_RUN,
            "--metrics-addr",
            &addr.to_string(),
        ])
        .env(CHUNK_DELAY_ENV, "250")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !seen.iter().any(|l: &String| l.starts_with("chunk ")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no chunk staged ({e}): {seen:?}"),
        }
    }
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the run ended: {seen:?}"
    );
    let url = format!("http://{addr}/metrics");
    let body = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}; {seen:?}"))
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "scraped after the run"
    );
    for name in names {
        assert!(
            body.lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "{name} missing from {url}:\n{body}"
        );
    }
    let chunks: f64 = body
        .lines()
        .find(|l| l.starts_with(m::CHUNKS_COMPLETED_TOTAL))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(chunks >= 1.0, "{body}");
    assert!(
        body.contains(&format!("run_id=\"{HISTORY_RUN}\"")),
        "{body}"
    );
    let status = child.0.wait().unwrap();
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    assert!(status.success(), "{seen:?}");
    assert!(seen.iter().any(|l| l.ends_with("-> published")), "{seen:?}");
    // --json-logs: every log line is JSON with the run's context; a chunk's lines carry the chunk's.
    let logs: Vec<Value> = seen
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!logs.is_empty(), "{seen:?}");
    for l in &logs {
        let span = &l["span"];
        assert_eq!(span["run_id"], HISTORY_RUN, "{l}");
        for k in ["transform_version", "target", "processing_mode"] {
            assert!(span.get(k).is_some(), "{k} missing in {l}");
        }
    }
    let staged: Vec<&Value> = logs
        .iter()
        .filter(|l| l["message"] == "chunk staged")
        .collect();
    assert_eq!(staged.len(), 14, "{seen:?}");
    for l in staged {
        assert!(
            l["span"]["chunk_id"].is_string() && l["span"]["source_range"].is_string(),
            "{l}"
        );
    }
}

/// Ctrl-C (SIGINT) during `run` stops it cleanly (exit 130, a message saying how to resume, the
/// run still `running` with its finished chunks), and `run` again finishes it.
#[test]
fn ctrl_c_stops_a_run_cleanly_and_run_again_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tool::new(dir.path());
    t.ok(&["submit", &manifest("sla-history.json")]);
    t.ok(&["approve", HISTORY_RUN, "--as", OWNER]);
    let mut child = Child(
        t.command(&["run", HISTORY_RUN])
            .env(CHUNK_DELAY_ENV, "200")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    for line in lines.by_ref() {
        if line.contains("chunk   2/") {
            let pid = child.0.id().to_string();
            let k = Command::new("kill").args(["-INT", &pid]).status().unwrap();
            assert!(k.success());
            break;
        }
    }
    let rest: Vec<String> = lines.collect();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("interrupted") && l.contains("resumes")),
        "{rest:?}"
    );
    let st = t.json(&["status", HISTORY_RUN]);
    assert_eq!(state(&st), "running", "{st}");
    let done = st["chunks_done"].as_u64().unwrap();
    assert!(done >= 2, "{st}");
    let o = t.output(&["run", HISTORY_RUN, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(state(&r), "published", "{r}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("{done} already done")));
}
