//! The command line, declared with clap.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Backfills, replays and restatements as controlled production changes.
#[derive(Debug, Parser)]
#[command(name = "backfill", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// The run store: a SQLite file path or URL, `postgres://…`, `mysql://…`.
    #[arg(
        long,
        global = true,
        env = "BACKFILL_STORE",
        default_value = "backfill-runs.db"
    )]
    pub store: String,
    /// Where the pipeline's own targets and sources live (passed to its registry).
    #[arg(long, global = true, env = "BACKFILL_WAREHOUSE")]
    pub warehouse: Option<String>,
    /// Machine output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Logs as JSON lines on stderr (run_id, chunk_id, source_range, transform_version, target,
    /// processing_mode on every line).
    #[arg(long, global = true, env = "BACKFILL_JSON_LOGS")]
    pub json_logs: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manifests: a template, the checklist, the JSON Schema, the digest.
    #[command(subcommand)]
    Manifest(ManifestCmd),
    /// Stores a manifest as a draft run.
    Submit {
        /// The manifest (JSON, YAML or TOML).
        file: PathBuf,
    },
    /// Approves a draft run's manifest (by its digest); the requester cannot approve.
    Approve {
        /// The run.
        run: String,
        /// Who approves.
        #[arg(long = "as")]
        who: String,
    },
    /// An owner's decision on a run awaiting review.
    Review {
        /// The run.
        run: String,
        /// The decision.
        decision: Decision,
        /// Who decides.
        #[arg(long = "as")]
        who: String,
        /// Why.
        #[arg(long)]
        note: String,
    },
    /// Cancels a run.
    Cancel {
        /// The run.
        run: String,
        /// Who cancels.
        #[arg(long = "as", default_value = "operator")]
        who: String,
        /// Why.
        #[arg(long, default_value = "cancelled by an operator")]
        reason: String,
    },
    /// Publishes a validated (and, where asked, reviewed) run.
    Publish {
        /// The run.
        run: String,
        /// Who publishes.
        #[arg(long = "as", default_value = "operator")]
        who: String,
    },
    /// Rolls a published run back to the run it superseded.
    Rollback {
        /// The run.
        run: String,
        /// Why (kept in the evidence).
        #[arg(long)]
        reason: String,
        /// Who rolls back.
        #[arg(long = "as", default_value = "operator")]
        who: String,
    },
    /// Resolves a manifest's input without running it: chunks, ranges, coverage.
    Plan {
        /// The manifest.
        file: PathBuf,
        /// Expected throughput in input records per second, for the duration estimate.
        #[arg(long)]
        rate: Option<f64>,
        /// Cost in USD per million input records, for the cost estimate.
        #[arg(long)]
        cost_per_million: Option<f64>,
    },
    /// Estimates a manifest (a file) or a submitted run (its id) without running it: chunks, input
    /// records and bytes from the source, duration and cost from `safety.cost_model`, coverage.
    /// For a run the estimate is kept as evidence. Exits 1 on a coverage problem or an estimate
    /// over `safety.max_cost_usd`.
    Estimate {
        /// A manifest file, or the id of a submitted run.
        manifest_or_run: String,
        /// Who asks (kept with the run's evidence).
        #[arg(long = "as", default_value = "operator")]
        who: String,
    },
    /// Runs (or resumes) an approved run, with a progress bar; Ctrl-C stops it, `run` resumes.
    Run {
        /// The run.
        run: String,
        /// Serve Prometheus metrics here while the run goes.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
    },
    /// Lists runs.
    Runs(RunsArgs),
    /// One run's state, chunks, throughput and last transitions.
    Status {
        /// The run.
        run: String,
    },
    /// What the run changes, per partition, against what readers see now.
    Diff {
        /// The run.
        run: String,
        /// Writes the changed keys as CSV (`partition,key`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A run's evidence trail, or its export.
    Evidence(EvidenceArgs),
    /// Checks an exported evidence bundle offline, or `--against` the live target.
    Verify {
        /// The bundle.
        file: PathBuf,
        /// Also re-read the staged and visible rows (needs the target registered).
        #[arg(long)]
        against: bool,
    },
    /// Adds a note to a run's evidence: communication sent, post-run notes.
    Note {
        /// The run.
        run: String,
        /// Short name, such as `communication` or `post_run`.
        #[arg(long, default_value = "note")]
        name: String,
        /// The text.
        #[arg(long)]
        text: String,
        /// Who writes it.
        #[arg(long = "as", default_value = "operator")]
        who: String,
    },
    /// Serves a Prometheus endpoint over the run store until stopped: every run's counters from
    /// the ledger, its state, its chunks by status and one series per chunk, whoever runs them.
    ServeMetrics {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9464")]
        addr: SocketAddr,
        /// Seconds between two reads of the store.
        #[arg(long, default_value_t = 5.0)]
        interval: f64,
        /// Only runs created in the last HOURS.
        #[arg(long)]
        since_hours: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCmd {
    /// Prints a commented template (YAML).
    New {
        /// The run id to put in it.
        #[arg(long, default_value = "bf-2026-example")]
        run: String,
    },
    /// The checklist's findings, blocking ones first; exits 1 when the manifest is not approvable.
    Check {
        /// The manifest.
        file: PathBuf,
    },
    /// Prints the manifest JSON Schema.
    Schema,
    /// Prints the manifest's canonical digest.
    Digest {
        /// The manifest.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Decision {
    Accept,
    Reject,
}

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    /// Only runs in this state (`running`, `published`, …).
    #[arg(long)]
    pub state: Option<String>,
    /// Only runs of this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only runs requested by this person.
    #[arg(long)]
    pub requester: Option<String>,
    /// Only runs created in the last N hours.
    #[arg(long)]
    pub age_hours: Option<i64>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct EvidenceArgs {
    #[command(subcommand)]
    pub export: Option<EvidenceCmd>,
    /// The run (to print its trail).
    pub run: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EvidenceCmd {
    /// Writes the run's evidence bundle (manifest, approval, plan, ledger, validations, receipt,
    /// notes) as JSON.
    Export {
        /// The run.
        run: String,
        /// Where.
        #[arg(long)]
        out: PathBuf,
    },
}
