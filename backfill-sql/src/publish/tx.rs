//! Statements with bound values, and the one transaction that commits a publication or a rollback.

use backfill_core::ids::RunId;
use backfill_core::Error as CoreError;

use super::artifacts::Staged;
use crate::dialect::Dialect;
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
    /// The statement must write exactly this many rows; otherwise the publication is refused and
    /// nothing changes.
    Rows {
        /// Rows it must write.
        expected: u64,
        /// What they are, for the refusal.
        what: String,
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

    /// Marks the statement as writing exactly `expected` rows (see [`Check::Rows`]).
    pub(crate) fn rows(mut self, expected: u64, what: impl Into<String>) -> Self {
        self.check = Check::Rows {
            expected,
            what: what.into(),
        };
        self
    }

    /// Whether the statement can go in a simple-query batch: no bound values, nothing to check.
    fn batchable(&self) -> bool {
        self.args.is_empty() && self.check == Check::Any
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
///
/// `staged`, when given, must pass [`Staged::verify_counts`] before the commit: its count query
/// runs on a second connection while the statements run, when the pool has one idle (so the scan
/// of the staging table adds no time before the commit), or else on the transaction's connection
/// after the statements. The statements never write the staging table, so both see the same rows.
/// A spare connection is only taken if idle, never waited for: a transaction never holds one
/// connection while it waits for another.
///
/// On PostgreSQL consecutive statements without bound values or checks (DDL, `INSERT … SELECT`)
/// go to the server together as one simple-query batch, one round trip instead of two each (parse,
/// then execute); inside the transaction they still commit or roll back with the rest.
pub(crate) async fn commit(
    pool: &SqlPool,
    run_id: &RunId,
    stmts: &[Stmt],
    staged: Option<&Staged>,
) -> backfill_core::Result<Outcome> {
    let d = pool.dialect();
    let batch = d == Dialect::Postgres;
    let count = staged.and_then(|s| s.count_sql(d));
    with_pool!(pool, p => {
        let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
        let mut tx = conn.begin(None).await.map_err(db)?;
        // Taken after the transaction's own connection, and only if one is idle.
        let spare = count.as_ref().and_then(|_| p.try_acquire());
        let work = async {
            let mut i = 0;
            while i < stmts.len() {
                let s = &stmts[i];
                i += 1;
                if batch && s.batchable() {
                    let mut sql = s.sql.clone();
                    while let Some(next) = stmts.get(i).filter(|n| n.batchable()) {
                        sql.push_str(";\n");
                        sql.push_str(&next.sql);
                        i += 1;
                    }
                    // A plain string runs as a simple query (no parse round trip; several statements).
                    sqlx::Executor::execute(&mut *tx, sql.as_str()).await.map_err(db)?;
                    continue;
                }
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
                        return Ok(Some(Outcome::AlreadyRecorded))
                    }
                    (Err(e), Check::Cas { target, expected }) if is_unique_violation(&e) => {
                        return Err(moved(run_id, target, expected))
                    }
                    (Err(e), _) => return Err(db(e)),
                    (Ok(r), Check::Cas { target, expected }) if r.rows_affected() != 1 => {
                        return Err(moved(run_id, target, expected))
                    }
                    (Ok(r), Check::Rows { expected, what }) if r.rows_affected() != *expected => {
                        return Err(super::refuse(
                            run_id,
                            format!("{what}: {} rows, expected {expected}", r.rows_affected()),
                        ))
                    }
                    (Ok(_), _) => {}
                }
            }
            Ok::<_, CoreError>(None)
        };
        // Both run to completion (a query is never dropped half-way on a pooled connection).
        let (done, counted) = match (count.as_deref(), spare) {
            (Some(sql), Some(mut conn)) => {
                let counting = sqlx::query_as::<_, (String, i64)>(sql).fetch_all(&mut *conn);
                let (done, counts) = futures::join!(work, counting);
                (done, counts.ok())
            }
            _ => (work.await, None),
        };
        if let Some(outcome) = done? {
            return Ok(outcome);
        }
        if let (Some(staged), Some(sql)) = (staged, count.as_deref()) {
            // Counted on the transaction's connection when no spare one was idle, or when the
            // spare failed (try_acquire does not ping: one idle for long may have been closed).
            let counts = match counted {
                Some(counts) => counts,
                None => sqlx::query_as::<_, (String, i64)>(sql)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?,
            };
            staged.verify_counts(run_id, counts)?;
        }
        tx.commit().await.map_err(db)?;
    });
    Ok(Outcome::Committed)
}
