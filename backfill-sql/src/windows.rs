//! Target windows in the run store's database (`bf_live_windows`): the [`TargetWindows`] registry
//! for backfills that freeze their window against live writers (seed §12.1).
//!
//! A live writer whose data lives in the same database admits each write inside its own
//! transaction ([`SqlWindows::admit_postgres`], [`admit_mysql`](SqlWindows::admit_mysql),
//! [`admit_sqlite`](SqlWindows::admit_sqlite)): the admission updates the partition's row, so a
//! freeze (which locks the same rows) waits for the writes under way, and a write that has not
//! committed when the freeze does is refused. A writer elsewhere calls
//! [`TargetWindows::admit`] just before its write (a narrower guarantee: a write admitted just
//! before a freeze may commit just after it; publication still sees it, as the counter moved).

use std::collections::BTreeMap;

use async_trait::async_trait;
use backfill_core::ids::RunId;
use backfill_core::live::{TargetWindows, WindowState};
use backfill_core::Error as CoreError;
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::dialect::Dialect;
use crate::error::db;
use crate::pool::{with_pool, SqlPool};
use crate::store::{from_micros, micros};

/// The registry of target windows in a migrated run store (see [`SqlStore::windows`](crate::SqlStore::windows)).
#[derive(Debug, Clone)]
pub struct SqlWindows {
    pool: SqlPool,
}

/// Sorted, without repeats: every transaction locks partitions in the same order (no deadlock).
fn sorted(partitions: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = partitions.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn frozen(target: &str, partition: &str, by: String) -> CoreError {
    CoreError::WindowFrozen {
        run_id: RunId::new(by),
        target: target.into(),
        partition: partition.into(),
    }
}

fn by_known(holder: &Option<String>) -> bool {
    holder.as_deref().is_some_and(|h| !h.is_empty())
}

/// The statements of one admission, in the dialect: create the row, count the write unless frozen,
/// and name the holder.
struct AdmitSql {
    create: String,
    count: String,
    holder: String,
}

impl AdmitSql {
    fn new(d: Dialect) -> Self {
        Self {
            create: d.sql(create_row(d)).into_owned(),
            count: d
                .sql("UPDATE bf_live_windows SET writes = writes + 1, last_writer = ?, last_write_micros = ? WHERE target = ? AND part = ? AND frozen_by IS NULL")
                .into_owned(),
            holder: d
                .sql("SELECT frozen_by FROM bf_live_windows WHERE target = ? AND part = ?")
                .into_owned(),
        }
    }
}

fn create_row(d: Dialect) -> &'static str {
    match d {
        Dialect::MySql => "INSERT IGNORE INTO bf_live_windows (target, part, writes) VALUES (?, ?, 0)",
        _ => "INSERT INTO bf_live_windows (target, part, writes) VALUES (?, ?, 0) ON CONFLICT DO NOTHING",
    }
}

/// One admission on an open connection (the caller's transaction): counts a write into every
/// partition, or answers the first frozen one (the caller rolls back).
macro_rules! admit_on {
    ($conn:expr, $d:expr, $target:expr, $partitions:expr, $writer:expr, $now:expr) => {{
        let sql = AdmitSql::new($d);
        let mut result = Ok(());
        for p in sorted($partitions) {
            sqlx::query(&sql.create)
                .bind($target)
                .bind(p)
                .execute(&mut *$conn)
                .await
                .map_err(db)?;
            // A thaw committing between the update and the read of the holder leaves no holder to
            // name: the write then tries again (a few times; then it is refused unnamed).
            let mut holder = None;
            for _ in 0..3 {
                let counted = sqlx::query(&sql.count)
                    .bind($writer)
                    .bind(micros($now))
                    .bind($target)
                    .bind(p)
                    .execute(&mut *$conn)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if counted > 0 {
                    holder = None;
                    break;
                }
                let by: Option<String> = sqlx::query_scalar(&sql.holder)
                    .bind($target)
                    .bind(p)
                    .fetch_one(&mut *$conn)
                    .await
                    .map_err(db)?;
                holder = Some(by.unwrap_or_default());
                if by_known(&holder) {
                    break;
                }
            }
            if let Some(by) = holder {
                result = Err(frozen($target, p, by));
                break;
            }
        }
        result
    }};
}

impl SqlWindows {
    /// The registry on a store's pool (the store's migrations create its table).
    pub fn new(pool: SqlPool) -> Self {
        Self { pool }
    }

    /// Admits one live write into `partitions` of `target` inside the writer's own PostgreSQL
    /// transaction, before or after its write in the same transaction. On
    /// [`Error::WindowFrozen`](CoreError::WindowFrozen) the writer must roll its transaction back
    /// (its write would land in a frozen window); a write admitted here cannot commit after a
    /// freeze of its partition has.
    pub async fn admit_postgres(
        conn: &mut sqlx::PgConnection,
        target: &str,
        partitions: &[String],
        writer: &str,
        now: DateTime<Utc>,
    ) -> backfill_core::Result<()> {
        admit_on!(conn, Dialect::Postgres, target, partitions, writer, now)
    }

