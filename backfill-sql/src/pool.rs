//! Connection pools for the three engines, behind one enum.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use crate::dialect::Dialect;
use crate::error::{db, Error};
use crate::ident::{Ident, QualifiedName};

/// A pool on PostgreSQL, MySQL/MariaDB or SQLite.
#[derive(Debug, Clone)]
pub enum SqlPool {
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL or MariaDB.
    MySql(MySqlPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// Runs the same code against whichever pool it is; `$p` is the concrete pool.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::pool::SqlPool::Postgres($p) => $body,
            $crate::pool::SqlPool::MySql($p) => $body,
            $crate::pool::SqlPool::Sqlite($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Connection settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Maximum pool size.
    pub max_connections: u32,
    /// How long to wait for a free connection.
    pub acquire_timeout: Duration,
    /// Isolate everything under this namespace: a PostgreSQL schema (created if missing, put first on
    /// the search path) or a MySQL/MariaDB database (created if missing). Ignored for SQLite, where
    /// the file is the namespace.
    pub namespace: Option<Ident>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            namespace: None,
        }
    }
}

impl ConnectOptions {
    /// Options isolated under a namespace.
    pub fn namespaced(namespace: Ident) -> Self {
        Self {
            namespace: Some(namespace),
            ..Self::default()
        }
    }

    /// Sets the pool size.
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

/// A connection that sat idle in the pool for longer than this is pinged before it is handed out.
pub(crate) const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The pool options every engine uses.
///
/// sqlx pings every connection it hands out by default (`test_before_acquire`): one more round trip
/// before each statement run on the pool, about a dozen per publication. Here only a connection idle
/// for [`PING_AFTER_IDLE`] or longer is pinged. The check still catches what it is for (a server
/// restart, or a connection dropped by the network or an idle timeout while it sat in the pool),
/// and sqlx also pings each connection when it is returned to the pool, closing it if that fails.
/// What is left: a connection that broke less than a second after its release ping fails its next
/// statement with an I/O error, which is transient (retryable), and sqlx then discards it.
fn pool_options<DB: sqlx::Database>(opts: &ConnectOptions) -> PoolOptions<DB> {
    PoolOptions::<DB>::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

impl SqlPool {
    /// Connects to `postgres://…`, `mysql://…` / `mariadb://…` or `sqlite:…` (the SQLite file is created
    /// if missing, in WAL mode with a busy timeout so several connections can share it).
    pub async fn connect(url: &str) -> backfill_core::Result<Self> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects with options.
    pub async fn connect_with(url: &str, opts: &ConnectOptions) -> backfill_core::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut o = PgConnectOptions::from_str(url).map_err(db)?;
            if let Some(ns) = &opts.namespace {
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(o.clone())
                    .await
                    .map_err(db)?;
                let create = format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    ns.quoted(Dialect::Postgres)
                );
                if let Err(e) = sqlx::query(&create).execute(&admin).await {
                    // Two workers creating the same schema at once: the loser sees a unique violation.
                    if !crate::error::is_concurrent_create(&e) {
                        return Err(db(e));
                    }
                }
                admin.close().await;
                o = o.options([("search_path", ns.as_str())]);
            }
            let pool = pool_options(opts).connect_with(o).await.map_err(db)?;
            Ok(Self::Postgres(pool))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let mut o = MySqlConnectOptions::from_str(&url).map_err(db)?;
            if let Some(ns) = &opts.namespace {
                let admin = MySqlPoolOptions::new()
                    .max_connections(1)
                    .connect_with(o.clone())
                    .await
                    .map_err(db)?;
                let create = format!(
                    "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
                    ns.quoted(Dialect::MySql)
                );
                sqlx::query(&create).execute(&admin).await.map_err(db)?;
                admin.close().await;
                o = o.database(ns.as_str());
            }
            let pool = pool_options(opts).connect_with(o).await.map_err(db)?;
            Ok(Self::MySql(pool))
        } else if url.starts_with("sqlite:") {
            connect_sqlite(SqliteConnectOptions::from_str(url).map_err(db)?, opts).await
        } else {
            Err(Error::Url(url.chars().take(20).collect()).into())
        }
    }

    /// The database file beside this SQLite pool's, named `<file><suffix>`, with the same settings;
    /// `None` for PostgreSQL, MariaDB/MySQL and in-memory SQLite.
    pub(crate) async fn sqlite_sidecar(&self, suffix: &str) -> backfill_core::Result<Option<Self>> {
        let Self::Sqlite(p) = self else {
            return Ok(None);
        };
        let o = p.connect_options();
        let in_memory = sqlx::ConnectOptions::to_url_lossy(&*o)
            .query_pairs()
            .any(|(k, v)| k == "mode" && v == "memory");
        if in_memory {
            return Ok(None);
        }
        let mut file = o.get_filename().as_os_str().to_owned();
        file.push(suffix);
        let side = SqliteConnectOptions::new().filename(file);
        connect_sqlite(side, &ConnectOptions::default())
            .await
            .map(Some)
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Postgres(_) => Dialect::Postgres,
            Self::MySql(_) => Dialect::MySql,
            Self::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }

    /// Runs one statement without parameters (DDL).
    ///
    /// `CREATE … IF NOT EXISTS` is safe to race here: on PostgreSQL two sessions creating the same
    /// table at once can both pass the existence check, and the loser fails on the catalog's unique
    /// index (`pg_type_typname_nsp_index`) instead of doing nothing. It is run once more, and then
    /// finds the winner's object.
    pub(crate) async fn execute(&self, sql: &str) -> backfill_core::Result<u64> {
        let run = || async {
            with_pool!(self, p => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()))
        };
        match run().await {
            Err(e) if crate::error::is_concurrent_create(&e) && creates_if_missing(sql) => {
                run().await.map_err(db)
            }
            r => r.map_err(db),
        }
    }

    /// Runs `create`, a `CREATE [UNIQUE] INDEX IF NOT EXISTS` statement for the index named `index`
    /// on `table`, unless that index is already there.
    ///
    /// On PostgreSQL the catalog is asked first: `CREATE INDEX IF NOT EXISTS` takes a SHARE lock on
    /// the table before it looks at the name, so even when it does nothing it conflicts with the
    /// SHARE UPDATE EXCLUSIVE lock of a running VACUUM or ANALYZE. Against an autovacuum it waits
    /// `deadlock_timeout` (1 s) and then cancels it, and the dead rows the vacuum was reclaiming slow
    /// every later scan of the table. The lookup takes no lock on the table. `index` is the index's
    /// bare name (PostgreSQL puts an index in its table's schema; see
    /// [`QualifiedName::catalog_parts`]). Other engines run the statement as before.
    pub(crate) async fn ensure_index(
        &self,
        index: &str,
        table: &QualifiedName,
        create: &str,
    ) -> backfill_core::Result<()> {
        if let Self::Postgres(p) = self {
            if pg_index_exists(p, table, index).await? {
                return Ok(());
            }
        }
        self.execute(create).await.map(drop)
    }

    /// Drops a namespace created by [`ConnectOptions::namespace`] (schema or database) with everything
    /// in it. For test harnesses.
    pub async fn drop_namespace(url: &str, ns: &Ident) -> backfill_core::Result<()> {
        let admin =
            Self::connect_with(url, &ConnectOptions::default().with_max_connections(1)).await?;
        let d = admin.dialect();
        let sql = match d {
            Dialect::Postgres => format!("DROP SCHEMA IF EXISTS {} CASCADE", ns.quoted(d)),
            Dialect::MySql => format!("DROP DATABASE IF EXISTS {}", ns.quoted(d)),
            Dialect::Sqlite => return Ok(()),
        };
        admin.execute(&sql).await?;
        admin.close().await;
        Ok(())
    }
}

