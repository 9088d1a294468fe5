//! A generated landing area and manifests for the tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use backfill_core::context::ExecutionMode;
use backfill_core::manifest::{DuplicateFilePolicy, RunManifest};
use backfill_testkit::strategy::valid_manifest;
use chrono::NaiveDate;
use sha2::{Digest, Sha256};

pub mod run;

/// One input record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub id: String,
    pub day: NaiveDate,
    pub cents: i64,
}

pub fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).expect("a valid date")
}

/// A temporary directory, removed when dropped.
pub fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("backfill-files-")
        .tempdir()
        .expect("temp dir")
}

/// A fresh directory under the system temp dir, named for a conformance namespace (its harness
/// removes it in teardown).
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("backfill-files-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("dirs");
    std::fs::write(p, content).expect("write");
}

pub fn sha(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

pub fn csv(orders: &[Order]) -> String {
    let mut s = String::from("id,day,cents\n");
    for o in orders {
        s.push_str(&format!("{},{},{}\n", o.id, o.day, o.cents));
    }
    s
}

pub fn jsonl(orders: &[Order]) -> String {
    orders
        .iter()
        .map(|o| serde_json::to_string(o).expect("json") + "\n")
        .collect()
}

pub fn orders(prefix: &str, date: NaiveDate, n: usize, cents: i64) -> Vec<Order> {
    (0..n)
        .map(|i| Order {
            id: format!("{prefix}-{i}"),
            day: date,
            cents: cents + i as i64,
        })
        .collect()
}

/// January to March 2025: two CSV files and one JSON-lines file a month (5 + 4 + 3 rows), and a
/// producer manifest for February. 36 records in all.
pub fn landing(root: &Path) -> u64 {
    let mut total = 0;
    for m in 1..=3u32 {
        let files = [
            (
                format!("landing/2025/{m:02}/orders-2025-{m:02}-10.csv"),
                csv(&orders(&format!("a{m}"), day(m, 10), 5, 100)),
            ),
            (
                format!("landing/2025/{m:02}/orders-2025-{m:02}-20.csv"),
                csv(&orders(&format!("b{m}"), day(m, 20), 4, 200)),
            ),
            (
                format!("landing/2025/{m:02}/late.jsonl"),
                jsonl(&orders(&format!("c{m}"), day(m, 1), 3, 300)),
            ),
        ];
        for (p, c) in &files {
            write(root, p, c);
        }
        total += 12;
        if m == 2 {
            let listed: Vec<_> = files
                .iter()
                .map(|(p, c)| {
                    serde_json::json!({
                        "path": p, "business_date": if p.ends_with(".jsonl") { "2025-02-28".to_owned() } else { p[p.len() - 14..p.len() - 4].to_owned() },
                        "size": c.len(), "sha256": sha(c)
                    })
                })
                .collect();
            let m = serde_json::json!({
                "manifest_id": "orders-2025-02", "producer_ts": "2025-03-01T03:00:00Z",
                "schema_version": "v3", "files": listed
            });
            write(root, "manifest/2025/02/manifest.json", &m.to_string());
        }
        write(root, &format!("landing/2025/{m:02}/_SUCCESS"), "");
    }
    total
}

/// A manifest over `[from, to)` of the files source with `policy`.
pub fn manifest(
    run_id: &str,
    from: NaiveDate,
    to: NaiveDate,
    policy: DuplicateFilePolicy,
) -> RunManifest {
    let mut m = valid_manifest(run_id, ExecutionMode::Backfill, from, to, None);
    m.source.kind = "files".into();
    m.source.name = "landing.orders".into();
    m.source.snapshot = None;
    m.source.duplicate_files = Some(policy);
    // A correction changes the month's row count on purpose.
    if let Some(v) = m.validation.as_mut() {
        v.count_tolerance = None;
    }
    m
}

/// Every file under `root` with its hash, sorted: what reading must not change.
pub fn observe(root: &Path) -> String {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                out.push(format!(
                    "{} {}",
                    p.display(),
                    hex::encode(Sha256::digest(&bytes))
                ));
            }
        }
    }
    out.sort();
    out.join("\n")
}
