//! Schema migrations shipped in the crate and applied on connect.
//!
//! Each migration is one SQL file in `migrations/` with dialect placeholders (`{key}`, `{long}`), applied
//! once per database in order, under an engine lock (PostgreSQL advisory lock, MySQL `GET_LOCK`, SQLite's
//! write lock), and recorded in `bf_schema_migrations`.

use crate::dialect::Dialect;
use crate::error::db;
use crate::pool::{with_pool, SqlPool};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "run_store",
        sql: include_str!("../migrations/0001_run_store.sql"),
    },
    Migration {
        version: 2,
        name: "publisher",
        sql: include_str!("../migrations/0002_publisher.sql"),
    },
    Migration {
        version: 3,
        name: "attached_partitions",
        sql: include_str!("../migrations/0003_attached_partitions.sql"),
    },
    Migration {
        version: 4,
        name: "core_v2",
        sql: include_str!("../migrations/0004_core_v2.sql"),
    },
    Migration {
        version: 5,
        name: "digest_format",
        sql: include_str!("../migrations/0005_digest_format.sql"),
    },
    Migration {
        version: 6,
        name: "run_budgets",
        sql: include_str!("../migrations/0006_run_budgets.sql"),
    },
    Migration {
        version: 7,
        name: "live_windows",
        sql: include_str!("../migrations/0007_live_windows.sql"),
    },
    Migration {
        version: 8,
        name: "run_tallies",
        sql: include_str!("../migrations/0008_run_tallies.sql"),
    },
];

/// The latest schema version this crate knows.
pub const SCHEMA_VERSION: i64 = 8;

fn render(sql: &str, d: Dialect) -> Vec<String> {
    let sql = sql
        .replace("{key}", d.key_type())
        .replace("{long}", d.long_text());
    // Comment lines go first, so a `;` in a comment never splits a statement.
    let code = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with("CREATE TABLE") {
                format!("{s}{}", d.table_options())
            } else {
                s.to_owned()
            }
        })
        .collect()
}

/// Applies every migration not yet applied. Safe to call from several processes at once: on
/// PostgreSQL and MySQL the whole run holds a session lock, on SQLite each migration is checked and
/// applied inside `BEGIN IMMEDIATE`, which takes the database's write lock before the check (a
/// plain `BEGIN` takes it only at the first write, after two processes have both seen the version
/// missing).
pub async fn migrate(pool: &SqlPool) -> backfill_core::Result<()> {
    let d = pool.dialect();
    let create = format!(
        "CREATE TABLE IF NOT EXISTS bf_schema_migrations (version BIGINT NOT NULL PRIMARY KEY, name {} NOT NULL, applied_at BIGINT NOT NULL){}",
        d.key_type(),
        d.table_options()
    );
    with_pool!(pool, p => {
        // The session lock is held from here to its release; dropped before (cancelled), the
        // connection is closed, not returned to the pool still holding it (see `TxConn`).
        let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
        let (lock, unlock) = match d {
            Dialect::Postgres => ("SELECT pg_advisory_lock(727374)", "SELECT pg_advisory_unlock(727374)"),
            Dialect::MySql => ("SELECT GET_LOCK('backfill_migrate', 60)", "SELECT RELEASE_LOCK('backfill_migrate')"),
            // Each migration's transaction is the lock (below).
            Dialect::Sqlite => ("SELECT 1", "SELECT 1"),
        };
        let begin = match d {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            _ => "BEGIN",
        };
        sqlx::query(lock).execute(conn.session()).await.map_err(db)?;
        let result = async {
            sqlx::query(&create).execute(conn.session()).await.map_err(db)?;
            for m in MIGRATIONS {
                let mut tx = conn.begin(Some(begin)).await.map_err(db)?;
                let applied: Option<i64> = sqlx::query_scalar(&d.sql("SELECT version FROM bf_schema_migrations WHERE version = ?"))
                    .bind(m.version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                if applied.is_some() {
                    tx.commit().await.map_err(db)?;
                    continue;
                }
                for stmt in render(m.sql, d) {
                    sqlx::query(&stmt).execute(&mut *tx).await.map_err(db)?;
                }
                sqlx::query(&d.sql("INSERT INTO bf_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"))
                    .bind(m.version)
                    .bind(m.name)
                    .bind(chrono::Utc::now().timestamp_micros())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                tracing::info!(dialect = d.name(), version = m.version, name = m.name, "applied migration");
            }
            Ok::<(), backfill_core::Error>(())
        }
        .await;
        if sqlx::query(unlock).execute(conn.session()).await.is_ok() {
            conn.release();
        }
        result
    })
}

/// Creates the run-wide budgets and tallies tables (migrations 6 and 8) in a SQLite store's
/// counters file (see [`SqlStore`](crate::SqlStore)); repeating it, from any number of processes,
/// is a no-op.
pub(crate) async fn counters(pool: &SqlPool) -> backfill_core::Result<()> {
    let d = pool.dialect();
    for m in MIGRATIONS.iter().filter(|m| matches!(m.version, 6 | 8)) {
        for stmt in render(m.sql, d) {
            pool.execute(&stmt).await?;
        }
    }
    Ok(())
}
