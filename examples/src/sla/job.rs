//! The main job: publish v2.4.1's history, then restate 2025 with v3.1.0 as a controlled change.
//!
//! One [`Control`] over the run store, with the warehouse's [`SqlPublisher`] registered for
//! [`TARGET`], does every operator action: submitting and approving the manifests, the owner's review,
//! publishing after review, rolling back and exporting evidence. An [`Executor`] per transform
//! version only executes (plans, stages, validates; it publishes through the same `Control` when no
//! review is needed).
//!
//! Every step is idempotent: the job finds runs that already exist in the store and continues them
//! (a crashed run resumes at its first unfinished chunk; a published run is not published again).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use backfill_core::evidence::bundle::{verify_rows, Verification};
use backfill_core::prelude::*;
use backfill_core::runner::{ExecutorBuilder, ProgressListener, RunEvent};
use backfill_core::validate::{BusinessDelta, UniqueKey};
use backfill_sql::{SqlCheck, SqlPool, SqlPublisher, SqlSink, SqlStore};

use super::calendar::{BusinessCalendar, CALENDAR_AS_RECORDED, CALENDAR_RESTATED};
use super::checks::{ActivePopulation, DueOnBusinessDays, NoMissingActiveCases};
use super::corrections;
use super::diff::DiffAgainstAccepted;
use super::events::{generate, GeneratorConfig};
pub use super::manifests::*;
use super::report;
use super::source::{case_event_source, load, pinned_snapshot, CaseEventSource, TABLE};
use super::transform::{CaseSlaMonth, CaseSlaTransform};

/// What the owner decides when the restatement waits for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OwnerDecision {
    /// Accept the business delta and publish (the demo's default).
    Accept,
    /// Reject: nothing is published.
    Reject,
    /// Leave the run waiting for a person; run the job again with `accept` or `reject` later.
    Wait,
}

/// Job settings.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Where the SQLite files, the review files (the diff CSV) and the evidence bundle live
    /// (created when missing).
    pub data_dir: PathBuf,
    /// A PostgreSQL or MariaDB/MySQL URL for store and warehouse instead of SQLite files.
    pub database_url: Option<String>,
    /// The owner's review decision.
    pub owner_decision: OwnerDecision,
    /// Submit the restatement manifest as a draft and stop: its owner approves it later.
    pub submit_only: bool,
    /// Exit the process after this many chunks of the restatement (to show resume).
    pub crash_after_chunks: Option<usize>,
    /// Roll the published restatement back to the history run, for this reason.
    pub rollback: Option<String>,
    /// Also publish the changed case-months as `CaseSlaBreachCorrected` events into
    /// [`corrections::OUTBOX`], before the rows are published (see [`corrections`]).
    pub correction_events: bool,
    /// The case generator.
    pub generator: GeneratorConfig,
    /// How long this worker's chunk leases last (the runner's default when `None`); a worker
    /// paused for longer loses its chunks to the others.
    pub lease: Option<std::time::Duration>,
}

/// What the job ended with.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// State of the history run.
    pub history: RunReport,
    /// State of the restatement run.
    pub restatement: RunReport,
    /// The exported evidence bundle of the restatement, verified (none while it is a draft).
    pub verification: Option<Verification>,
}

/// Prints progress lines and, when asked, exits the process after N staged chunks.
#[derive(Debug)]
struct Progress {
    label: &'static str,
    run: &'static str,
    crash_after: Option<usize>,
    staged: AtomicUsize,
}

impl ProgressListener for Progress {
    fn event(&self, run: &RunId, event: &RunEvent) {
        match event {
            RunEvent::Planned { total, done } if *done > 0 => eprintln!(
                "  [{}] {total} chunks planned, {done} already done: resuming at chunk {}",
                self.label,
                done + 1
            ),
            RunEvent::Planned { total, .. } => {
                eprintln!("  [{}] {total} chunks planned", self.label)
            }
            RunEvent::ChunkStaged {
                label,
                rows,
                done,
                total,
            } => {
                eprintln!(
                    "  [{}] chunk {done:>2}/{total} {label}: {rows:>5} rows staged",
                    self.label
                );
                let n = self.staged.fetch_add(1, Ordering::SeqCst) + 1;
                if self.crash_after == Some(n) {
                    eprintln!("  [{}] injected crash after {n} chunks", self.label);
                    std::process::exit(3);
                }
            }
            RunEvent::ChunkFailed { label, error } => {
                eprintln!("  [{}] chunk {label} failed: {error}", self.label)
            }
            RunEvent::State(s) if run.as_str() == self.run => {
                eprintln!("  [{}] -> {s}", self.label)
            }
            RunEvent::State(s) => eprintln!("  [{}] {run} -> {s}", self.label),
            _ => {}
        }
    }
}

