//! Fencing stale staging attempts ([`StagingSink`](backfill_core::sink::StagingSink) contract
//! clause 6).
//!
//! Each `(run, target, chunk)` has a row in `bf_stage_fences` holding the highest attempt that
//! staged it. The stage transaction locks that row **first** (`SELECT … FOR UPDATE` on PostgreSQL
//! and MySQL/MariaDB; on SQLite the transaction is `BEGIN IMMEDIATE`, so it holds the database's
//! write lock from its first statement), so concurrent attempts of one chunk serialize there. It then
//! refuses the attempt when
//! - the fence names a higher attempt (a successor already staged), or
//! - the run store's ledger row for the chunk exists in the same database (`bf_chunks`) and its
//!   current attempt is not this one, or the chunk is not `claimed` (a successor claimed it, or it is
//!   already done). That row is locked too, so no claim can move it while the attempt stages.
//!
//! Only then does it raise the fence to this attempt, replace the chunk's rows and commit. A refused
//! attempt changes nothing. The fence moves inside the staging transaction, so an attempt that fails
//! or is dropped leaves the fence where it was.

use backfill_core::ids::{ChunkId, RunId};
use backfill_core::Error as CoreError;

use crate::dialect::Dialect;
use crate::error::db;

/// One staging attempt, as the fence sees it.
pub(super) struct Fence<'a> {
    pub(super) run_id: &'a RunId,
    pub(super) target: &'a str,
    pub(super) chunk_id: &'a ChunkId,
    pub(super) attempt: u32,
}

impl Fence<'_> {
    fn refuse(&self, current: i64) -> CoreError {
        CoreError::Fenced {
            run_id: self.run_id.clone(),
            chunk_id: self.chunk_id.clone(),
            attempt: self.attempt,
            current: u32::try_from(current).unwrap_or(u32::MAX),
        }
    }

    /// Creates the fence row at attempt 0 if it is missing. Runs on its own (outside the staging
    /// transaction) on PostgreSQL and MySQL, so the transaction only ever locks an existing row (on
    /// MySQL an `INSERT IGNORE` inside it would take a shared lock that two attempts could not both
    /// upgrade); on SQLite it is the transaction's first statement.
    pub(super) fn ensure_sql(d: Dialect) -> String {
        let verb = match d {
            Dialect::Postgres => "INSERT",
            Dialect::MySql => "INSERT IGNORE",
            Dialect::Sqlite => "INSERT OR IGNORE",
        };
        let tail = if d == Dialect::Postgres {
            " ON CONFLICT DO NOTHING"
        } else {
            ""
        };
        d.sql(&format!(
            "{verb} INTO bf_stage_fences (run_id, target, chunk_id, attempt) VALUES (?, ?, ?, 0){tail}"
        ))
        .into_owned()
    }
}

/// The row lock clause of a dialect (SQLite's transaction already holds the write lock).
fn lock(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "",
        _ => " FOR UPDATE",
    }
}

/// `check_<engine>(conn, fence)`: locks the fence and the ledger row, refuses a stale attempt with
/// [`CoreError::Fenced`], and raises the fence. Run first in the staging transaction.
macro_rules! check_fn {
    ($name:ident, $conn:ty, $dialect:expr) => {
        pub(super) async fn $name(conn: &mut $conn, f: &Fence<'_>) -> backfill_core::Result<()> {
            let d: Dialect = $dialect;
            let lock = lock(d);
            if d == Dialect::Sqlite {
                sqlx::query(&Fence::ensure_sql(d))
                    .bind(f.run_id.as_str())
                    .bind(f.target)
                    .bind(f.chunk_id.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
            }
            let fenced: i64 = sqlx::query_scalar(&d.sql(&format!(
                "SELECT attempt FROM bf_stage_fences WHERE run_id = ? AND target = ? AND chunk_id = ?{lock}"
            )))
            .bind(f.run_id.as_str())
            .bind(f.target)
            .bind(f.chunk_id.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
            let attempt = i64::from(f.attempt);
            if fenced > attempt {
                return Err(f.refuse(fenced));
            }
            let ledger: Option<(String, i64)> = sqlx::query_as(&d.sql(&format!(
                "SELECT status, attempts FROM bf_chunks WHERE run_id = ? AND chunk_id = ?{lock}"
            )))
            .bind(f.run_id.as_str())
            .bind(f.chunk_id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
            if let Some((status, attempts)) = ledger {
                if attempts != attempt || status != "claimed" {
                    return Err(f.refuse(attempts));
                }
            }
            if fenced < attempt {
                sqlx::query(&d.sql(
                    "UPDATE bf_stage_fences SET attempt = ? WHERE run_id = ? AND target = ? AND chunk_id = ? AND attempt <= ?",
                ))
                .bind(attempt)
                .bind(f.run_id.as_str())
                .bind(f.target)
                .bind(f.chunk_id.as_str())
                .bind(attempt)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
            Ok(())
        }
    };
}

check_fn!(check_postgres, sqlx::PgConnection, Dialect::Postgres);
check_fn!(check_mysql, sqlx::MySqlConnection, Dialect::MySql);
check_fn!(check_sqlite, sqlx::SqliteConnection, Dialect::Sqlite);
