//! A deletion (tombstone) registry in a SQL table: the subjects a replay must never stage, for
//! [`backfill_core::privacy::Withheld`].

use std::collections::HashSet;

use async_trait::async_trait;
use backfill_core::privacy::ForgottenSubjects;
use chrono::{DateTime, Utc};

use crate::error::{db, is_unique_violation};
use crate::ident::Ident;
use crate::pool::{with_pool, SqlPool};

/// Subjects asked about in one statement (well under every engine's placeholder limit).
const PER_STATEMENT: usize = 1000;

/// The default table.
pub const FORGOTTEN_TABLE: &str = "bf_forgotten_subjects";

/// Forgotten subjects in a table shared by named registries, on PostgreSQL, MySQL/MariaDB or
/// SQLite: one row per registry and subject, with when and why it was forgotten. Rows are only
/// ever added (the [`ForgottenSubjects`] contract): forgetting a subject twice keeps the first
/// row, and nothing here removes one. The version is the registry's number of subjects.
/// On MySQL/MariaDB subjects compare under the table's case-folding collation, so `S-2` and `s-2`
/// are one subject there: a lookup may withhold more, never less.
///
/// ```no_run
/// # async fn f() -> backfill_core::Result<()> {
/// use backfill_core::privacy::ForgottenSubjects;
/// use backfill_sql::{SqlForgottenSubjects, SqlPool};
/// let pool = SqlPool::connect("sqlite:privacy.db").await?;
/// let registry = SqlForgottenSubjects::new(pool, "erasure-requests").await?;
/// registry.forget("customer-42", "GDPR art. 17 request #881", chrono::Utc::now()).await?;
/// assert_eq!(registry.forgotten(&["customer-42", "customer-7"]).await?, vec![true, false]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqlForgottenSubjects {
    pool: SqlPool,
    table: Ident,
    name: String,
}

impl SqlForgottenSubjects {
    /// The registry `name` in the table `bf_forgotten_subjects`, created if missing.
    pub async fn new(pool: SqlPool, name: impl Into<String>) -> backfill_core::Result<Self> {
        Self::in_table(pool, Ident::new(FORGOTTEN_TABLE)?, name).await
    }

    /// The registry `name` in `table` (columns `registry`, `subject`, `forgotten_at` in
    /// microseconds since the epoch, `reason`), created if missing.
    pub async fn in_table(
        pool: SqlPool,
        table: Ident,
        name: impl Into<String>,
    ) -> backfill_core::Result<Self> {
        let d = pool.dialect();
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (registry {key} NOT NULL, subject {key} NOT NULL, forgotten_at BIGINT NOT NULL, reason {long} NOT NULL, PRIMARY KEY (registry, subject)){options}",
            table.quoted(d),
            key = d.key_type(),
            long = d.long_text(),
            options = d.table_options(),
        );
        pool.execute(&ddl).await?;
        Ok(Self {
            pool,
            table,
            name: name.into(),
        })
    }

    /// The table.
    pub fn table(&self) -> &Ident {
        &self.table
    }

    /// Forgets `subject` at `at` for `reason`; `false` when it was forgotten before (the first
    /// row stays).
    pub async fn forget(
        &self,
        subject: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> backfill_core::Result<bool> {
        let d = self.pool.dialect();
        let sql = d
            .sql(&format!(
                "INSERT INTO {} (registry, subject, forgotten_at, reason) VALUES (?, ?, ?, ?)",
                self.table.quoted(d)
            ))
            .into_owned();
        let r = with_pool!(&self.pool, p => {
            sqlx::query(&sql)
                .bind(&self.name)
                .bind(subject)
                .bind(at.timestamp_micros())
                .bind(reason)
                .execute(p)
                .await
                .map(drop)
        });
        match r {
            Ok(()) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(db(e)),
        }
    }
}

#[async_trait]
impl ForgottenSubjects for SqlForgottenSubjects {
    fn name(&self) -> &str {
        &self.name
    }

    async fn version(&self) -> backfill_core::Result<u64> {
        let d = self.pool.dialect();
        let sql = d
            .sql(&format!(
                "SELECT COUNT(*) FROM {} WHERE registry = ?",
                self.table.quoted(d)
            ))
            .into_owned();
        let n: i64 = with_pool!(&self.pool, p => {
            sqlx::query_scalar(&sql)
                .bind(&self.name)
                .fetch_one(p)
                .await
                .map_err(db)?
        });
        u64::try_from(n).map_err(|e| crate::error::corrupt("forgotten subject count", e))
    }

    async fn forgotten(&self, subjects: &[&str]) -> backfill_core::Result<Vec<bool>> {
        let d = self.pool.dialect();
        let mut gone: HashSet<String> = HashSet::new();
        for part in subjects.chunks(PER_STATEMENT) {
            let marks = vec!["?"; part.len()].join(", ");
            let sql = d
                .sql(&format!(
                    "SELECT subject FROM {} WHERE registry = ? AND subject IN ({marks})",
                    self.table.quoted(d)
                ))
                .into_owned();
            let found: Vec<String> = with_pool!(&self.pool, p => {
                let mut q = sqlx::query_scalar(&sql).bind(&self.name);
                for s in part {
                    q = q.bind(*s);
                }
                q.fetch_all(p).await.map_err(db)?
            });
            gone.extend(found);
        }
        Ok(subjects.iter().map(|s| gone.contains(*s)).collect())
    }
}
