//! Leases a starting process gives back before it claims.
//!
//! Claims never take an unexpired lease back (store contract, clause 11), so the run-wide
//! `max_chunks_in_parallel` holds even when processes share a worker id. What a process may take
//! back at once is a lease it held before it restarted: the runner gives those back here, once,
//! when it starts a run, so a restart does not wait for its predecessor's leases to expire.
//! A live process sharing the id loses the attempt it is working on (fenced off, its work void)
//! and claims again within the limit: one wasted attempt per start, never a lost or doubled chunk.

use chrono::{DateTime, Utc};

use crate::store::{ChunkRecord, RunStore};
use crate::{ErrorKind, Result};

/// Gives back every unexpired lease in `chunks` held under `worker_id` (any of its local workers,
/// `{worker_id}/{n}`) with `fail_chunk`; returns how many. A lease that moved on meanwhile (its
/// holder finished or another worker claimed it) is left alone.
pub(super) async fn give_back_own(
    store: &dyn RunStore,
    chunks: &[ChunkRecord],
    worker_id: &str,
    now: DateTime<Utc>,
) -> Result<usize> {
    let prefix = format!("{worker_id}/");
    let mut given = 0;
    for lease in chunks.iter().filter_map(ChunkRecord::current_lease) {
        if !lease.worker.starts_with(&prefix) || lease.expires_at <= now {
            continue;
        }
        let why = format!("lease given back: worker {worker_id} started again");
        match store.fail_chunk(&lease, &why, now).await {
            Ok(()) => {
                tracing::info!(run_id = %lease.run_id, chunk_id = %lease.chunk_id, attempt = lease.attempt, worker = %lease.worker, "gave back a lease held before this process started");
                given += 1;
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(e),
        }
    }
    Ok(given)
}
