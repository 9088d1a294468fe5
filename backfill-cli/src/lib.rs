#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
//! `backfill`: the operator's tool over the runbook.
//!
//! Used two ways. As the generic binary `backfill` for everything that needs no transform
//! (manifests, submit, approve, review, cancel, runs, status, evidence, export, verify, notes,
//! metrics); and as a library a pipeline team calls from its own `main` after registering its jobs
//! and targets, which adds `plan`, `run`, `publish`, `rollback`, `diff` and `verify --against`:
//!
//! ```no_run
//! use backfill_cli::{Registry, Settings};
//!
//! fn main() -> std::process::ExitCode {
//!     backfill_cli::main(|settings: Settings| async move {
//!         // Connect to the warehouse named by `settings.warehouse`, build sources, sinks and
//!         // publishers, and register them.
//!         let _ = settings;
//!         Ok(Registry::new())
//!     })
//! }
//! ```
//!
//! Every command takes `--store URL` (env `BACKFILL_STORE`), prints for people by default and one
//! JSON document with `--json`, and exits non-zero with a message naming the run or field on bad
//! input.

mod args;
mod commands;
mod dashboard;
mod out;
mod progress;
mod registry;
mod telemetry;

use std::future::Future;
use std::process::ExitCode;

pub use registry::{
    ExecutorJob, Job, MeasureDiff, PartitionDiff, Registry, Settings, Target, TypedTarget,
};

/// Parses the command line, builds the registry with `setup`, runs the command; returns the exit
/// code (0 done, 1 refused or failed, 2 bad usage, 130 interrupted).
pub async fn run<F, Fut>(setup: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = backfill_core::Result<Registry>>,
{
    use clap::Parser;
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    telemetry::logs(cli.json_logs);
    let settings = Settings {
        store: store_url(&cli.store),
        warehouse: cli.warehouse.clone(),
    };
    let registry = match setup(settings.clone()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: setting up the pipeline's registry: {e}");
            return ExitCode::from(1);
        }
    };
    match commands::dispatch(&cli, &settings, &registry).await {
        Ok(code) => code,
        Err(e) => {
            if cli.json {
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            }
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// [`run`] on a fresh multi-threaded runtime: what a `main` calls.
pub fn main<F, Fut>(setup: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = backfill_core::Result<Registry>>,
{
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(setup)),
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// A bare path is a SQLite file.
fn store_url(s: &str) -> String {
    if s.contains("://") || s.starts_with("sqlite:") {
        s.to_owned()
    } else {
        format!("sqlite://{s}")
    }
}