type Check = Arc<dyn Validator<CaseSlaMonth>>;

/// The validators the restatement's executor attaches, named as [`RESTATEMENT_CHECKS`] lists them:
/// row ids unique, the breach delta per month against the accepted output (over the manifest's
/// threshold the owner reviews), SQL range and null checks on the staging table, every active case in
/// every month, due dates on business days of the restated calendar, and the diff of old against new
/// (every changed case-month in a CSV file at `diff_csv`).
pub fn restatement_validators(
    sink: &Arc<SqlSink<CaseSlaMonth>>,
    population: ActivePopulation,
    calendar: BusinessCalendar,
    diff_csv: PathBuf,
) -> backfill_core::Result<Vec<Check>> {
    Ok(vec![
        unique_ids(),
        Arc::new(BusinessDelta::new("breaches", |r: &CaseSlaMonth| {
            i64::from(r.breached_in_month)
        })),
        Arc::new(SqlCheck::range(sink, "business_days_used", 0.0, 10_000.0)?),
        Arc::new(SqlCheck::not_null(sink, "opened_on")?),
        Arc::new(NoMissingActiveCases::new(population)),
        Arc::new(DueOnBusinessDays::new(calendar)),
        Arc::new(DiffAgainstAccepted::writing_csv(diff_csv)),
    ])
}

/// The [`QUALITY_GATE`]: the regulator's reconciliation, computed by the database on the staging
/// table: one row per case and month, and rows per month equal to the ledger's counts.
pub fn regulatory_gate(sink: &Arc<SqlSink<CaseSlaMonth>>) -> backfill_core::Result<Vec<Check>> {
    Ok(vec![
        Arc::new(SqlCheck::unique(sink, &["case_id", "month"])?),
        Arc::new(SqlCheck::partition_counts(sink)),
    ])
}

fn unique_ids() -> Check {
    Arc::new(UniqueKey::new("id", |r: &CaseSlaMonth| r.id.clone()))
}

/// The warehouse, the run store and the control plane over them.
#[derive(Debug)]
pub struct Parts {
    /// The warehouse: bronze events, staging and the target.
    pub pool: SqlPool,
    /// Staging for the target.
    pub sink: Arc<SqlSink<CaseSlaMonth>>,
    /// The target's publisher (and reader of what readers see).
    pub publisher: Arc<SqlPublisher<CaseSlaMonth>>,
    /// Every operator action: the run store with the publisher registered for [`TARGET`].
    pub control: Control,
    /// The runner options of this process (its worker id, its lease).
    pub options: RunnerOptions,
}

impl Parts {
    /// An executor for one transform version: it plans, stages and validates, nothing else.
    fn executor(
        &self,
        source: &Arc<CaseEventSource>,
        transform: CaseSlaTransform,
        progress: Progress,
    ) -> backfill_core::Result<ExecutorBuilder<CaseSlaTransform>> {
        Ok(Executor::builder(
            self.control.clone(),
            Arc::<CaseEventSource>::clone(source),
            Arc::new(transform),
            Arc::<SqlSink<CaseSlaMonth>>::clone(&self.sink),
            Arc::<SqlPublisher<CaseSlaMonth>>::clone(&self.publisher),
        )
        .options(self.options.clone())
        .progress(Arc::new(progress))
        .quality_gate(QUALITY_GATE, regulatory_gate(&self.sink)?))
    }
}

fn calendar(version: &str) -> backfill_core::Result<BusinessCalendar> {
    BusinessCalendar::version(version).ok_or_else(|| Error::Adapter {
        adapter: "jurisdiction_calendar",
        source: format!("unknown calendar version {version}").into(),
    })
}

/// The store and warehouse URLs: the given server for both, or two SQLite files in the data
/// directory.
pub fn urls(cfg: &JobConfig) -> (String, String) {
    match &cfg.database_url {
        Some(url) => (url.clone(), url.clone()),
        None => {
            let f = |name: &str| format!("sqlite://{}", cfg.data_dir.join(name).display());
            (f("runs.db"), f("warehouse.db"))
        }
    }
}

