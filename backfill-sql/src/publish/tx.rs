//! Statements with bound values, and the one transaction that commits a publication or a rollback.

use backfill_core::ids::RunId;
use backfill_core::Error as CoreError;

use crate::error::{db, is_unique_violation};
use crate::pool::{with_pool, SqlPool};

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    /// Text.
    Text(String),
    /// A 64-bit integer (timestamps in microseconds).
    Int(i64),
    /// SQL NULL (of a text column).
    Null,
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<Option<&str>> for Arg {
    fn from(s: Option<&str>) -> Self {
        s.map_or(Self::Null, Self::from)
    }
}

/// How a statement's outcome is judged inside the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Any outcome is fine.
    Any,
    /// The statement records the publication or rollback under its primary key: a duplicate key
    /// means another call recorded it first, and the whole transaction is abandoned.
    Claim,
    /// A compare-and-set of the target's pointer: it must change exactly one row; no row (or a
    /// duplicate key on insert) means another writer moved the pointer first.
    Cas {
        /// The pointer's target.
        target: String,
        /// The run the pointer was expected to name.
        expected: String,
    },
}

/// One statement, its bound values and how its outcome is checked.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub(crate) sql: String,
    pub(crate) args: Vec<Arg>,
    pub(crate) check: Check,
}

impl Stmt {
    /// A statement with bound values.
    pub(crate) fn new(sql: impl Into<String>, args: Vec<Arg>) -> Self {
        Self {
            sql: sql.into(),
            args,
            check: Check::Any,
        }
    }

    /// A statement without bound values (DDL).
    pub(crate) fn plain(sql: impl Into<String>) -> Self {
        Self::new(sql, Vec::new())
    }

    /// Marks the statement as the transaction's claim (see [`Check::Claim`]).
    pub(crate) fn claim(mut self) -> Self {
        self.check = Check::Claim;
        self
    }

    /// Marks the statement as a compare-and-set (see [`Check::Cas`]).
    pub(crate) fn cas(mut self, target: &str, expected: Option<&RunId>) -> Self {
        self.check = Check::Cas {
            target: target.to_owned(),
            expected: expected.map_or_else(|| "no run".to_owned(), ToString::to_string),
        };
        self
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every statement ran and the transaction committed.
    Committed,
    /// The claim was already recorded by another call; nothing changed.
    AlreadyRecorded,
}

fn moved(run_id: &RunId, target: &str, expected: &str) -> CoreError {
    CoreError::Conflict {
        run_id: run_id.clone(),
        what: format!("pointer of target {target}"),
        expected: expected.to_owned(),
        found: "another run (moved concurrently)".to_owned(),
    }
}

/// Runs `stmts` in one transaction and commits it, unless a [`Check`] fails (then nothing changes).
pub(crate) async fn commit(
    pool: &SqlPool,
    run_id: &RunId,
    stmts: &[Stmt],
) -> backfill_core::Result<Outcome> {
    let d = pool.dialect();
    with_pool!(pool, p => {
        let mut tx = p.begin().await.map_err(db)?;
        for s in stmts {
            let sql = d.sql(&s.sql);
            let mut q = sqlx::query(&sql);
            for a in &s.args {
                q = match a {
                    Arg::Text(t) => q.bind(t.as_str()),
                    Arg::Int(i) => q.bind(*i),
                    Arg::Null => q.bind(None::<String>),
                };
            }
            match (q.execute(&mut *tx).await, &s.check) {
                (Err(e), Check::Claim) if is_unique_violation(&e) => {
                    return Ok(Outcome::AlreadyRecorded)
                }
                (Err(e), Check::Cas { target, expected }) if is_unique_violation(&e) => {
                    return Err(moved(run_id, target, expected))
                }
                (Err(e), _) => return Err(db(e)),
                (Ok(r), Check::Cas { target, expected }) if r.rows_affected() != 1 => {
                    return Err(moved(run_id, target, expected))
                }
                (Ok(_), _) => {}
            }
        }
        tx.commit().await.map_err(db)?;
    });
    Ok(Outcome::Committed)
}
