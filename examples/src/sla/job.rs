//! The main job: publish v2.4.1's history, then restate 2025 with v3.1.0 as a controlled change.
//!
//! Every step is idempotent: the job finds runs that already exist in the store and continues them
//! (a crashed run resumes at its first unfinished chunk; a published run is not published again).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use backfill_core::prelude::*;
use backfill_core::runner::{ProgressListener, RunEvent};
use backfill_core::validate::{BusinessDelta, UniqueKey};
use backfill_sql::{SqlCheck, SqlPool, SqlPublisher, SqlSink, SqlStore};
use chrono::{NaiveDate, Utc};

use super::calendar::{BusinessCalendar, CALENDAR_AS_RECORDED, CALENDAR_NAME, CALENDAR_RESTATED};
use super::checks::{ActivePopulation, DueOnBusinessDays, NoMissingActiveCases};
use super::diff::DiffAgainstAccepted;
use super::events::{generate, GeneratorConfig};
use super::report;
use super::source::{load, CaseEventSource};
use super::transform::{months, CaseSlaMonth, CaseSlaTransform, TRANSFORM_NAME};

/// The accepted-history run of v2.4.1.
pub const HISTORY_RUN: &str = "bf-2025-case-sla-v2-4-1";
/// The restatement run of v3.1.0.
pub const RESTATEMENT_RUN: &str = "bf-2026-07-04-case-sla-v3-001";
/// The data product (accepted pointers are kept per target name).
pub const TARGET: &str = "silver.case_sla_monthly";
/// The table readers query.
pub const TARGET_TABLE: &str = "silver_case_sla_monthly";
/// Who asks, who approves and who owns the data.
pub const REQUESTER: &str = "sla-platform-team";
/// The regulatory reporting owner: approves the manifest and reviews the business delta.
pub const OWNER: &str = "regulatory-reporting-owner";

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

/// The input range, in UTC event dates: December 2024 is warm-up for cases that cross into 2025, and
/// the first day of 2026 is read because the evening of 2025-12-31 in the Americas is already
/// 2026-01-01 in UTC.
pub fn input_range() -> InputRange {
    InputRange::Dates {
        from: day(2024, 12, 1),
        to_exclusive: day(2026, 1, 2),
    }
}

/// The publish range: business year 2025.
pub fn publish_range() -> InputRange {
    InputRange::Dates {
        from: day(2025, 1, 1),
        to_exclusive: day(2026, 1, 1),
    }
}

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
    /// Where the SQLite files and the review files (the diff CSV) live (created when missing).
    pub data_dir: PathBuf,
    /// A PostgreSQL or MariaDB/MySQL URL for store and warehouse instead of SQLite files.
    pub database_url: Option<String>,
    /// The owner's review decision.
    pub owner_decision: OwnerDecision,
    /// Exit the process after this many chunks of the restatement (to show resume).
    pub crash_after_chunks: Option<usize>,
    /// Roll the published restatement back to the history run, for this reason.
    pub rollback: Option<String>,
    /// The case generator.
    pub generator: GeneratorConfig,
}

/// What the job ended with.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// State of the history run.
    pub history: RunReport,
    /// State of the restatement run.
    pub restatement: RunReport,
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

/// The SQL parts both runs share.
struct Parts {
    store: Arc<SqlStore>,
    pool: SqlPool,
    sink: Arc<SqlSink<CaseSlaMonth>>,
    publisher: Arc<SqlPublisher<CaseSlaMonth>>,
}

impl Parts {
    fn runner(
        &self,
        transform: CaseSlaTransform,
        run: &'static str,
        label: &'static str,
        crash_after: Option<usize>,
    ) -> RunnerBuilder {
        let (_, to) = dates(&input_range());
        Runner::builder(
            Arc::<SqlStore>::clone(&self.store),
            Arc::new(CaseEventSource::new(self.pool.clone(), to)),
            Arc::new(transform),
            Arc::<SqlSink<CaseSlaMonth>>::clone(&self.sink),
            Arc::<SqlPublisher<CaseSlaMonth>>::clone(&self.publisher),
        )
        .options(RunnerOptions::worker("sla-job"))
        .progress(Arc::new(Progress {
            label,
            run,
            crash_after,
            staged: AtomicUsize::new(0),
        }))
        .validator(Arc::new(UniqueKey::new("id", |r: &CaseSlaMonth| {
            r.id.clone()
        })))
    }
}

