//! Run-wide ceilings: `safety.max_rows_expected` and the actual cost against
//! `safety.max_cost_usd`, held over every worker of the run on every machine.
//!
//! After each batch a worker records its chunk's counts so far in the store's tallies
//! ([`RunStore::tally`](crate::store::RunStore::tally): one count per chunk, replaced by a retried
//! attempt) and compares the run's totals with the ceilings, so a run stops within one batch per
//! worker of its ceiling however many workers share it. A store without tallies leaves the
//! per-process check of the batch path in charge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::estimate::CostMeter;
use crate::ids::ChunkId;
use crate::manifest::RunManifest;
use crate::store::{ChunkLease, RunStore};

/// Tally names.
const OUTPUT_ROWS: &str = "output_rows";
const INPUT_RECORDS: &str = "input_records";
const ESTIMATED_BYTES: &str = "estimated_bytes";

/// What a chunk attempt has counted so far.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counts {
    pub(super) input: u64,
    pub(super) output: u64,
}

/// A chunk and an attempt number.
type Attempt = (ChunkId, u32);

/// The output rows one process holds against `safety.max_rows_expected` after every batch (the
/// check that stands alone where the store keeps no tallies): the run's finished chunks, and each
/// running attempt's rows so far. An attempt that fails or is fenced off stops counting when it
/// ends, so a retried chunk counts once, not once per attempt.
#[derive(Debug)]
pub(super) struct LocalRows {
    /// Rows of finished chunks, and of each running attempt by chunk and attempt (two tasks of
    /// one process may run attempts of one chunk at once when a lease expired under the first).
    counts: Mutex<(u64, HashMap<Attempt, u64>)>,
}

impl LocalRows {
    /// Starts from the rows of the chunks the ledger holds as done.
    pub(super) fn new(done: u64) -> Self {
        Self {
            counts: Mutex::new((done, HashMap::new())),
        }
    }

    /// Adds `rows` to the running attempt `lease` holds; answers the process's total.
    pub(super) fn add(&self, lease: &ChunkLease, rows: u64) -> u64 {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.1.entry((lease.chunk_id.clone(), lease.attempt))
            .or_default() += rows;
        c.1.values().fold(c.0, |a, n| a.saturating_add(*n))
    }

    /// The attempt `lease` holds ended; `kept` rows of it count from now on (its output when the
    /// chunk was recorded as done, zero when the attempt failed or was fenced off).
    pub(super) fn end(&self, lease: &ChunkLease, kept: u64) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.1.remove(&(lease.chunk_id.clone(), lease.attempt));
        c.0 = c.0.saturating_add(kept);
    }
}

/// The run-wide check, switched off for good when the store keeps no tallies.
#[derive(Debug)]
pub(super) struct Ceilings {
    run_wide: AtomicBool,
}

impl Ceilings {
    pub(super) fn new() -> Self {
        Self {
            run_wide: AtomicBool::new(true),
        }
    }

    /// Records the chunk's counts and refuses when the run as a whole is over a ceiling
    /// ([`Error::LimitExceeded`] naming the run and the ceiling).
    pub(super) async fn hold(
        &self,
        store: &dyn RunStore,
        m: &RunManifest,
        cost: Option<&CostMeter>,
        lease: &ChunkLease,
        counts: Counts,
    ) -> Result<()> {
        let rows_max = m.safety.max_rows_expected;
        if (rows_max.is_none() && cost.is_none()) || !self.run_wide.load(Ordering::Relaxed) {
            return Ok(());
        }
        let run = &lease.run_id;
        let chunk = &lease.chunk_id;
        let result = async {
            if let Some(max) = rows_max {
                let total = store.tally(run, OUTPUT_ROWS, chunk, counts.output).await?;
                if total > max {
                    return Err(Error::LimitExceeded {
                        run_id: run.clone(),
                        limit: "safety.max_rows_expected",
                        value: total,
                        max,
                    });
                }
            }
            if let Some(cost) = cost {
                let records = store.tally(run, INPUT_RECORDS, chunk, counts.input).await?;
                let bytes = store
                    .tally(run, ESTIMATED_BYTES, chunk, cost.chunk_bytes(chunk))
                    .await?;
                cost.check_totals(run, records, bytes)?;
            }
            Ok(())
        }
        .await;
        match result {
            Err(e) if e.kind() == ErrorKind::NotSupported => {
                tracing::debug!(run_id = %run, "the run store keeps no tallies: ceilings hold per process");
                self.run_wide.store(false, Ordering::Relaxed);
                Ok(())
            }
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RunId;
    use chrono::{TimeZone, Utc};

    fn lease(attempt: u32) -> ChunkLease {
        ChunkLease {
            run_id: RunId::from("run"),
            chunk_id: ChunkId::from("c0"),
            index: 0,
            range: crate::manifest::InputRange::Dates {
                from: chrono::NaiveDate::MIN,
                to_exclusive: chrono::NaiveDate::MIN,
            },
            attempt,
            worker: "w".into(),
            expires_at: Utc.timestamp_opt(0, 0).single().unwrap_or_default(),
        }
    }

    #[test]
    fn two_attempts_of_one_chunk_count_apart() {
        let rows = LocalRows::new(100);
        assert_eq!(rows.add(&lease(1), 10), 110);
        // The lease expired under attempt 1; attempt 2 runs beside it in the same process.
        assert_eq!(rows.add(&lease(2), 5), 115);
        // Attempt 1 is fenced off: its rows stop counting, attempt 2's stay.
        rows.end(&lease(1), 0);
        assert_eq!(rows.add(&lease(2), 1), 106);
        rows.end(&lease(2), 6);
        assert_eq!(rows.add(&lease(3), 0), 106);
    }
}
