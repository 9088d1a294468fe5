//! Validators that run in the database, on the run's staging table.
//!
//! Per-partition digests are checked by backfill-core's `DigestMatchesLedger`, which recomputes them
//! from the rows [`SqlSink`] reads back from the database; these checks add what SQL does best without
//! moving rows: per-partition counts against the ledger, uniqueness, nulls and ranges.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::validate::{ValidationContext, ValidationOutcome, Validator, Verdict};
use serde::de::DeserializeOwned;
use serde_json::json;
use sqlx::Row;

use crate::error::db;
use crate::ident::Ident;
use crate::pool::with_pool;
use crate::sink::SqlSink;

/// What a [`SqlCheck`] checks.
#[derive(Debug, Clone)]
enum Kind {
    PartitionCounts,
    Unique(Vec<Ident>),
    NotNull(Ident),
    Range { column: Ident, min: f64, max: f64 },
}

/// A check computed by the database on a run's staging table.
///
/// ```no_run
/// # async fn f(sink: std::sync::Arc<backfill_sql::SqlSink<MyRow>>) -> backfill_core::Result<()> {
/// use backfill_sql::SqlCheck;
/// let checks = [
///     SqlCheck::partition_counts(&sink),
///     SqlCheck::unique(&sink, &["case_id", "business_date"])?,
///     SqlCheck::not_null(&sink, "due_date")?,
///     SqlCheck::range(&sink, "sla_days", 0.0, 400.0)?,
/// ];
/// # Ok(()) }
/// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)] struct MyRow { m: String }
/// # impl backfill_core::digest::OutputRow for MyRow { fn partition(&self) -> std::borrow::Cow<'_, str> { std::borrow::Cow::Borrowed(&self.m) } }
/// ```
pub struct SqlCheck<R> {
    sink: Arc<SqlSink<R>>,
    kind: Kind,
    name: String,
}

impl<R> fmt::Debug for SqlCheck<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlCheck")
            .field("name", &self.name)
            .finish()
    }
}

impl<R: OutputRow + DeserializeOwned> SqlCheck<R> {
    fn column(sink: &SqlSink<R>, name: &str) -> backfill_core::Result<Ident> {
        let id = Ident::new(name)?;
        if !sink.schema().columns.iter().any(|c| c.name == name) {
            return Err(backfill_core::Error::adapter(
                crate::error::ADAPTER,
                format!(
                    "column `{name}` is not in the row schema of target {}",
                    sink.target()
                ),
            ));
        }
        Ok(id)
    }

    /// Staged rows per partition, counted by the database, equal the ledger's counts.
    pub fn partition_counts(sink: &Arc<SqlSink<R>>) -> Self {
        Self {
            sink: Arc::clone(sink),
            kind: Kind::PartitionCounts,
            name: "sql_partition_counts".into(),
        }
    }

    /// No two staged rows share these columns' values.
    pub fn unique(sink: &Arc<SqlSink<R>>, columns: &[&str]) -> backfill_core::Result<Self> {
        let cols = columns
            .iter()
            .map(|c| Self::column(sink, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            sink: Arc::clone(sink),
            name: format!("sql_unique({})", columns.join(",")),
            kind: Kind::Unique(cols),
        })
    }

    /// No staged row has NULL in this column.
    pub fn not_null(sink: &Arc<SqlSink<R>>, column: &str) -> backfill_core::Result<Self> {
        Ok(Self {
            sink: Arc::clone(sink),
            name: format!("sql_not_null({column})"),
            kind: Kind::NotNull(Self::column(sink, column)?),
        })
    }

    /// Every non-NULL value of this numeric column lies in `[min, max]`.
    pub fn range(
        sink: &Arc<SqlSink<R>>,
        column: &str,
        min: f64,
        max: f64,
    ) -> backfill_core::Result<Self> {
        Ok(Self {
            sink: Arc::clone(sink),
            name: format!("sql_range({column} in {min}..={max})"),
            kind: Kind::Range {
                column: Self::column(sink, column)?,
                min,
                max,
            },
        })
    }
}