type RunnerBuilder = backfill_core::runner::RunnerBuilder<CaseSlaTransform>;

fn dates(r: &InputRange) -> (NaiveDate, NaiveDate) {
    match r {
        InputRange::Dates { from, to_exclusive } => (*from, *to_exclusive),
        _ => (NaiveDate::MIN, NaiveDate::MIN),
    }
}

fn base_manifest(run_id: &str, kind: RunKind, t: &CaseSlaTransform, snapshot: &str) -> RunManifest {
    let mut m = RunManifest::new(run_id, kind, ExecutionMode::Backfill);
    m.requested_by = REQUESTER.into();
    m.source = SourceSpec {
        kind: "sql_table".into(),
        name: "bronze.case_events".into(),
        snapshot: Some(snapshot.into()),
        range: Some(input_range()),
        ..SourceSpec::default()
    };
    m.publish_range = Some(publish_range());
    m.transform = TransformSpec {
        name: TRANSFORM_NAME.into(),
        version: t.version().into(),
        config_hash: Some(t.fingerprint().config_hash),
        reference_data: vec![ReferenceData {
            name: CALENDAR_NAME.into(),
            version: t.calendar().version_name().into(),
            semantics: ReferenceSemantics::CorrectedTruth,
        }],
        ..TransformSpec::default()
    };
    let (from, to) = dates(&publish_range());
    m.target = TargetSpec {
        kind: "sql_table".into(),
        name: TARGET.into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: months(from, to).into_iter().map(Into::into).collect(),
        consumers: vec![
            "regulatory-sla-report".into(),
            "enforcement-dashboard".into(),
        ],
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(200_000);
    m.safety.max_cost_usd = Some(5);
    m.privacy = Some(PrivacySpec {
        purpose: "regulatory SLA reporting".into(),
        retention_checked: true,
        erasure_checked: true,
    });
    m
}

/// The manifest that published v2.4.1's 2025 output (the accepted history being corrected).
pub fn history_manifest(t: &CaseSlaTransform, snapshot: &str) -> RunManifest {
    let mut m = base_manifest(HISTORY_RUN, RunKind::Backfill, t, snapshot);
    m.reason = "Initial 2025 SLA facts for the regulatory report".into();
    m.transform.git_commit = Some("5e0c2a1".into());
    m.transform.reference_data[0].semantics = ReferenceSemantics::AsRecorded;
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..ValidationPlan::default()
    });
    m
}

/// The restatement manifest of §29: reason, pinned input with warm-up, v3.1.0, restated calendar,
/// replace the 2025 monthly partitions, no side effects, validation plan.
pub fn restatement_manifest(t: &CaseSlaTransform, snapshot: &str) -> RunManifest {
    let mut m = base_manifest(RESTATEMENT_RUN, RunKind::Restatement, t, snapshot);
    m.reason = "Fix SLA breach calculation after timezone bug in case-sla-transform 2.4.1: due dates were one day late for cases with evening events".into();
    m.transform.git_commit = Some("a41f9c3".into());
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        business_delta_max_pct: Some(2),
        quality_gate: Some("regulatory-sla".into()),
        checks: vec![
            "breach count by jurisdiction and month".into(),
            "business delta of breaches per month".into(),
            "no negative SLA durations".into(),
            "no missing active cases".into(),
            "due dates on business days of the restated calendar".into(),
            "diff of old against new for every changed row".into(),
        ],
        ..ValidationPlan::default()
    });
    m.labels.insert("ticket".into(), "REG-2291".into());
    m.labels
        .insert("restatement_reason".into(), "TIMEZONE_BUG_FIX".into());
    m
}

fn calendar(version: &str) -> backfill_core::Result<BusinessCalendar> {
    BusinessCalendar::version(version).ok_or_else(|| Error::Adapter {
        adapter: "jurisdiction_calendar",
        source: format!("unknown calendar version {version}").into(),
    })
}

