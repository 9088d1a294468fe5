//! The main job: the regulatory SLA restatement, end to end on embedded defaults.
//!
//! `cargo run -p backfill-examples` creates `./sla-restatement-data` (SQLite run store and warehouse),
//! publishes v2.4.1's 2025 output as accepted history, then plans, runs, validates, reviews and
//! publishes the v3.1.0 restatement, prints its evidence and exports and verifies its evidence
//! bundle. Running it again is safe.

use std::path::PathBuf;
use std::process::ExitCode;

use backfill_core::prelude::RunState;
use backfill_examples::sla::events::GeneratorConfig;
use backfill_examples::sla::job::{self, JobConfig, OwnerDecision};
use clap::Parser;

/// Restate 2025 enforcement-case SLA facts after the timezone bug of case-sla-transform 2.4.1.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory for the SQLite run store and warehouse and the review files (created when missing).
    #[arg(
        long,
        env = "BACKFILL_DATA_DIR",
        default_value = "sla-restatement-data"
    )]
    data_dir: PathBuf,
    /// A PostgreSQL or MariaDB/MySQL URL to use instead of SQLite files (store and warehouse).
    #[arg(long, env = "BACKFILL_DATABASE_URL")]
    database_url: Option<String>,
    /// What the data owner decides when the run waits for review.
    #[arg(long, value_enum, default_value = "accept")]
    owner_decision: OwnerDecision,
    /// Submit the restatement manifest as a draft and stop: its owner approves it later (by running
    /// the job again, or with any tool over the control plane).
    #[arg(long)]
    submit_only: bool,
    /// After publishing, roll the restatement back to v2.4.1's history, recording this reason.
    #[arg(long, value_name = "REASON")]
    rollback: Option<String>,
    /// Also publish every changed case-month as a `CaseSlaBreachCorrected` event into the outbox
    /// table `silver.case_sla_corrections`, once, before the restated rows are published.
    #[arg(long)]
    correction_events: bool,
    /// Exit after this many restatement chunks (to show that the next invocation resumes).
    #[arg(long, env = "BACKFILL_SLA_CRASH_AFTER_CHUNKS", hide = true)]
    crash_after_chunks: Option<usize>,
    /// Seconds this worker's chunk leases last (a worker paused longer loses its chunks).
    #[arg(long, env = "BACKFILL_SLA_LEASE_SECS", hide = true)]
    lease_secs: Option<u64>,
    /// Generator seed (the same seed gives the same case events).
    #[arg(long, default_value_t = GeneratorConfig::default().seed)]
    seed: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = JobConfig {
        data_dir: args.data_dir,
        database_url: args.database_url,
        owner_decision: args.owner_decision,
        submit_only: args.submit_only,
        crash_after_chunks: args.crash_after_chunks,
        rollback: args.rollback,
        correction_events: args.correction_events,
        generator: GeneratorConfig {
            seed: args.seed,
            ..GeneratorConfig::default()
        },
        lease: args.lease_secs.map(std::time::Duration::from_secs),
    };
    // The job is safe to run again at any point: a transient failure outside the executor's own
    // retries (the database restarting under a control-plane step) runs it again, for a minute.
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(500);
    let result = loop {
        match job::run(&cfg).await {
            Err(e)
                if e.is_retryable() && started.elapsed() < std::time::Duration::from_secs(60) =>
            {
                eprintln!(
                    "transient failure, running the job again in {} ms: {e}",
                    pause.as_millis()
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            r => break r,
        }
    };
    match result {
        // The exported evidence does not match the ledger or the target: someone changed something.
        Ok(out) if out.verification.as_ref().is_some_and(|v| !v.passed()) => {
            eprintln!("the restatement's evidence bundle does not verify");
            ExitCode::from(4)
        }
        Ok(out) if out.restatement.state == RunState::Published => ExitCode::SUCCESS,
        // Rolled back by its owner: a resting state, not a failure of the job.
        Ok(out) if out.restatement.state == RunState::RolledBack => ExitCode::SUCCESS,
        Ok(out) if out.restatement.state == RunState::Draft && cfg.submit_only => ExitCode::SUCCESS,
        Ok(out)
            if out.restatement.state == RunState::AwaitingReview
                && cfg.owner_decision == OwnerDecision::Wait =>
        {
            ExitCode::SUCCESS
        }
        Ok(out) => {
            eprintln!("restatement ended in {}", out.restatement.state);
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