#[async_trait]
impl<R: OutputRow + DeserializeOwned> Validator<R> for SqlCheck<R> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn validate(
        &self,
        cx: &ValidationContext<'_, R>,
    ) -> backfill_core::Result<ValidationOutcome> {
        let pool = self.sink.pool();
        let d = pool.dialect();
        let t = self.sink.staging_table(cx.run_id).quoted(d);
        let (verdict, summary, details) = match &self.kind {
            Kind::PartitionCounts => {
                let part = d.quote(self.sink.schema().partition_column);
                let sql = format!("SELECT {part}, COUNT(*) FROM {t} GROUP BY {part}");
                let rows: Vec<(String, i64)> = with_pool!(pool, p => {
                    sqlx::query(&sql)
                        .fetch_all(p)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(db)?
                });
                let in_db: BTreeMap<String, u64> = rows
                    .into_iter()
                    .map(|(p, n)| (p, u64::try_from(n).unwrap_or(0)))
                    .collect();
                let mut mismatched = Vec::new();
                let keys: std::collections::BTreeSet<&str> = in_db
                    .keys()
                    .map(String::as_str)
                    .chain(cx.ledger.0.keys().map(|k| k.as_str()))
                    .collect();
                for k in keys {
                    let db_n = in_db.get(k).copied().unwrap_or(0);
                    let ledger_n = cx.ledger.0.get(k).map_or(0, |d| d.rows);
                    if db_n != ledger_n {
                        mismatched
                            .push(json!({"partition": k, "staged": db_n, "ledger": ledger_n}));
                    }
                }
                let verdict = if mismatched.is_empty() {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                };
                (
                    verdict,
                    format!(
                        "{} partitions counted in the database, {} differ from the ledger",
                        in_db.len(),
                        mismatched.len()
                    ),
                    json!({"counts": in_db, "mismatched": mismatched}),
                )
            }
            Kind::Unique(cols) => {
                let list = cols
                    .iter()
                    .map(|c| c.quoted(d))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!("SELECT COUNT(*) FROM (SELECT {list} FROM {t} GROUP BY {list} HAVING COUNT(*) > 1) dups");
                let n: i64 =
                    with_pool!(pool, p => sqlx::query_scalar(&sql).fetch_one(p).await.map_err(db)?);
                let verdict = if n == 0 { Verdict::Pass } else { Verdict::Fail };
                (
                    verdict,
                    format!("{n} duplicated key(s)"),
                    json!({"duplicated_keys": n}),
                )
            }
            Kind::NotNull(c) => {
                let sql = format!("SELECT COUNT(*) FROM {t} WHERE {} IS NULL", c.quoted(d));
                let n: i64 =
                    with_pool!(pool, p => sqlx::query_scalar(&sql).fetch_one(p).await.map_err(db)?);
                let verdict = if n == 0 { Verdict::Pass } else { Verdict::Fail };
                (
                    verdict,
                    format!("{n} row(s) with NULL {c}"),
                    json!({"null_rows": n}),
                )
            }
            Kind::Range { column, min, max } => {
                let sql = d
                    .sql(&format!(
                        "SELECT COUNT(*) FROM {t} WHERE {c} < ? OR {c} > ?",
                        c = column.quoted(d)
                    ))
                    .into_owned();
                let n: i64 = with_pool!(pool, p => sqlx::query_scalar(&sql).bind(*min).bind(*max).fetch_one(p).await.map_err(db)?);
                let verdict = if n == 0 { Verdict::Pass } else { Verdict::Fail };
                (
                    verdict,
                    format!("{n} row(s) with {column} outside {min}..={max}"),
                    json!({"out_of_range_rows": n}),
                )
            }
        };
        Ok(ValidationOutcome::new(
            &self.name, verdict, summary, details,
        ))
    }
}
