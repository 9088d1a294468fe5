//! `plan`, `run`, `verify`, `serve-metrics`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use backfill_core::control::Control;
use backfill_core::evidence::bundle::EvidenceBundle;
use backfill_core::plan::ResolvedPlan;
use backfill_core::store::RunFilter;

use super::{known, CmdResult};
use crate::out::emit;
use crate::progress::Bar;
use crate::registry::Registry;

pub(super) async fn plan(
    reg: &Registry,
    file: &Path,
    rate: Option<f64>,
    cost_per_million: Option<f64>,
    json: bool,
) -> CmdResult {
    let m = super::manifest::load(file)?;
    let job = reg.job_for(&m)?;
    let source_plan = job.plan(&m).await?;
    let plan = ResolvedPlan::new(&m.run_id, m.digest(), source_plan, chrono::Utc::now());
    let coverage = match &m.source.range {
        Some(r) => plan.check_coverage(r).map_err(|e| e.to_string()),
        None => Err("the manifest names no input range".to_owned()),
    };
    let pin = plan
        .check_pin(m.source.snapshot.as_deref())
        .map_err(|e| e.to_string());
    let estimate = Estimate::of(&plan, rate, cost_per_million);
    emit(
        json,
        &serde_json::json!({
            "run_id": m.run_id,
            "snapshot": plan.snapshot,
            "resolved_from": plan.resolved_from,
            "chunks": plan.chunks.iter().map(|c| serde_json::json!({
                "id": c.id, "label": c.label, "range": c.range.to_string()
            })).collect::<Vec<_>>(),
            "coverage": coverage.as_ref().map(|_| "exact").map_err(Clone::clone),
            "pin": pin.as_ref().map(|_| "honoured").map_err(Clone::clone),
            "estimate": estimate,
        }),
        |_| {
            let mut s = format!(
                "{}: {} chunks at snapshot {}",
                m.run_id,
                plan.chunks.len(),
                plan.snapshot.as_deref().unwrap_or("-")
            );
            for c in &plan.chunks {
                let size = c.estimate.map_or_else(
                    || "size unknown".to_owned(),
                    |e| format!("~{} records", e.records),
                );
                s.push_str(&format!(
                    "\n  {} {:<12} {} ({size})",
                    c.id, c.label, c.range
                ));
            }
            s.push_str(&format!(
                "\ncoverage: {}\npin: {}",
                coverage
                    .as_ref()
                    .map_or_else(Clone::clone, |()| "exact, no gaps or overlaps".to_owned()),
                pin.as_ref()
                    .map_or_else(Clone::clone, |()| "honoured".to_owned())
            ));
            s.push_str(&format!("\nestimate: {estimate}"));
            s
        },
    );
    Ok(if coverage.is_ok() && pin.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) async fn run(
    control: &Control,
    reg: &Registry,
    run: &str,
    metrics: Option<SocketAddr>,
    json: bool,
) -> CmdResult {
    let id = known(control, run).await?;
    let (approved, _) = control.load(&id).await?;
    let job = Arc::clone(reg.job_for(approved.manifest())?);
    if let Some(addr) = metrics {
        crate::telemetry::serve_metrics(addr)?;
        eprintln!("metrics on http://{addr}/metrics");
    }
    let bar = Arc::new(Bar::new());
    let work = job.run(control.clone(), &id, Arc::clone(&bar) as _);
    tokio::select! {
        report = work => {
            bar.finish();
            let r = report?;
            emit(json, &r, |r| {
                format!(
                    "{}: {} ({} of {} chunks, {} rows){}",
                    r.run_id,
                    r.state,
                    r.chunks_done,
                    r.chunks_total,
                    r.output_rows,
                    r.receipt.as_ref().map_or_else(String::new, |rc| format!(", published ({})", rc.reference))
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        _ = tokio::signal::ctrl_c() => {
            bar.finish();
            let s = control.status(&id).await?;
            eprintln!(
                "{id}: interrupted with {}/{} chunks done; nothing half-staged is visible. `backfill run {id}` resumes.",
                s.chunks_done, s.chunks_total
            );
            Ok(ExitCode::from(130))
        }
    }
}

pub(super) async fn verify(
    control: &Control,
    reg: &Registry,
    file: &Path,
    against: bool,
    json: bool,
) -> CmdResult {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let bundle = EvidenceBundle::from_json(&text)?;
    let v = if against {
        let run = control.run(bundle.run_id()).await?;
        let target = reg.target_named(&run.target)?;
        // The rows readers see are this run's only while it holds the accepted pointer.
        let accepted = control.store().accepted(&run.target).await?;
        let visible = accepted.is_some_and(|p| p.run_id == *bundle.run_id());
        if !visible && !json {
            eprintln!(
                "{}: not the accepted run of {} (state {}): checking its staged rows, not the visible ones",
                bundle.run_id(),
                run.target,
                run.state
            );
        }
        target.verify(&bundle, visible).await?
    } else {
        bundle.verify()
    };
    let passed = v.passed();
    emit(json, &v, |v| {
        let mut s = String::new();
        for c in &v.checks {
            s.push_str(&format!(
                "{} {}: {}\n",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        s.push_str(&format!(
            "{}: {}",
            bundle.run_id(),
            if passed {
                "verified"
            } else {
                "verification FAILED"
            }
        ));
        s
    });
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) async fn serve_metrics(
    control: &Control,
    addr: SocketAddr,
    interval: f64,
    since_hours: Option<u32>,
) -> CmdResult {
    if !(interval.is_finite() && interval > 0.0) {
        return Err(
            format!("--interval must be a positive number of seconds, not {interval}").into(),
        );
    }
    crate::telemetry::serve_metrics(addr)?;
    crate::dashboard::describe();
    let filter = match since_hours {
        Some(h) => RunFilter::all()
            .created_after(control.clock().now() - chrono::Duration::hours(h.into())),
        None => RunFilter::all(),
    };
    let mut dashboard = crate::dashboard::Dashboard::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announced = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(ExitCode::SUCCESS),
            _ = tick.tick() => {}
        }
        // A store that is briefly unreachable leaves the last values up and says so.
        match dashboard.refresh(control, &filter).await {
            Ok(n) if !announced => {
                eprintln!("metrics of {n} run(s) on http://{addr}/metrics every {interval} s; Ctrl-C stops");
                announced = true;
            }
            Ok(_) => {}
            Err(e) => eprintln!("warning: reading the run store: {e}"),
        }
    }
}

/// What planning tells before a run: input size from the source, duration and cost from the
/// operator's declared rates.
#[derive(Debug, serde::Serialize)]
struct Estimate {
    chunks: usize,
    chunks_with_size: usize,
    records: u64,
    bytes: Option<u64>,
    seconds: Option<f64>,
    cost_usd: Option<f64>,
}

impl Estimate {
    fn of(plan: &ResolvedPlan, rate: Option<f64>, cost_per_million: Option<f64>) -> Self {
        let sized: Vec<_> = plan.chunks.iter().filter_map(|c| c.estimate).collect();
        let records = sized.iter().map(|e| e.records).sum::<u64>();
        let bytes = sized.iter().map(|e| e.bytes).sum::<Option<u64>>();
        Self {
            chunks: plan.chunks.len(),
            chunks_with_size: sized.len(),
            records,
            bytes,
            seconds: rate.filter(|r| *r > 0.0).map(|r| records as f64 / r),
            cost_usd: cost_per_million.map(|c| records as f64 / 1e6 * c),
        }
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} input records", self.records)?;
        if self.chunks_with_size < self.chunks {
            write!(
                f,
                " in the {} of {} chunks the source could size",
                self.chunks_with_size, self.chunks
            )?;
        }
        if let Some(b) = self.bytes {
            write!(f, ", {b} bytes")?;
        }
        match self.seconds {
            Some(s) => write!(f, ", ~{s:.0} s")?,
            None => write!(f, ", duration: pass --rate RECORDS_PER_S")?,
        }
        if let Some(c) = self.cost_usd {
            write!(f, ", ~${c:.2}")?;
        }
        Ok(())
    }
}
