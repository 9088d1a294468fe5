//! Run-wide tallies: each chunk's latest count per tally, summed over the run.

use std::collections::BTreeMap;
use std::sync::Mutex;

use backfill_core::ids::{ChunkId, RunId};

use crate::dialect::Dialect;
use crate::error::{corrupt, db};
use crate::pool::{with_pool, SqlPool};

/// Records the chunk's count and answers the run's total, in one transaction.
pub(super) async fn tally(
    pool: &SqlPool,
    run_id: &RunId,
    name: &str,
    chunk_id: &ChunkId,
    value: u64,
) -> backfill_core::Result<u64> {
    let d = pool.dialect();
    let put = match d {
        Dialect::MySql => "INSERT INTO bf_run_tallies (run_id, name, chunk_id, value) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)",
        _ => "INSERT INTO bf_run_tallies (run_id, name, chunk_id, value) VALUES (?, ?, ?, ?) ON CONFLICT (run_id, name, chunk_id) DO UPDATE SET value = excluded.value",
    };
    let put = d.sql(put).into_owned();
    // SUM is a DECIMAL on MariaDB and a NUMERIC on PostgreSQL: cast back to a 64-bit integer.
    let sum = match d {
        Dialect::MySql => "SELECT CAST(COALESCE(SUM(value), 0) AS SIGNED) FROM bf_run_tallies WHERE run_id = ? AND name = ?",
        _ => "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM bf_run_tallies WHERE run_id = ? AND name = ?",
    };
    let sum = d.sql(sum).into_owned();
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    // On SQLite the write lock is taken at BEGIN, where the busy timeout waits for it.
    let begin = match d {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        _ => "BEGIN",
    };
    let total: i64 = with_pool!(pool, p => {
        let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
        let mut tx = conn.begin(Some(begin)).await.map_err(db)?;
        sqlx::query(&put)
            .bind(run_id.as_str())
            .bind(name)
            .bind(chunk_id.as_str())
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let total = sqlx::query_scalar(&sum)
            .bind(run_id.as_str())
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        total
    });
    Ok(total.max(0) as u64)
}

/// Tallies kept in the process (SQLite, for the reason budgets are: see [`SqlStore`](super::SqlStore)).
#[derive(Debug, Default)]
pub(super) struct Local(Mutex<BTreeMap<(RunId, String), BTreeMap<ChunkId, u64>>>);

impl Local {
    pub(super) fn tally(
        &self,
        run_id: &RunId,
        name: &str,
        chunk_id: &ChunkId,
        value: u64,
    ) -> backfill_core::Result<u64> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| corrupt("run tallies", "poisoned"))?;
        let chunks = m.entry((run_id.clone(), name.to_owned())).or_default();
        chunks.insert(chunk_id.clone(), value);
        Ok(chunks.values().fold(0u64, |a, v| a.saturating_add(*v)))
    }
}