/// Connects to the store and the warehouse and builds the control plane.
pub async fn connect(cfg: &JobConfig) -> backfill_core::Result<Parts> {
    // The data directory holds the review files, and the SQLite databases unless a URL is given.
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| Error::Adapter {
        adapter: "sla-restatement",
        source: format!("creating {}: {e}", cfg.data_dir.display()).into(),
    })?;
    let (store_url, warehouse_url) = urls(cfg);
    let store = Arc::new(SqlStore::connect(&store_url).await?);
    let pool = SqlPool::connect(&warehouse_url).await?;
    let sink = Arc::new(SqlSink::new(pool.clone(), TARGET).await?);
    let publisher = Arc::new(SqlPublisher::new(pool.clone(), TARGET).await?);
    let control =
        Control::new(store).with_target(Arc::<SqlPublisher<CaseSlaMonth>>::clone(&publisher))?;
    // Every process of the job is worker `sla-job`: a restarted job gives its leases back at
    // start instead of waiting for them to expire. Workers started together are kept apart by the
    // attempt fencing of every chunk (a start fences off the chunk another holds under the id,
    // once) and by the run-wide `max_chunks_in_parallel`. Transient failures (a database
    // restarting) are waited out for a minute.
    let mut options =
        RunnerOptions::worker("sla-job").with_transient_budget(std::time::Duration::from_secs(60));
    if let Some(lease) = cfg.lease {
        options = options.with_lease(lease);
    }
    Ok(Parts {
        pool,
        sink,
        publisher,
        control,
        options,
    })
}

/// Scheme and host of a URL, never its credentials.
fn display_url(url: &str) -> String {
    let scheme = url.split("://").next().unwrap_or("database");
    let host = url.rsplit('@').next().unwrap_or("");
    format!(
        "{scheme}://{}",
        host.trim_start_matches(&format!("{scheme}://"))
    )
}

/// Submits a manifest as a draft (the stored one must be the same) and, while it is a draft, has its
/// owner approve it, both through the control plane.
async fn submit_and_approve(control: &Control, m: &RunManifest) -> backfill_core::Result<()> {
    let r = control.submit_draft(m).await?;
    if r.state == RunState::Draft {
        // A worker of the job started at the same moment may approve it too: the control plane
        // answers the same owner's approval of the same digest with the approval that stands.
        control.approve(&m.run_id, OWNER).await?;
    }
    Ok(())
}

