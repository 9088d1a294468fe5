//! What an operator sees of a run, rebuilt from the store's typed records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Control;
use crate::digest::PartitionDigests;
use crate::error::Result;
use crate::evidence::EvidenceRecord;
use crate::ids::{ChunkId, RunId};
use crate::publish::PublishReceipt;
use crate::state::{RunState, Transition};
use crate::store::ChunkStatus;
use crate::validate::ValidationOutcome;

/// A chunk someone holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedChunk {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// The worker holding it.
    pub worker: String,
    /// Attempt number of the lease.
    pub attempt: u32,
    /// When the lease ends unless renewed.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The state of a run and what it has produced, rebuilt from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The run.
    pub run_id: RunId,
    /// Current state.
    pub state: RunState,
    /// Target name.
    pub target: String,
    /// Who asked for it.
    pub requested_by: String,
    /// Chunks in the plan.
    pub chunks_total: usize,
    /// Chunks done.
    pub chunks_done: usize,
    /// Chunks whose last attempt failed.
    pub chunks_failed: usize,
    /// Chunks leased now, with their workers.
    pub leased: Vec<LeasedChunk>,
    /// Milliseconds the staged chunks' attempts waited for each run-wide budget (a run held back
    /// by its rate limits shows it here).
    pub throttled_ms: std::collections::BTreeMap<String, u64>,
    /// Input records read by done chunks.
    pub input_records: u64,
    /// Output rows staged by done chunks.
    pub output_rows: u64,
    /// Per-partition digests from the ledger.
    pub digests: PartitionDigests,
    /// Latest outcome of every validator.
    pub validations: Vec<ValidationOutcome>,
    /// The publish receipt, once published.
    pub receipt: Option<PublishReceipt>,
    /// The last transitions, oldest first (at most ten).
    pub transitions: Vec<Transition>,
    /// First chunk claim.
    pub started_at: Option<DateTime<Utc>>,
    /// Last chunk finished.
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunReport {
    /// Output rows per second between the first claim and the last finished chunk.
    pub fn rows_per_second(&self) -> Option<f64> {
        let secs = (self.finished_at? - self.started_at?).num_milliseconds() as f64 / 1000.0;
        (secs > 0.0).then(|| self.output_rows as f64 / secs)
    }
}

impl Control {
    /// The run's state and results, from the store.
    pub async fn status(&self, run_id: &RunId) -> Result<RunReport> {
        Ok(self.status_and_chunks(run_id).await?.0)
    }

    /// [`status`](Self::status) and the ledger rows it was computed from, read once (for
    /// dashboards that also show every chunk).
    pub async fn status_and_chunks(
        &self,
        run_id: &RunId,
    ) -> Result<(RunReport, Vec<crate::store::ChunkRecord>)> {
        let record = self.run(run_id).await?;
        let chunks = self.store.chunks(run_id).await?;
        let evidence = self.store.evidence(run_id).await?;
        let transitions = self.store.transitions(run_id).await?;
        let mut digests = PartitionDigests::default();
        let (mut input, mut output, mut done, mut failed) = (0, 0, 0, 0);
        let mut leased = Vec::new();
        for c in &chunks {
            match c.status {
                ChunkStatus::Done => {
                    digests.merge(&c.digests);
                    input += c.input_count;
                    output += c.output_count;
                    done += 1;
                }
                ChunkStatus::Failed => failed += 1,
                ChunkStatus::Claimed => leased.push(LeasedChunk {
                    chunk_id: c.chunk_id.clone(),
                    worker: c.worker.clone().unwrap_or_default(),
                    attempt: c.attempts,
                    expires_at: c.lease_expires_at,
                }),
                ChunkStatus::Pending => {}
            }
        }
        let mut validations: Vec<ValidationOutcome> = Vec::new();
        let mut receipt = None;
        let mut throttled_ms = std::collections::BTreeMap::new();
        for e in evidence {
            match e.record {
                EvidenceRecord::ChunkStaged {
                    throttled_ms: waited,
                    ..
                } => {
                    for (budget, ms) in waited {
                        *throttled_ms.entry(budget).or_insert(0u64) += ms;
                    }
                }
                EvidenceRecord::Validation(o) => {
                    validations.retain(|v| v.validator != o.validator);
                    validations.push(o);
                }
                EvidenceRecord::Published { receipt: r, .. } => receipt = Some(r),
                _ => {}
            }
        }
        let skip = transitions.len().saturating_sub(10);
        let report = RunReport {
            run_id: run_id.clone(),
            state: record.state,
            target: record.target,
            requested_by: record.requested_by,
            chunks_total: chunks.len(),
            chunks_done: done,
            chunks_failed: failed,
            leased,
            throttled_ms,
            input_records: input,
            output_rows: output,
            digests,
            validations,
            receipt,
            transitions: transitions.into_iter().skip(skip).collect(),
            started_at: chunks.iter().filter_map(|c| c.started_at).min(),
            finished_at: chunks.iter().filter_map(|c| c.finished_at).max(),
        };
        Ok((report, chunks))
    }
}
