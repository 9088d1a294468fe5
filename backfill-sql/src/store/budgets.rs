//! Run-wide budgets: one token bucket per run and budget, taken from atomically by every worker.

use std::time::Duration;

use backfill_core::budget::{BucketState, Budget};
use backfill_core::ids::RunId;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_micros, micros};
use crate::dialect::Dialect;
use crate::error::db;
use crate::pool::{with_pool, SqlPool};

/// Applies [`Budget::take`] to the stored bucket under a row lock (`BEGIN IMMEDIATE` on SQLite).
pub(super) async fn take(
    pool: &SqlPool,
    run_id: &RunId,
    budget: &Budget,
    amount: u64,
    now: DateTime<Utc>,
) -> backfill_core::Result<Duration> {
    let d = pool.dialect();
    // A new bucket starts full; creating it races harmlessly (the loser's insert is ignored).
    let create = match d {
        Dialect::MySql => "INSERT IGNORE INTO bf_run_budgets (run_id, name, millitokens, at_micros) VALUES (?, ?, ?, ?)",
        _ => "INSERT INTO bf_run_budgets (run_id, name, millitokens, at_micros) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    };
    let create = d.sql(create).into_owned();
    let (begin, lock) = match d {
        Dialect::Sqlite => ("BEGIN IMMEDIATE", ""),
        _ => ("BEGIN", " FOR UPDATE"),
    };
    let read = d
        .sql(&format!(
            "SELECT millitokens, at_micros FROM bf_run_budgets WHERE run_id = ? AND name = ?{lock}"
        ))
        .into_owned();
    let write = d
        .sql("UPDATE bf_run_budgets SET millitokens = ?, at_micros = ? WHERE run_id = ? AND name = ?")
        .into_owned();
    let full = (budget.burst * 1000.0) as i64;
    with_pool!(pool, p => {
        sqlx::query(&create)
            .bind(run_id.as_str())
            .bind(budget.name)
            .bind(full)
            .bind(micros(now))
            .execute(p)
            .await
            .map_err(db)?;
        let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
        let mut tx = conn.begin(Some(begin)).await.map_err(db)?;
        let row = sqlx::query(&read)
            .bind(run_id.as_str())
            .bind(budget.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let tokens: i64 = row.try_get("millitokens").map_err(db)?;
        let at: i64 = row.try_get("at_micros").map_err(db)?;
        // (A taker whose clock is behind the stored instant takes as of it: see `Budget::take`.)
        let state = BucketState {
            tokens: tokens as f64 / 1000.0,
            at: from_micros(at)?,
        };
        let (next, wait) = budget.take(Some(state), now, amount as f64);
        sqlx::query(&write)
            .bind((next.tokens * 1000.0).round() as i64)
            .bind(micros(next.at))
            .bind(run_id.as_str())
            .bind(budget.name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(wait)
    })
}

/// Budgets kept in the process (SQLite; see [`SqlStore`](super::SqlStore)).
#[derive(Debug, Default)]
pub(super) struct Local(
    std::sync::Mutex<std::collections::BTreeMap<(RunId, &'static str), BucketState>>,
);

impl Local {
    pub(super) fn take(
        &self,
        run_id: &RunId,
        budget: &Budget,
        amount: u64,
        now: DateTime<Utc>,
    ) -> backfill_core::Result<Duration> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| crate::error::corrupt("run budgets", "poisoned"))?;
        let key = (run_id.clone(), budget.name);
        let (next, wait) = budget.take(m.get(&key).copied(), now, amount as f64);
        m.insert(key, next);
        Ok(wait)
    }
}
