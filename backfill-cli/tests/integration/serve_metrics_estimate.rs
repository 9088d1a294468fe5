//! `backfill serve-metrics` reports a run's estimated cost (`backfill_cost_estimate`) from the
//! estimate kept in its evidence, for a draft estimated by another process before approval.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backfill_core::estimate::{CostModel, Rate};
use backfill_core::memory::MemorySource;
use backfill_core::prelude::*;
use backfill_sql::SqlStore;
use chrono::{Days, NaiveDate, TimeZone, Utc};

/// 90 days of one record each; $1,000 per million records and $2 fixed: $2.09.
async fn estimate_a_draft(db: &Path) -> f64 {
    let now = Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap();
    let store = Arc::new(
        SqlStore::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap(),
    );
    let control = Control::new(store).with_clock(Arc::new(FixedClock(now)));
    let d = |m| NaiveDate::from_ymd_opt(2025, m, 1).unwrap();
    let days: Vec<NaiveDate> = (0..90u64).map(|i| d(1) + Days::new(i)).collect();
    let source = MemorySource::by_date(days, |x: &NaiveDate| *x).snapshot("snap-1");
    let mut m = RunManifest::new("bf-dash-est", RunKind::Backfill, ExecutionMode::Backfill);
    m.requested_by = "data-platform".into();
    m.source.snapshot = Some("snap-1".into());
    m.source.range = Some(InputRange::Dates {
        from: d(1),
        to_exclusive: d(4),
    });
    m.target.name = "silver.daily".into();
    m.safety.cost_model = Some(CostModel {
        usd_per_million_rows: Rate::new(1_000.0),
        usd_fixed: Rate::new(2.0),
        ..CostModel::default()
    });
    control.submit_draft(&m).await.unwrap();
    let e = control
        .estimate_run(&m.run_id, &source, "alice")
        .await
        .unwrap();
    e.cost_usd.unwrap()
}

fn serve(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_backfill"))
        .current_dir(dir)
        .env_remove("BACKFILL_STORE")
        .args(["--store", "runs.db", "serve-metrics", "--interval", "0.2"])
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts")
}

#[test]
fn serve_metrics_reports_the_estimated_cost_of_a_draft() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cost = rt.block_on(estimate_a_draft(&dir.path().join("runs.db")));
    assert!((cost - 2.09).abs() < 1e-9, "{cost}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut child = serve(dir.path(), port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    let mut last = String::new();
    while Instant::now() < deadline && seen.is_none() {
        if let Ok(mut r) = ureq::get(&format!("http://127.0.0.1:{port}/metrics")).call() {
            last = r.body_mut().read_to_string().unwrap_or_default();
            seen = last
                .lines()
                .find(|l| {
                    l.starts_with("backfill_cost_estimate{")
                        && l.contains(r#"run_id="bf-dash-est""#)
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.unwrap_or_else(|| panic!("no backfill_cost_estimate; last page:\n{last}"));
    assert!((seen - cost).abs() < 1e-9, "{seen} != {cost}");
}
