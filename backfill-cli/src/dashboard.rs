//! `serve-metrics`: the run store as a Prometheus dashboard of runs.
//!
//! A process that runs chunks reports its own counters (`run --metrics-addr`). This one reports
//! what the store knows of every run, whichever process or machine ran it: the §25 counters rebuilt
//! from the ledger, chunk durations, the run's state and its chunks by status, one series per
//! chunk, and the run's latest estimated cost from its evidence. It polls the store, so it can run
//! beside the workers for as long as a backfill lasts.

use std::collections::{HashMap, HashSet};

use backfill_core::control::{Control, RunReport};
use backfill_core::evidence::EvidenceRecord;
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::state::RunState;
use backfill_core::store::{ChunkStatus, RunFilter, RunRecord};
use backfill_core::telemetry as names;
use backfill_core::validate::Verdict;
use metrics::{counter, gauge, histogram};

/// The run's current state: 1 on the series of its state, 0 on the state it left.
pub(crate) const RUN_STATE: &str = "backfill_run_state";
/// The run's chunks by ledger status (`pending`, `leased`, `done`, `failed`).
pub(crate) const RUN_CHUNKS: &str = "backfill_run_chunks";
/// Rows a done chunk staged, one series per chunk (`chunk_id` label).
pub(crate) const CHUNK_OUTPUT_ROWS: &str = "backfill_chunk_output_rows";
/// Claims of a chunk so far, one series per chunk.
pub(crate) const CHUNK_ATTEMPTS: &str = "backfill_chunk_attempts";

/// Describes the dashboard's own gauges (the §25 names are described by the exporter's setup).
pub(crate) fn describe() {
    for (name, help) in [
        (RUN_STATE, "1 on the run's current state"),
        (RUN_CHUNKS, "chunks of the run by ledger status"),
        (CHUNK_OUTPUT_ROWS, "rows a done chunk staged"),
        (CHUNK_ATTEMPTS, "claims of a chunk so far"),
    ] {
        metrics::describe_gauge!(name, help);
    }
}

/// What was reported already, so states flip and chunk durations are observed once.
#[derive(Debug, Default)]
pub(crate) struct Dashboard {
    states: HashMap<RunId, RunState>,
    timed: HashSet<(RunId, ChunkId)>,
}

impl Dashboard {
    /// Reads the runs `filter` selects and updates every series; returns how many runs it saw.
    pub(crate) async fn refresh(
        &mut self,
        control: &Control,
        filter: &RunFilter,
    ) -> backfill_core::Result<usize> {
        let runs = control.runs(filter).await?;
        for run in &runs {
            // One read of the ledger for the run's counters and the per-chunk series.
            let (report, chunks) = control.status_and_chunks(&run.run_id).await?;
            let labels = labels(run);
            // The estimate is read again when the run moves (the executor estimates as it starts)
            // and while it has not started (an operator may estimate it at any time).
            let moved = self.states.get(&run.run_id) != Some(&run.state);
            self.state(run, &labels);
            if moved || matches!(run.state, RunState::Draft | RunState::Approved) {
                cost(control, &run.run_id, &labels).await?;
            }
            counters(&report, &labels);
            let by_status = |s: ChunkStatus| chunks.iter().filter(|c| c.status == s).count() as f64;
            for (status, n) in [
                ("pending", by_status(ChunkStatus::Pending)),
                ("leased", by_status(ChunkStatus::Claimed)),
                ("done", by_status(ChunkStatus::Done)),
                ("failed", by_status(ChunkStatus::Failed)),
            ] {
                gauge!(RUN_CHUNKS, &with(&labels, "status", status)).set(n);
            }
            for c in &chunks {
                let chunk = with(&labels, "chunk_id", c.chunk_id.as_str());
                gauge!(CHUNK_ATTEMPTS, &chunk).set(f64::from(c.attempts));
                if c.status != ChunkStatus::Done {
                    continue;
                }
                gauge!(CHUNK_OUTPUT_ROWS, &chunk).set(c.output_count as f64);
                if let (Some(from), Some(to)) = (c.started_at, c.finished_at) {
                    if self.timed.insert((run.run_id.clone(), c.chunk_id.clone())) {
                        let secs = (to - from).num_milliseconds().max(0) as f64 / 1000.0;
                        histogram!(names::CHUNK_DURATION_SECONDS, &labels).record(secs);
                    }
                }
            }
        }
        Ok(runs.len())
    }

    fn state(&mut self, run: &RunRecord, labels: &[(&'static str, String)]) {
        if let Some(old) = self.states.insert(run.run_id.clone(), run.state) {
            if old != run.state {
                gauge!(RUN_STATE, &with(labels, "state", old.as_str())).set(0.0);
            }
        }
        gauge!(RUN_STATE, &with(labels, "state", run.state.as_str())).set(1.0);
    }
}

/// The run's latest estimated cost ([`EvidenceRecord::Estimated`]) as `backfill_cost_estimate`.
async fn cost(
    control: &Control,
    run_id: &RunId,
    labels: &[(&'static str, String)],
) -> backfill_core::Result<()> {
    let evidence = control.store().evidence(run_id).await?;
    let latest = evidence.iter().rev().find_map(|e| match &e.record {
        EvidenceRecord::Estimated(est) => est.cost_usd,
        _ => None,
    });
    if let Some(usd) = latest {
        gauge!(names::COST_ESTIMATE, labels).set(usd);
    }
    Ok(())
}

/// The runner's labels, so a dashboard joins these series with a worker's own.
fn labels(run: &RunRecord) -> Vec<(&'static str, String)> {
    vec![
        ("run_id", run.run_id.to_string()),
        ("mode", run.mode.as_str().to_owned()),
        ("target", run.target.clone()),
    ]
}

fn with(
    labels: &[(&'static str, String)],
    k: &'static str,
    v: &str,
) -> Vec<(&'static str, String)> {
    let mut l = labels.to_vec();
    l.push((k, v.to_owned()));
    l
}

/// The §25 counters as the ledger and the evidence have them.
fn counters(r: &RunReport, labels: &[(&'static str, String)]) {
    counter!(names::INPUT_RECORDS_TOTAL, labels).absolute(r.input_records);
    counter!(names::OUTPUT_RECORDS_TOTAL, labels).absolute(r.output_rows);
    counter!(names::CHUNKS_COMPLETED_TOTAL, labels).absolute(r.chunks_done as u64);
    let failed = r
        .validations
        .iter()
        .filter(|v| v.verdict == Verdict::Fail)
        .count();
    counter!(names::VALIDATION_FAILURES_TOTAL, labels).absolute(failed as u64);
}
