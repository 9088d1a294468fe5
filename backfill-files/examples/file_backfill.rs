//! A file backfill end to end: a generated landing area, imported, then corrected.
//!
//! `cargo run -p backfill-files --example file_backfill [-- --dir DIR]`
//!
//! 1. Generates `landing/2025/{01,02,03}/` (two CSV files and one JSON-lines file a month) with a
//!    producer manifest per month, in a temporary directory or in `--dir` (which must be empty).
//! 2. Imports January to March: plans (lists, checks the manifests, hashes every file), runs
//!    every chunk through a transform into staging, validates, publishes, then commits the files
//!    to the import ledger (SQLite) and archives them.
//! 3. The producer re-lands one February file with corrected content; a second run under the
//!    `correction` policy supersedes it: the output holds the new file's rows.
//! 4. Prints the evidence of both runs. The last line is `published <rows> rows from <files> files`.
//!
//! Exits non-zero on any failure, or when the target does not hold what the files say.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::manifest::DuplicateFilePolicy;
use backfill_core::memory::{MemoryPublisher, MemorySink, MemoryStore};
use backfill_core::prelude::*;
use backfill_core::validate::UniqueKey;
use backfill_files::{
    FileRow, FileSource, ImportLedger, ImportReport, Importer, Landing, LocalLanding,
};
use backfill_sql::{FileLedger, SqlPool};
use chrono::{NaiveDate, TimeZone, Utc};
use sha2::{Digest, Sha256};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// One landed order, as the producer writes it (CSV columns or JSON fields by name).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Order {
    id: String,
    day: NaiveDate,
    cents: i64,
}

/// One published row: the order, and the file it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct OrderRow {
    id: String,
    month: String,
    cents: i64,
    source_file: String,
    source_sha256: String,
    produced_by_run_id: String,
}

impl OutputRow for OrderRow {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

#[derive(Debug)]
struct Orders;

impl DeterministicTransform for Orders {
    type Input = FileRow<Order>;
    type Output = OrderRow;

    fn name(&self) -> &str {
        "orders"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    fn apply(
        &self,
        r: &FileRow<Order>,
        ctx: &TransformContext,
        out: &mut Vec<OrderRow>,
    ) -> Result<(), TransformError> {
        out.push(OrderRow {
            id: r.record.id.clone(),
            month: r.record.day.format("%Y-%m").to_string(),
            cents: r.record.cents,
            source_file: r.lineage.path.clone(),
            source_sha256: r.lineage.sha256.clone(),
            produced_by_run_id: ctx.run_id().to_string(),
        });
        Ok(())
    }
}

fn date(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).unwrap_or_default()
}

fn orders(prefix: &str, day: NaiveDate, n: usize, cents: i64) -> Vec<Order> {
    (0..n)
        .map(|i| Order {
            id: format!("{prefix}-{i}"),
            day,
            cents: cents + i as i64 * 10,
        })
        .collect()
}

fn csv(rows: &[Order]) -> String {
    let mut s = String::from("id,day,cents\n");
    for o in rows {
        s.push_str(&format!("{},{},{}\n", o.id, o.day, o.cents));
    }
    s
}

fn jsonl(rows: &[Order]) -> BoxResult<String> {
    let mut s = String::new();
    for o in rows {
        s.push_str(&serde_json::to_string(o)?);
        s.push('\n');
    }
    Ok(s)
}

fn write(root: &Path, rel: &str, content: &str) -> BoxResult<()> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, content)?;
    Ok(())
}

