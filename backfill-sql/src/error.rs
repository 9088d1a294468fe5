//! The adapter's own errors, sorted into backfill-core's kinds.

use backfill_core::Error as CoreError;

pub(crate) const ADAPTER: &str = "sql";

/// Errors raised inside backfill-sql before they become [`backfill_core::Error`]s.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("invalid identifier `{ident}`: {reason}")]
    Identifier { ident: String, reason: &'static str },
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("row type {row}: {detail}")]
    Row { row: &'static str, detail: String },
    #[error(
        "unsupported database url `{0}` (expected postgres://, mysql://, mariadb:// or sqlite:)"
    )]
    Url(String),
}

/// Whether a database error is worth retrying: lost connections, pool timeouts, deadlocks,
/// serialization failures, lock timeouts and SQLite's busy/locked.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            matches!(
                code.as_deref(),
                // PostgreSQL: serialization failure, deadlock, lock not available, too many connections, admin shutdown.
                Some("40001" | "40P01" | "55P03" | "53300" | "57P01")
                // MySQL/MariaDB: deadlock, lock wait timeout (SQLSTATE 40001 / HY000 codes surface as these).
                | Some("1213" | "1205")
                // SQLite: busy, locked.
                | Some("5" | "6" | "517" | "262")
            ) || db.message().contains("Deadlock found")
                || db.message().contains("Lock wait timeout")
        }
        _ => false,
    }
}

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Sqlx(ref s) if is_transient(s) => Self::transient(ADAPTER, e),
            Error::Identifier { .. } | Error::Url(_) | Error::Row { .. } => {
                Self::adapter(ADAPTER, e)
            }
            other => Self::adapter(ADAPTER, other),
        }
    }
}

pub(crate) fn db(e: sqlx::Error) -> CoreError {
    Error::Sqlx(e).into()
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether `e` is what a `CREATE … IF NOT EXISTS` racing another session's creation of the same
/// object can answer: a unique violation in the catalog, or (PostgreSQL) "relation/object/schema
/// already exists" when the other session committed between the existence check and the insert.
pub(crate) fn is_concurrent_create(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || matches!(db.code().as_deref(), Some("42P07" | "42710" | "42P06"))
        }
        _ => false,
    }
}

pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> CoreError {
    Error::Corrupt {
        what,
        detail: detail.to_string(),
    }
    .into()
}