/// What the catalog says of `table` (as it would be written in SQL, resolved on the search path
/// when unqualified): its kind (`pg_class.relkind`: `r` table, `p` partitioned table, `v` view …)
/// and whether it has an index named `index`; `None` when there is no such relation. One query that
/// reads only the catalog: no lock on the table.
pub(crate) async fn pg_relation(
    pg: &PgPool,
    table: &QualifiedName,
    index: &str,
) -> backfill_core::Result<Option<(String, bool)>> {
    sqlx::query_as(
        "SELECT c.relkind::text, EXISTS (SELECT 1 FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE i.indrelid = c.oid AND x.relname = $2) FROM pg_class c WHERE c.oid = to_regclass($1)",
    )
    .bind(table.quoted(Dialect::Postgres))
    .bind(index)
    .fetch_optional(pg)
    .await
    .map_err(db)
}

/// Whether `table` has an index named `index` (see [`pg_relation`]).
pub(crate) async fn pg_index_exists(
    pg: &PgPool,
    table: &QualifiedName,
    index: &str,
) -> backfill_core::Result<bool> {
    Ok(pg_relation(pg, table, index)
        .await?
        .is_some_and(|(_, indexed)| indexed))
}

/// SQLITE_BUSY or SQLITE_LOCKED (primary codes 5 and 6, with any extended code).
fn sqlite_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// `CREATE [UNIQUE] TABLE|INDEX|VIEW|SCHEMA … IF NOT EXISTS …`: a statement that means "make sure it
/// exists".
fn creates_if_missing(sql: &str) -> bool {
    let head: String = sql
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_uppercase();
    head.trim_start().starts_with("CREATE ") && head.contains(" IF NOT EXISTS ")
}

/// Opens a SQLite pool in WAL mode with a busy timeout, creating the file if missing.
async fn connect_sqlite(
    o: SqliteConnectOptions,
    opts: &ConnectOptions,
) -> backfill_core::Result<SqlPool> {
    let o = o
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30));
    // Switching a fresh file to WAL needs the exclusive lock, and SQLite answers BUSY at once,
    // without its busy handler, to every other connection doing the same at that moment (several
    // workers started together): retry those for as long as the busy timeout would have waited.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(5);
    loop {
        match pool_options(opts).connect_with(o.clone()).await {
            Ok(pool) => return Ok(SqlPool::Sqlite(pool)),
            Err(e) if sqlite_busy(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(db(e)),
        }
    }
}