/// Lands one month: its files and the producer's manifest listing them with sizes and hashes.
fn land_month(root: &Path, m: u32, corrected: bool) -> BoxResult<()> {
    let cents = if corrected { 2_000 } else { 1_000 };
    let n = if corrected { 6 } else { 5 };
    let files = [
        (
            format!("landing/2025/{m:02}/orders-2025-{m:02}-10.csv"),
            date(m, 10),
            csv(&orders(&format!("a-{m:02}"), date(m, 10), n, cents)),
        ),
        (
            format!("landing/2025/{m:02}/orders-2025-{m:02}-20.csv"),
            date(m, 20),
            csv(&orders(&format!("b-{m:02}"), date(m, 20), 4, 500)),
        ),
        (
            format!("landing/2025/{m:02}/refunds-2025-{m:02}-28.jsonl"),
            date(m, 28),
            jsonl(&orders(&format!("r-{m:02}"), date(m, 28), 3, -300))?,
        ),
    ];
    let mut listed = Vec::new();
    for (path, day, content) in &files {
        // A correction re-lands only the first file; the others were imported and archived.
        if corrected && !path.ends_with("-10.csv") {
            continue;
        }
        write(root, path, content)?;
        listed.push(serde_json::json!({
            "path": path,
            "business_date": day,
            "size": content.len(),
            "sha256": hex::encode(Sha256::digest(content.as_bytes())),
        }));
    }
    let manifest = serde_json::json!({
        "manifest_id": format!("orders-2025-{m:02}{}", if corrected { "-r1" } else { "" }),
        "producer_ts": format!("2025-{:02}-01T03:00:00Z", m + 1),
        "schema_version": "orders-v2",
        "files": listed,
    });
    write(
        root,
        &format!("manifest/2025/{m:02}/manifest.json"),
        &serde_json::to_string_pretty(&manifest)?,
    )
}

fn manifest(run_id: &str, policy: DuplicateFilePolicy) -> RunManifest {
    let mut m = RunManifest::new(run_id, RunKind::Backfill, ExecutionMode::Backfill);
    m.reason = "import the orders landed by the shop's nightly export".into();
    m.requested_by = "data-platform".into();
    m.source = SourceSpec {
        kind: "files".into(),
        name: "landing.orders".into(),
        range: Some(InputRange::Dates {
            from: date(1, 1),
            to_exclusive: date(4, 1),
        }),
        duplicate_files: Some(policy),
        ..SourceSpec::default()
    };
    m.transform.name = "orders".into();
    m.transform.version = "1.0.0".into();
    m.transform.git_commit = Some("5e1f00d".into());
    m.target = TargetSpec {
        kind: "memory".into(),
        name: TARGET.into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: vec!["2025-01".into(), "2025-02".into(), "2025-03".into()],
        consumers: vec!["finance-dashboard".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(10_000);
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        checks: vec!["unique(id)".into()],
        ..Default::default()
    });
    m
}

const TARGET: &str = "silver.orders";

