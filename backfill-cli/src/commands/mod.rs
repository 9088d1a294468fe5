//! One function per command.

mod estimate;
mod lifecycle;
mod manifest;
mod show;
mod work;

use std::process::ExitCode;
use std::sync::Arc;

use backfill_core::control::Control;
use backfill_core::ids::RunId;
use backfill_sql::SqlStore;

use crate::args::{Cli, Command, EvidenceCmd};
use crate::registry::{Registry, Settings};

/// What a command failed with: a core error, or the tool's own message.
pub(crate) type CmdResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) async fn dispatch(cli: &Cli, settings: &Settings, reg: &Registry) -> CmdResult {
    let json = cli.json;
    match &cli.command {
        Command::Manifest(cmd) => manifest::run(cmd, json),
        Command::Plan {
            file,
            rate,
            cost_per_million,
        } => work::plan(reg, file, *rate, *cost_per_million, json).await,
        // A manifest file needs no store; a run's id does.
        Command::Estimate {
            manifest_or_run,
            who,
        } => {
            let file = std::path::Path::new(manifest_or_run);
            if file.is_file() {
                estimate::of_file(reg, file, json).await
            } else {
                let control = control(settings, reg).await?;
                estimate::of_run(&control, reg, manifest_or_run, who, json).await
            }
        }
        other => {
            let control = control(settings, reg).await?;
            match other {
                Command::Submit { file } => lifecycle::submit(&control, file, json).await,
                Command::Approve { run, who } => lifecycle::approve(&control, run, who, json).await,
                Command::Review {
                    run,
                    decision,
                    who,
                    note,
                } => lifecycle::review(&control, run, *decision, who, note, json).await,
                Command::Cancel { run, who, reason } => {
                    lifecycle::cancel(&control, run, who, reason, json).await
                }
                Command::Publish { run, who } => {
                    lifecycle::publish(&control, reg, run, who, json).await
                }
                Command::Rollback { run, reason, who } => {
                    lifecycle::rollback(&control, reg, run, reason, who, json).await
                }
                Command::Note {
                    run,
                    name,
                    text,
                    who,
                } => lifecycle::note(&control, run, name, text, who, json).await,
                Command::Run { run, metrics_addr } => {
                    work::run(&control, reg, run, *metrics_addr, json).await
                }
                Command::Runs(a) => show::runs(&control, a, json).await,
                Command::Status { run } => show::status(&control, run, json).await,
                Command::Diff { run, out } => {
                    show::diff(&control, reg, run, out.as_deref(), json).await
                }
                Command::Evidence(a) => match (&a.export, &a.run) {
                    (Some(EvidenceCmd::Export { run, out }), _) => {
                        show::export(&control, run, out, json).await
                    }
                    (None, Some(run)) => show::evidence(&control, run, json).await,
                    (None, None) => {
                        Err("evidence: name a run, or `evidence export RUN --out FILE`".into())
                    }
                },
                Command::Verify { file, against } => {
                    work::verify(&control, reg, file, *against, json).await
                }
                Command::ServeMetrics {
                    addr,
                    interval,
                    since_hours,
                } => work::serve_metrics(&control, *addr, *interval, *since_hours).await,
                Command::Manifest(_) | Command::Plan { .. } | Command::Estimate { .. } => {
                    Err("manifest, plan and estimate are dispatched before the store".into())
                }
            }
        }
    }
}

/// The control plane over the store, with every registered target.
async fn control(settings: &Settings, reg: &Registry) -> Result<Control, backfill_core::Error> {
    let store = Arc::new(SqlStore::connect(&settings.store).await?);
    reg.control(store)
}

/// The run, which must exist.
async fn known(control: &Control, run: &str) -> Result<RunId, backfill_core::Error> {
    let id = RunId::from(run);
    control.run(&id).await?;
    Ok(id)
}
