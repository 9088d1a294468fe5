//! Transactions a cancelled future cannot leave open.
//!
//! sqlx 0.8.6 counts a transaction as begun only once the server has answered its `BEGIN`. A future
//! dropped between the two (a `select!` whose other branch won, a timeout, an aborted task) leaves
//! the server's session inside a transaction that nothing will end, and the pool hands the
//! connection to the next borrower. On MariaDB that borrower's plain reads then see the snapshot of
//! that moment and its writes stay uncommitted (invisible, their row locks held) until a later
//! `BEGIN` on the connection commits them; on PostgreSQL they join the stray transaction and are
//! lost if it is rolled back (sqlx issues 2054, 4385 and 4393). The runner drops a chunk's staging
//! when its lease is lost (a worker paused past its lease), at whatever statement it is on; the
//! fault campaign then saw a paused worker verify its publication and read every other partition
//! as it was before (two connections taking turns, one of them inside such a transaction).
//!
//! SQLite's begin has the same hole one step later. sqlx's worker thread rolls back a `BEGIN` whose
//! answer nobody takes, but after a custom statement (`BEGIN IMMEDIATE`, which takes the database's
//! write lock first) sqlx awaits the connection's lock once more to check that a transaction began.
//! A future dropped there leaves a pooled connection inside a transaction that holds the write
//! lock: every other connection waits out its busy timeout and fails with "database is locked"
//! until this one is closed (the signature of two SQLite trials of the fault campaign after a pause).
//!
//! [`TxConn`] holds the pooled connection for one transaction. Dropped while a `BEGIN` is in flight
//! (or while it holds session state, see [`TxConn::session`]), it closes a PostgreSQL or MariaDB
//! connection instead of returning it: the server ends the session and rolls its transaction back.
//! A SQLite connection is rolled back instead: there sqlx's transaction depth is kept by the worker
//! thread, so it says whether a transaction began, and the worker rolls back only while the depth
//! is above zero, so a rollback it already did itself is not repeated (closing it instead would
//! destroy an in-memory database, whose only connection it is). Once begun, a transaction is sqlx's
//! to end: dropping it queues a `ROLLBACK` that is sent before the connection is used again.
//!
//! Every transaction of this crate begins through [`TxConn`]; `clippy.toml` disallows sqlx's own
//! `begin` and `begin_with` everywhere else in the workspace.

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, Transaction, TransactionManager};

/// A pooled connection for one transaction that never goes back to the pool inside a transaction
/// nobody can end: dropped while its `BEGIN` is in flight or while it holds session state, a
/// PostgreSQL or MariaDB connection is closed, a SQLite one rolled back.
///
/// ```no_run
/// # async fn bump(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// use backfill_sql::TxConn;
///
/// let mut conn = TxConn::acquire(&pool).await?;
/// let mut tx = conn.begin(None).await?;
/// sqlx::query("UPDATE counters SET n = n + 1").execute(&mut *tx).await?;
/// tx.commit().await?;
/// # Ok(())
/// # }
/// ```
pub struct TxConn<DB: Database> {
    conn: PoolConnection<DB>,
    /// A `BEGIN` is in flight, or session state is held: dropped now, the connection is closed.
    unsettled: bool,
}

impl<DB: Database> TxConn<DB> {
    /// A connection from the pool (waiting as the pool's acquire does).
    pub async fn acquire(pool: &Pool<DB>) -> Result<Self, sqlx::Error> {
        Ok(Self {
            conn: pool.acquire().await?,
            unsettled: false,
        })
    }

    /// Begins a transaction with `statement` (for example `BEGIN IMMEDIATE` on SQLite) or sqlx's
    /// own `BEGIN`. Cancelled (or failed) before it returned, the connection is closed (PostgreSQL,
    /// MariaDB) or rolled back (SQLite) when this value is dropped; begun, the transaction is
    /// sqlx's to end.
    #[allow(clippy::disallowed_methods)] // the one place sqlx's begin is called
    pub async fn begin(
        &mut self,
        statement: Option<&'static str>,
    ) -> Result<Transaction<'_, DB>, sqlx::Error> {
        let held = self.unsettled;
        self.unsettled = true;
        let tx = match statement {
            Some(s) => sqlx::Connection::begin_with(&mut *self.conn, s).await?,
            None => sqlx::Connection::begin(&mut *self.conn).await?,
        };
        self.unsettled = held;
        Ok(tx)
    }

    /// The connection, for statements whose effect outlives a transaction: an isolation level set
    /// for the next one, a session lock. From now until [`TxConn::release`], dropping this value
    /// closes the connection (PostgreSQL, MariaDB), so that state never reaches another borrower.
    pub fn session(&mut self) -> &mut DB::Connection {
        self.unsettled = true;
        &mut self.conn
    }

    /// The session state taken with [`TxConn::session`] is gone (the lock released, the isolation
    /// level used by the transaction it was for): the connection may go back to the pool again.
    pub fn release(&mut self) {
        self.unsettled = false;
    }
}

impl<DB: Database> std::fmt::Debug for TxConn<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxConn")
            .field("database", &DB::NAME)
            .field("unsettled", &self.unsettled)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Drop for TxConn<DB> {
    fn drop(&mut self) {
        if !self.unsettled {
            return;
        }
        if DB::NAME != "SQLite" {
            self.conn.close_on_drop();
        } else if sqlx::Connection::is_in_transaction(&*self.conn) {
            // Queued before the connection goes back to the pool.
            <DB::TransactionManager as TransactionManager>::start_rollback(&mut self.conn);
        }
    }
}
