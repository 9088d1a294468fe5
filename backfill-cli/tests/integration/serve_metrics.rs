//! `backfill serve-metrics` over a SQLite run store that another process filled: a published run
//! and an approved one that has not started. The endpoint, scraped with an HTTP client, reports
//! each run's §25 counters as its ledger has them, its state, its chunks by status and one series
//! per chunk; a run that changes state afterwards flips its state series on the next read.

use std::borrow::Cow;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backfill_core::memory::{MemoryPublisher, MemorySink, MemorySource};
use backfill_core::prelude::*;
use backfill_sql::SqlStore;
use chrono::{Days, NaiveDate, TimeZone, Utc};

#[derive(Debug, Clone)]
struct Sale {
    day: NaiveDate,
    cents: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Daily {
    id: String,
    month: String,
    cents: i64,
}

impl OutputRow for Daily {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

#[derive(Debug)]
struct Copy;

impl DeterministicTransform for Copy {
    type Input = Sale;
    type Output = Daily;
    fn name(&self) -> &str {
        "daily"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        s: &Sale,
        ctx: &TransformContext,
        out: &mut Vec<Daily>,
    ) -> Result<(), TransformError> {
        out.push(Daily {
            id: ctx.output_id(&[&s.day.to_string()]),
            month: s.day.format("%Y-%m").to_string(),
            cents: s.cents,
        });
        Ok(())
    }
}

const TARGET: &str = "silver.daily";

fn manifest(run_id: &str) -> RunManifest {
    let d = |m| NaiveDate::from_ymd_opt(2025, m, 1).unwrap();
    let mut m = RunManifest::new(run_id, RunKind::Backfill, ExecutionMode::Backfill);
    m.reason = "daily totals were never computed for Q1".into();
    m.requested_by = "data-platform".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "bronze.sales".into(),
        snapshot: Some("snap-1".into()),
        range: Some(InputRange::Dates {
            from: d(1),
            to_exclusive: d(4),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "daily".into();
    m.transform.version = "1.0.0".into();
    m.transform.git_commit = Some("8d91ab7".into());
    m.target = TargetSpec {
        kind: "memory".into(),
        name: TARGET.into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: vec!["2025-01".into(), "2025-02".into(), "2025-03".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..Default::default()
    });
    m
}

/// Publishes `bf-dash-1` (90 days in three monthly chunks) and leaves `bf-dash-2` approved.
async fn fill(db: &Path) -> Control {
    let now = Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap();
    let store = Arc::new(
        SqlStore::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap(),
    );
    let staging = Arc::new(MemorySink::<Daily>::new("staging"));
    let target = Arc::new(MemoryPublisher::new(TARGET, &staging));
    let control = Control::new(store)
        .with_clock(Arc::new(FixedClock(now)))
        .with_target(Arc::<MemoryPublisher<Daily>>::clone(&target))
        .unwrap();
    let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let sales: Vec<Sale> = (0..90u64)
        .map(|i| Sale {
            day: start + Days::new(i),
            cents: 100 + i as i64,
        })
        .collect();
    let source = MemorySource::by_date(sales, |s: &Sale| s.day).snapshot("snap-1");
    let executor = Executor::builder(
        control.clone(),
        Arc::new(source),
        Arc::new(Copy),
        staging,
        target,
    )
    .options(RunnerOptions::worker("dash-test"))
    .build();
    let one = manifest("bf-dash-1").approve("finance-owner", now).unwrap();
    control.submit(&one).await.unwrap();
    let report = executor.run(one.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published);
    let two = manifest("bf-dash-2").approve("finance-owner", now).unwrap();
    control.submit(&two).await.unwrap();
    control
}

fn serve(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_backfill"))
        .current_dir(dir)
        .env_remove("BACKFILL_STORE")
        .args(["--store", "runs.db", "serve-metrics", "--interval", "0.2"])
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Scrapes until `want` holds of the page (the first read of the store may still be under way).
fn scrape_until(port: u16, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(mut r) = ureq::get(&format!("http://127.0.0.1:{port}/metrics")).call() {
            last = r.body_mut().read_to_string().unwrap_or_default();
            if want(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the endpoint never showed what was expected; last page:\n{last}");
}

/// The value of the one series of `name` whose labels include every one of `labels`.
fn value(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn serve_metrics_reports_every_run_in_the_store_from_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let control = rt.block_on(fill(&dir.path().join("runs.db")));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut child = serve(dir.path(), port);
    let one = r#"run_id="bf-dash-1""#;
    let page = scrape_until(port, |p| p.contains(one) && p.contains("bf-dash-2"));

    // The counters are the ledger's, for the run that no process here is running any more.
    let status = rt
        .block_on(control.status(&RunId::from("bf-dash-1")))
        .unwrap();
    assert_eq!(status.chunks_done, 3);
    let v = |name, extra: &[&str]| {
        let mut l = vec![one];
        l.extend_from_slice(extra);
        value(&page, name, &l)
    };
    assert_eq!(
        v("backfill_output_records_total", &[]),
        Some(status.output_rows as f64)
    );
    assert_eq!(v("backfill_input_records_total", &[]), Some(90.0));
    assert_eq!(v("backfill_chunks_completed_total", &[]), Some(3.0));
    assert_eq!(v("backfill_validation_failures_total", &[]), Some(0.0));
    assert_eq!(
        v("backfill_run_state", &[r#"state="published""#]),
        Some(1.0)
    );
    assert_eq!(v("backfill_run_chunks", &[r#"status="done""#]), Some(3.0));
    assert_eq!(
        v("backfill_run_chunks", &[r#"status="pending""#]),
        Some(0.0)
    );
    // The runner's labels, so these series join a worker's own.
    assert!(
        page.lines()
            .any(|l| l.starts_with("backfill_chunks_completed_total{")
                && l.contains(r#"mode="BACKFILL""#)
                && l.contains(r#"target="silver.daily""#)),
        "{page}"
    );
    // One series per chunk, rows summing to the run's output; a duration observed per chunk.
    let per_chunk: Vec<f64> = page
        .lines()
        .filter(|l| l.starts_with("backfill_chunk_output_rows{") && l.contains(one))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(per_chunk.len(), 3, "{page}");
    assert_eq!(per_chunk.iter().sum::<f64>(), status.output_rows as f64);
    assert!(page.contains("backfill_chunk_duration_seconds"), "{page}");
    // The run that has not started is there too, with its plan still to come.
    assert_eq!(
        value(
            &page,
            "backfill_run_state",
            &[r#"run_id="bf-dash-2""#, r#"state="approved""#]
        ),
        Some(1.0)
    );

    // A state change is seen on the next read: the old state's series drops to 0.
    rt.block_on(control.cancel(&RunId::from("bf-dash-2"), "operator", "not needed"))
        .unwrap();
    let two = r#"run_id="bf-dash-2""#;
    let page = scrape_until(port, |p| {
        value(p, "backfill_run_state", &[two, r#"state="cancelled""#]) == Some(1.0)
    });
    assert_eq!(
        value(&page, "backfill_run_state", &[two, r#"state="approved""#]),
        Some(0.0)
    );
    let _ = child.kill();
    let _ = child.wait();
}