/// The working directory: `--dir DIR` (created; must be empty, kept) or a fresh temporary one
/// (removed after a successful run); and whether it is temporary.
fn workdir() -> BoxResult<(PathBuf, bool)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, temporary) = match args.as_slice() {
        [] => (
            std::env::temp_dir().join(format!(
                "backfill-files-example-{}-{}",
                std::process::id(),
                Utc::now().timestamp_micros()
            )),
            true,
        ),
        [flag, dir] if flag == "--dir" => (PathBuf::from(dir), false),
        _ => return Err("usage: file_backfill [--dir DIR]".into()),
    };
    std::fs::create_dir_all(&dir)?;
    if std::fs::read_dir(&dir)?.next().is_some() {
        return Err(format!("{} is not empty", dir.display()).into());
    }
    Ok((dir, temporary))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> BoxResult<()> {
    let (dir, temporary) = workdir()?;
    let now = Utc
        .with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default();
    println!("landing area: {}", dir.display());
    let area = dir.join("area");
    for m in 1..=3 {
        land_month(&area, m, false)?;
    }

    let landing = Arc::new(LocalLanding::new(&area));
    let pool = SqlPool::connect(&format!("sqlite:{}", dir.join("ledger.db").display())).await?;
    let ledger = Arc::new(FileLedger::new(pool).await?);
    let store = Arc::new(MemoryStore::new());
    let staging = Arc::new(MemorySink::new("staging"));
    let target = Arc::new(MemoryPublisher::new(TARGET, &staging));
    let control = Control::new(Arc::<MemoryStore>::clone(&store))
        .with_clock(Arc::new(FixedClock(now)))
        .with_target(Arc::<MemoryPublisher<OrderRow>>::clone(&target))?;
    let importer = Importer::new(
        Arc::<LocalLanding>::clone(&landing) as Arc<dyn Landing>,
        Arc::<FileLedger>::clone(&ledger) as Arc<dyn ImportLedger>,
    );
    let executor = Executor::builder(
        control.clone(),
        Arc::new(
            FileSource::<Order>::new(Arc::<LocalLanding>::clone(&landing) as Arc<dyn Landing>)
                .with_ledger(Arc::<FileLedger>::clone(&ledger) as Arc<dyn ImportLedger>),
        ),
        Arc::new(Orders),
        Arc::<MemorySink<OrderRow>>::clone(&staging),
        Arc::<MemoryPublisher<OrderRow>>::clone(&target),
    )
    .options(RunnerOptions::worker("file-backfill"))
    .validator(Arc::new(UniqueKey::new("id", |r: &OrderRow| r.id.clone())))
    .build();

    let run = |run_id: &'static str, policy| {
        let (control, store, executor, importer) = (&control, &store, &executor, &importer);
        async move {
            let approved = manifest(run_id, policy).approve("finance-owner", now)?;
            control.submit(&approved).await?;
            let r = executor.run(approved.run_id()).await?;
            if r.state != RunState::Published {
                return Err(format!("{run_id} ended {}, not published", r.state).into());
            }
            let report = importer
                .commit(store.as_ref(), approved.run_id(), now)
                .await?;
            print_evidence(store.as_ref(), approved.run_id(), &report).await?;
            println!(
                "{run_id}: {} input records, {} rows published",
                r.input_records, r.output_rows
            );
            BoxResult::Ok(report)
        }
    };

    // 1-2. The import.
    let first = run("bf-orders-import", DuplicateFilePolicy::Correction).await?;
    if first.accepted.len() != 9 || !first.rejected.is_empty() {
        return Err(format!("the import accepted {:?}", first.accepted).into());
    }

    // 3. The producer corrects February's first file.
    land_month(&area, 2, true)?;
    let second = run("bf-orders-correction", DuplicateFilePolicy::Correction).await?;
    if second.corrections.len() != 1 {
        return Err(format!("expected one correction, got {:?}", second.corrections).into());
    }

    // 4. What readers see: every row once, the corrected file's rows instead of the old ones.
    let rows: Vec<OrderRow> = target.snapshot().into_values().flatten().collect();
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let files: BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|r| (r.source_file.as_str(), r.source_sha256.as_str()))
        .collect();
    let corrected: Vec<&OrderRow> = rows.iter().filter(|r| r.id.starts_with("a-02-")).collect();
    if ids.len() != rows.len()
        || rows.len() != 37
        || corrected.len() != 6
        || corrected.iter().any(|r| r.cents < 2_000)
    {
        return Err(format!(
            "the target holds {} rows ({} ids), {} of the corrected file",
            rows.len(),
            ids.len(),
            corrected.len()
        )
        .into());
    }
    if temporary {
        std::fs::remove_dir_all(&dir)?;
    }
    println!("published {} rows from {} files", rows.len(), files.len());
    Ok(())
}

async fn print_evidence(
    store: &MemoryStore,
    run_id: &RunId,
    report: &ImportReport,
) -> BoxResult<()> {
    println!("\nevidence of {run_id}:");
    for e in store.evidence(run_id).await? {
        let what = match &e.record {
            EvidenceRecord::PlanResolved {
                snapshot, chunks, ..
            } => format!(
                "{} chunks at {}",
                chunks.len(),
                snapshot.as_deref().unwrap_or("-")
            ),
            EvidenceRecord::Transition(t) => format!("{} -> {}", t.from, t.to),
            EvidenceRecord::ChunkStaged {
                chunk_id,
                input,
                output,
                ..
            } => format!("chunk {chunk_id}: {input} records in, {output} rows out"),
            EvidenceRecord::Validation(o) => format!("{}: {:?}", o.validator, o.verdict),
            EvidenceRecord::Published { receipt, .. } => format!("{} rows", receipt.rows),
            other => other.kind().as_str().to_owned(),
        };
        println!("  #{:<3} {:<14} {what}", e.seq, e.kind().as_str());
    }
    println!(
        "  import ledger: {} accepted, {} corrections, {} rejected, {} skipped, {} archived",
        report.accepted.len(),
        report.corrections.len(),
        report.rejected.len(),
        report.skipped.len(),
        report.archived.len()
    );
    for (path, superseded) in &report.corrections {
        println!(
            "  correction: {path} supersedes sha256 {}",
            &superseded[..12]
        );
    }
    Ok(())
}