    /// [`admit_postgres`](Self::admit_postgres) on MySQL/MariaDB (InnoDB).
    pub async fn admit_mysql(
        conn: &mut sqlx::MySqlConnection,
        target: &str,
        partitions: &[String],
        writer: &str,
        now: DateTime<Utc>,
    ) -> backfill_core::Result<()> {
        admit_on!(conn, Dialect::MySql, target, partitions, writer, now)
    }

    /// [`admit_postgres`](Self::admit_postgres) on SQLite (open the writer's transaction with
    /// `BEGIN IMMEDIATE`).
    pub async fn admit_sqlite(
        conn: &mut sqlx::SqliteConnection,
        target: &str,
        partitions: &[String],
        writer: &str,
        now: DateTime<Utc>,
    ) -> backfill_core::Result<()> {
        admit_on!(conn, Dialect::Sqlite, target, partitions, writer, now)
    }
}

#[async_trait]
impl TargetWindows for SqlWindows {
    async fn freeze(
        &self,
        run_id: &RunId,
        target: &str,
        partitions: &[String],
        now: DateTime<Utc>,
    ) -> backfill_core::Result<BTreeMap<String, u64>> {
        let d = self.pool.dialect();
        let create = d.sql(create_row(d)).into_owned();
        let (begin, lock) = match d {
            Dialect::Sqlite => ("BEGIN IMMEDIATE", ""),
            _ => ("BEGIN", " FOR UPDATE"),
        };
        let read = d
            .sql(&format!(
                "SELECT frozen_by, writes FROM bf_live_windows WHERE target = ? AND part = ?{lock}"
            ))
            .into_owned();
        let hold = d
            .sql("UPDATE bf_live_windows SET frozen_by = ?, frozen_at_micros = ? WHERE target = ? AND part = ?")
            .into_owned();
        with_pool!(&self.pool, p => {
            let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
            let mut tx = conn.begin(Some(begin)).await.map_err(db)?;
            let mut marks = BTreeMap::new();
            for part in sorted(partitions) {
                sqlx::query(&create).bind(target).bind(part).execute(&mut *tx).await.map_err(db)?;
                // Waits for live transactions that admitted a write into the partition.
                let row = sqlx::query(&read).bind(target).bind(part).fetch_one(&mut *tx).await.map_err(db)?;
                let by: Option<String> = row.try_get("frozen_by").map_err(db)?;
                if let Some(by) = by.filter(|b| b != run_id.as_str()) {
                    return Err(frozen(target, part, by));
                }
                let writes: i64 = row.try_get("writes").map_err(db)?;
                marks.insert(part.to_owned(), writes.max(0) as u64);
                sqlx::query(&hold)
                    .bind(run_id.as_str())
                    .bind(micros(now))
                    .bind(target)
                    .bind(part)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            Ok(marks)
        })
    }

    async fn thaw(&self, run_id: &RunId, target: &str) -> backfill_core::Result<()> {
        let sql = self.pool.dialect().sql("UPDATE bf_live_windows SET frozen_by = NULL, frozen_at_micros = NULL WHERE target = ? AND frozen_by = ?").into_owned();
        with_pool!(&self.pool, p => {
            sqlx::query(&sql).bind(target).bind(run_id.as_str()).execute(p).await.map_err(db)?;
            Ok(())
        })
    }

    async fn admit(
        &self,
        target: &str,
        partitions: &[String],
        writer: &str,
        now: DateTime<Utc>,
    ) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        let begin = if d == Dialect::Sqlite {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        with_pool!(&self.pool, p => {
            let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
            let mut tx = conn.begin(Some(begin)).await.map_err(db)?;
            let admitted = admit_on!(tx, d, target, partitions, writer, now);
            if admitted.is_ok() {
                tx.commit().await.map_err(db)?;
            }
            admitted
        })
    }

    async fn windows(&self, target: &str) -> backfill_core::Result<Vec<WindowState>> {
        let sql = self.pool.dialect().sql("SELECT part, frozen_by, writes, last_writer, last_write_micros FROM bf_live_windows WHERE target = ? ORDER BY part").into_owned();
        let rows = with_pool!(&self.pool, p => {
            let rows = sqlx::query(&sql).bind(target).fetch_all(p).await.map_err(db)?;
            rows.iter().map(|r| {
                let at: Option<i64> = r.try_get("last_write_micros").map_err(db)?;
                let writes: i64 = r.try_get("writes").map_err(db)?;
                Ok(WindowState {
                    target: target.to_owned(),
                    partition: r.try_get("part").map_err(db)?,
                    frozen_by: r.try_get::<Option<String>, _>("frozen_by").map_err(db)?.map(RunId::new),
                    writes: writes.max(0) as u64,
                    last_writer: r.try_get("last_writer").map_err(db)?,
                    last_write_at: at.map(from_micros).transpose()?,
                })
            }).collect::<backfill_core::Result<Vec<_>>>()?
        });
        Ok(rows)
    }
}