async fn connect(cfg: &JobConfig) -> backfill_core::Result<Parts> {
    // The data directory holds the review files, and the SQLite databases unless a URL is given.
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| Error::Adapter {
        adapter: "sla-restatement",
        source: format!("creating {}: {e}", cfg.data_dir.display()).into(),
    })?;
    let (store_url, warehouse_url) = match &cfg.database_url {
        Some(url) => (url.clone(), url.clone()),
        None => {
            let f = |name: &str| format!("sqlite://{}", cfg.data_dir.join(name).display());
            (f("runs.db"), f("warehouse.db"))
        }
    };
    let store = Arc::new(SqlStore::connect(&store_url).await?);
    let pool = SqlPool::connect(&warehouse_url).await?;
    let sink = Arc::new(SqlSink::new(pool.clone(), TARGET_TABLE).await?);
    let publisher = Arc::new(SqlPublisher::new(pool.clone(), TARGET_TABLE).await?);
    Ok(Parts {
        store,
        pool,
        sink,
        publisher,
    })
}

/// Runs the whole job. Prints what it does; returns the final state of both runs.
pub async fn run(cfg: &JobConfig) -> backfill_core::Result<JobOutcome> {
    let parts = connect(cfg).await?;
    let where_ = cfg.database_url.as_ref().map_or_else(
        || cfg.data_dir.display().to_string(),
        |url| {
            // Never print credentials: scheme and host part only.
            let scheme = url.split("://").next().unwrap_or("database");
            let host = url.rsplit('@').next().unwrap_or("");
            format!(
                "{scheme}://{}",
                host.trim_start_matches(&format!("{scheme}://"))
            )
        },
    );
    say!("== SLA restatement (seed §29) on {where_}");

    // 0. The bronze events, generated deterministically and loaded once.
    let cases = generate(&cfg.generator);
    let snapshot = load(&parts.pool, &cases).await?;
    let events: usize = cases.iter().map(|c| c.events.len()).sum();
    say!(
        "bronze.case_events: {} cases, {events} events, snapshot {snapshot}",
        cases.len()
    );

    // 1. Accepted history: v2.4.1's 2025 output.
    let old = CaseSlaTransform::v2_4_1(calendar(CALENDAR_AS_RECORDED)?);
    let new = CaseSlaTransform::v3_1_0(calendar(CALENDAR_RESTATED)?);
    let hm = history_manifest(&old, &snapshot);
    let rm = restatement_manifest(&new, &snapshot);
    let history = parts.runner(old, HISTORY_RUN, "v2.4.1", None).build();
    let hid = hm.run_id.clone();
    let h = match history.store().run(&hid).await? {
        Some(r) if matches!(r.state, RunState::Published | RunState::Superseded) => {
            say!("\n1. history {hid} is already accepted ({})", r.state);
            history.status(&hid).await?
        }
        _ => {
            say!("\n1. publishing v2.4.1's 2025 output as accepted history ({hid})");
            let approved = hm.approve(OWNER, Utc::now())?;
            history.submit(&approved).await?;
            let r = history.run(&hid).await?;
            say!(
                "   {hid}: {} rows in {} partitions -> {}",
                r.output_rows,
                r.digests.0.len(),
                r.state
            );
            r
        }
    };

    // 2. The restatement manifest: checked and approved by the owner (not the requester).
    let rid = rm.run_id.clone();
    let (from, to) = dates(&publish_range());
    let population = ActivePopulation::of(&cases, from, to);
    let sink = Arc::clone(&parts.sink);
    let runner = parts
        .runner(new, RESTATEMENT_RUN, "v3.1.0", cfg.crash_after_chunks)
        .validator(Arc::new(BusinessDelta::new(
            "breaches",
            |r: &CaseSlaMonth| i64::from(r.breached_in_month),
        )))
        .validator(Arc::new(SqlCheck::range(
            &sink,
            "business_days_used",
            0.0,
            10_000.0,
        )?))
        .validator(Arc::new(SqlCheck::not_null(&sink, "opened_on")?))
        .validator(Arc::new(NoMissingActiveCases::new(population)))
        .validator(Arc::new(DueOnBusinessDays::new(calendar(
            CALENDAR_RESTATED,
        )?)))
        .validator(Arc::new(DiffAgainstAccepted::writing_csv(
            cfg.data_dir.join(format!("{RESTATEMENT_RUN}-diff.csv")),
        )))
        .build();
    let existing = runner.store().run(&rid).await?;
    if existing.is_none() {
        say!("\n2. restatement manifest {rid} (digest {})", rm.digest());
        report::manifest(&rm);
        let findings = rm.check();
        for f in &findings.0 {
            say!("   check: {f}");
        }
        let approved = rm.clone().approve(OWNER, Utc::now())?;
        say!("   approved by {OWNER}, bound to {}", approved.digest());
        runner.submit(&approved).await?;
    } else {
        let state = existing.map_or(RunState::Draft, |r| r.state);
        // The same manifest must still be what is stored (a changed one is refused here).
        runner
            .submit(&rm.clone().approve(OWNER, Utc::now())?)
            .await?;
        if matches!(
            state,
            RunState::Published | RunState::Superseded | RunState::RolledBack
        ) {
            // Published earlier: nothing is run or published again.
            let r = runner.status(&rid).await?;
            let at = r
                .receipt
                .as_ref()
                .map(|x| x.published_at.format(report::TIME).to_string());
            say!(
                "\n2. restatement {rid} is already {state} (published {}): nothing to run, nothing republished",
                at.unwrap_or_else(|| "-".into())
            );
            return conclude(cfg, &runner, &history, r).await;
        }
        say!("\n2. restatement {rid} exists ({state}): continuing it");
    }

    // 3. Run: chunks staged (resuming if interrupted), validated, then owner review if needed.
    say!(
        "\n3. running {rid}: input {} (December 2024 is warm-up), publish {}",
        input_range(),
        publish_range()
    );
    let mut r = match runner.run(&rid).await {
        Ok(r) => r,
        Err(e) => {
            // Show what failed before giving up: the owner needs the numbers, not only the error.
            report::validations(&runner.status(&rid).await?);
            return Err(e);
        }
    };
    report::validations(&r);
    if let Some(diff) = report::diff_of(&r) {
        report::diff_table(&diff);
    }
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
                return Ok(JobOutcome {
                    history: history.status(&hid).await?,
                    restatement: r,
                });
            }
            OwnerDecision::Accept | OwnerDecision::Reject => {
                let accept = cfg.owner_decision == OwnerDecision::Accept;
                let why = if accept {
                    "breach changes explained by the timezone fix and the restated BR-SP calendar; REG-2291"
                } else {
                    "rejected on review"
                };
                runner.review(&rid, accept, OWNER, why).await?;
                say!(
                    "   {OWNER}: {} ({why})",
                    if accept { "accepted" } else { "rejected" }
                );
                r = runner.run(&rid).await?;
            }
        }
    }

    // 5. Published: the pointer moved and v2.4.1's run is superseded.
    let h = history.status(&h.run_id).await?;
    say!("\n5. {rid} -> {}; {hid} -> {}", r.state, h.state);
    if let Some(receipt) = &r.receipt {
        say!(
            "   published {} rows into {} partitions of {TARGET_TABLE} at {}",
            receipt.rows,
            receipt.partitions.len(),
            receipt.published_at.format(report::TIME)
        );
    }
    conclude(cfg, &runner, &history, r).await
}

/// Rolls back when asked, prints the evidence and reports both runs.
async fn conclude(
    cfg: &JobConfig,
    runner: &Runner<CaseSlaTransform>,
    history: &Runner<CaseSlaTransform>,
    mut r: RunReport,
) -> backfill_core::Result<JobOutcome> {
    let hid = RunId::from(HISTORY_RUN);
    if let Some(reason) = &cfg.rollback {
        match r.state {
            RunState::Published => {
                let receipt = runner.rollback(TARGET, &hid, OWNER, reason).await?;
                r = runner.status(&r.run_id).await?;
                say!(
                    "\n6. rolled back by {OWNER} ({reason}): {} rows of {hid} restored in {} partitions; {} -> {}",
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
    report::evidence(runner.store().as_ref(), &r.run_id).await?;
    Ok(JobOutcome {
        history: history.status(&hid).await?,
        restatement: r,
    })
}