/// Runs the whole job. Prints what it does; returns the final state of both runs.
pub async fn run(cfg: &JobConfig) -> backfill_core::Result<JobOutcome> {
    let parts = connect(cfg).await?;
    let control = &parts.control;
    let where_ = cfg
        .database_url
        .as_deref()
        .map_or_else(|| cfg.data_dir.display().to_string(), display_url);
    say!("== SLA restatement (seed §29) on {where_}");

    // 0. The bronze events, generated deterministically and loaded once; the source's snapshot pin.
    let cases = generate(&cfg.generator);
    load(&parts.pool, &cases).await?;
    let events: usize = cases.iter().map(|c| c.events.len()).sum();
    let (_, input_end) = dates(&input_range());
    let source = Arc::new(case_event_source(parts.pool.clone(), input_end)?);
    let snapshot = pinned_snapshot(&source, &input_range()).await?;
    say!(
        "{TABLE}: {} cases, {events} events; snapshot of {} {snapshot}",
        cases.len(),
        input_range()
    );

    // 1. Accepted history: v2.4.1's 2025 output.
    let old = CaseSlaTransform::v2_4_1(calendar(CALENDAR_AS_RECORDED)?);
    let new = CaseSlaTransform::v3_1_0(calendar(CALENDAR_RESTATED)?);
    let hm = history_manifest(&old, &snapshot);
    let rm = restatement_manifest(&new, &snapshot);
    let hid = hm.run_id.clone();
    match control.store().run(&hid).await? {
        Some(r) if matches!(r.state, RunState::Published | RunState::Superseded) => {
            say!("\n1. history {hid} is already accepted ({})", r.state);
        }
        _ => {
            say!("\n1. publishing v2.4.1's 2025 output as accepted history ({hid})");
            let progress = Progress {
                label: "v2.4.1",
                run: HISTORY_RUN,
                crash_after: None,
                staged: AtomicUsize::new(0),
            };
            let history = parts
                .executor(&source, old, progress)?
                .validator(unique_ids())
                .build();
            submit_and_approve(control, &hm).await?;
            let r = history.run(&hid).await?;
            say!(
                "   {hid}: {} rows in {} partitions -> {}",
                r.output_rows,
                r.digests.0.len(),
                r.state
            );
        }
    }

    // 2. The restatement manifest: submitted by the requester, approved by the owner.
    let rid = rm.run_id.clone();
    let state = match control.store().run(&rid).await? {
        None => {
            say!("\n2. restatement manifest {rid} (digest {})", rm.digest());
            report::manifest(&rm);
            for f in &rm.check().0 {
                say!("   check: {f}");
            }
            control.submit_draft(&rm).await?;
            say!("   submitted by {REQUESTER} as a draft");
            RunState::Draft
        }
        Some(r) => {
            // The same manifest must still be what is stored (a changed one is refused here).
            control.submit_draft(&rm).await?;
            if matches!(
                r.state,
                RunState::Published | RunState::Superseded | RunState::RolledBack
            ) {
                // Published earlier: nothing is run or published again.
                let s = control.status(&rid).await?;
                let at = s
                    .receipt
                    .as_ref()
                    .map(|x| x.published_at.format(report::TIME).to_string());
                say!(
                    "\n2. restatement {rid} is already {} (published {}): nothing to run, nothing republished",
                    r.state,
                    at.unwrap_or_else(|| "-".into())
                );
                if cfg.correction_events {
                    corrections::publish(&parts, &rid).await?;
                }
                return conclude(cfg, &parts, s).await;
            }
            say!("\n2. restatement {rid} exists ({})", r.state);
            r.state
        }
    };
    if cfg.submit_only {
        say!("   --submit-only: {rid} stays {state} for {OWNER}");
        return finish(cfg, &parts, control.status(&rid).await?).await;
    }
    if state == RunState::Draft {
        let r = control.approve(&rid, OWNER).await?;
        say!(
            "   approved by {OWNER} through the control plane, bound to {}",
            r.manifest_digest
        );
    }

    // 3. Run: chunks staged (resuming if interrupted), validated; the executor does nothing else.
    let (from, to) = dates(&publish_range());
    let progress = Progress {
        label: "v3.1.0",
        run: RESTATEMENT_RUN,
        crash_after: cfg.crash_after_chunks,
        staged: AtomicUsize::new(0),
    };
    let validators = restatement_validators(
        &parts.sink,
        ActivePopulation::of(&cases, from, to),
        calendar(CALENDAR_RESTATED)?,
        cfg.data_dir.join(format!("{RESTATEMENT_RUN}-diff.csv")),
    )?;
    let executor = validators
        .into_iter()
        .fold(parts.executor(&source, new, progress)?, |b, v| {
            b.validator(v)
        })
        .build();
    let now = control.run(&rid).await?.state;
    let mut r = if matches!(now, RunState::AwaitingReview | RunState::Validated) {
        say!("\n3. {rid} was staged and validated earlier ({now})");
        control.status(&rid).await?
    } else {
        say!(
            "\n3. running {rid}: input {} (December 2024 is warm-up), publish {}",
            input_range(),
            publish_range()
        );
        match executor.run(&rid).await {
            Ok(r) => r,
            Err(e) => {
                // Show what failed before giving up: the owner needs the numbers, not only the error.
                report::validations(&control.status(&rid).await?);
                return Err(e);
            }
        }
    };
    report::validations(&r);
    if let Some(diff) = report::diff_of(&r) {
        report::diff_table(&diff);
    }

    // 4. The owner's review, through the control plane; an accepted run is published by it too.
    if r.state == RunState::AwaitingReview {
        let pct = rm
            .validation
            .as_ref()
            .and_then(|v| v.business_delta_max_pct);
        say!(
            "\n4. owner review: the breach delta is over the manifest's {}% threshold",
            pct.unwrap_or(0)
        );
        match cfg.owner_decision {
            OwnerDecision::Wait => {
                say!("   waiting for {OWNER}; run again with --owner-decision accept (or reject)");
                return finish(cfg, &parts, r).await;
            }
            OwnerDecision::Accept | OwnerDecision::Reject => {
                let accept = cfg.owner_decision == OwnerDecision::Accept;
                let why = if accept {
                    "breach changes explained by the timezone fix and the restated BR-SP calendar; REG-2291"
                } else {
                    "rejected on review"
                };
                // A worker started together with this one may record the same decision first:
                // the control plane answers it with the decision that stands.
                control.review(&rid, accept, OWNER, why).await?;
                say!(
                    "   {OWNER}: {} ({why})",
                    if accept { "accepted" } else { "rejected" }
                );
            }
        }
        r = control.status(&rid).await?;
    }
    if r.state == RunState::Validated {
        if cfg.correction_events {
            say!("\n   correction events for event-sourced consumers, before the rows replace the accepted ones:");
            corrections::publish(&parts, &rid).await?;
        }
        control.publish(&rid, OWNER).await?;
        r = control.status(&rid).await?;
    }

    // 5. Published: the pointer moved and v2.4.1's run is superseded.
    let h = control.run(&hid).await?;
    say!("\n5. {rid} -> {}; {hid} -> {}", r.state, h.state);
    if let Some(receipt) = &r.receipt {
        say!(
            "   published {} rows into {} partitions of {} by {OWNER} at {}",
            receipt.rows,
            receipt.partitions.len(),
            receipt.target,
            receipt.published_at.format(report::TIME)
        );
    }
    conclude(cfg, &parts, r).await
}

/// Rolls back when asked (through the control plane), then finishes.
async fn conclude(
    cfg: &JobConfig,
    parts: &Parts,
    mut r: RunReport,
) -> backfill_core::Result<JobOutcome> {
    if let Some(reason) = &cfg.rollback {
        match r.state {
            RunState::Published => {
                let receipt = parts.control.rollback_run(&r.run_id, OWNER, reason).await?;
                r = parts.control.status(&r.run_id).await?;
                say!(
                    "\n6. rolled back by {OWNER} ({reason}): {} rows of {HISTORY_RUN} restored in {} partitions; {} -> {}",
                    receipt.rows,
                    receipt.partitions.len(),
                    r.run_id,
                    r.state
                );
            }
            RunState::RolledBack => {
                say!("\n6. {} is already rolled back: nothing to do", r.run_id)
            }
            other => say!(
                "\n6. {} is {other}: there is nothing to roll back",
                r.run_id
            ),
        }
    }
    finish(cfg, parts, r).await
}

/// Prints the evidence, exports and verifies the restatement's bundle, and reports both runs.
async fn finish(cfg: &JobConfig, parts: &Parts, r: RunReport) -> backfill_core::Result<JobOutcome> {
    report::evidence(&parts.control, &r.run_id).await?;
    let verification = if r.state == RunState::Draft {
        None
    } else {
        Some(export_and_verify(cfg, parts, &r.run_id).await?)
    };
    Ok(JobOutcome {
        history: parts.control.status(&HISTORY_RUN.into()).await?,
        restatement: r,
        verification,
    })
}

/// Writes the run's evidence bundle to `<data-dir>/<run>-evidence.json` and verifies it: offline
/// (manifest digest, plan, chunk evidence, ledger against the receipt), against the staged rows, and
/// against the rows readers see when the run is the accepted one.
pub async fn export_and_verify(
    cfg: &JobConfig,
    parts: &Parts,
    run_id: &RunId,
) -> backfill_core::Result<Verification> {
    let bundle = parts.control.export(run_id).await?;
    let path = cfg.data_dir.join(format!("{run_id}-evidence.json"));
    std::fs::write(&path, bundle.to_json_pretty()).map_err(|e| Error::Adapter {
        adapter: "sla-restatement",
        source: format!("writing {}: {e}", path.display()).into(),
    })?;
    let accepted = parts.control.store().accepted(TARGET).await?;
    let current: Option<&dyn TargetReader<CaseSlaMonth>> =
        if accepted.is_some_and(|p| p.run_id == *run_id) {
            Some(parts.publisher.as_ref())
        } else {
            None
        };
    let v = verify_rows(&bundle, Some(parts.sink.as_ref()), current).await?;
    report::verification(&path, &v);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_manifests_name_the_attached_validators_and_a_registered_gate() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("warehouse.db").display());
        let pool = SqlPool::connect(&url).await.unwrap();
        let sink = Arc::new(SqlSink::new(pool, TARGET).await.unwrap());
        let restated = calendar(CALENDAR_RESTATED).unwrap();
        let attached = restatement_validators(
            &sink,
            ActivePopulation::default(),
            restated.clone(),
            dir.path().join("diff.csv"),
        )
        .unwrap();
        let names: Vec<&str> = attached.iter().map(|v| v.name()).collect();
        assert_eq!(names, RESTATEMENT_CHECKS);
        assert_eq!([unique_ids().name()], HISTORY_CHECKS);
        // The gate holds other validators than the attached ones: nothing runs twice.
        let gate = regulatory_gate(&sink).unwrap();
        assert!(!gate.is_empty());
        assert!(gate.iter().all(|g| !names.contains(&g.name())));

        let plans = [
            history_manifest(&CaseSlaTransform::v2_4_1(restated.clone()), "s"),
            restatement_manifest(&CaseSlaTransform::v3_1_0(restated), "s"),
        ];
        let checks: [&[&str]; 2] = [&HISTORY_CHECKS, &RESTATEMENT_CHECKS];
        for (m, want) in plans.iter().zip(checks) {
            let plan = m.validation.clone().unwrap();
            assert_eq!(plan.checks, want, "{}", m.run_id);
            assert_eq!(plan.quality_gate.as_deref(), Some(QUALITY_GATE));
            assert_eq!(m.target.name, TARGET);
        }
    }
}
