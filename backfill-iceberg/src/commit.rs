//! The one commit point: a compare-and-swap of a table's metadata pointer in the catalog database.
//!
//! iceberg 0.10 cannot send hand-made updates (a snapshot on a branch, a ref move) through
//! `Catalog::update_table` (`TableCommit` cannot be built outside the crate), so this module does
//! what `SqlCatalog::update_table` does, on its own pool: check the requirements against the loaded
//! metadata, apply the updates, write the new metadata file, then move the pointer in
//! `iceberg_tables` only if it still names the metadata the change was made from. An error while
//! moving it (the outcome is unknown) is resolved by reading the pointer back, never by moving it
//! again.

use std::str::FromStr;
use std::time::Duration;

use backfill_core::Result;
use iceberg::table::Table;
use iceberg::{ErrorKind as IceKind, MetadataLocation, TableIdent, TableRequirement, TableUpdate};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::catalog::IcebergCatalog;
use crate::error::{ice, sql};

/// A change to one table's metadata: what it assumes and what it does.
#[derive(Debug, Clone, Default)]
pub struct TableChange {
    /// Checked against the metadata the change was made from (and again by the pointer swap).
    pub requirements: Vec<TableRequirement>,
    /// Applied in order.
    pub updates: Vec<TableUpdate>,
}

/// How a commit ended.
#[derive(Debug)]
pub enum Committed {
    /// The pointer moved to the new metadata: the table as it is now.
    Yes(Box<Table>),
    /// Another writer moved the pointer first (or a requirement no longer holds): nothing changed;
    /// reload, rebuild the change and try again.
    Lost(String),
}

#[derive(Debug, Clone)]
pub(crate) enum CatalogPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl CatalogPool {
    pub(crate) async fn connect(uri: &str) -> std::result::Result<Self, sqlx::Error> {
        if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
            Ok(Self::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect(uri)
                    .await?,
            ))
        } else {
            let opts = SqliteConnectOptions::from_str(uri)?
                .busy_timeout(Duration::from_secs(30))
                .create_if_missing(true);
            Ok(Self::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts)
                    .await?,
            ))
        }
    }

    /// Rewrites `?` placeholders as `$n` on PostgreSQL.
    pub(crate) fn sql(&self, q: &str) -> String {
        match self {
            Self::Sqlite(_) => q.to_owned(),
            Self::Postgres(_) => {
                let mut out = String::with_capacity(q.len() + 8);
                let mut n = 0;
                for c in q.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// Runs a statement with text parameters; returns the rows affected.
    pub(crate) async fn execute(
        &self,
        q: &str,
        params: &[&str],
    ) -> std::result::Result<u64, sqlx::Error> {
        let q = self.sql(q);
        match self {
            Self::Sqlite(p) => {
                let mut s = sqlx::query(&q);
                for v in params {
                    s = s.bind(*v);
                }
                Ok(s.execute(p).await?.rows_affected())
            }
            Self::Postgres(p) => {
                let mut s = sqlx::query(&q);
                for v in params {
                    s = s.bind(*v);
                }
                Ok(s.execute(p).await?.rows_affected())
            }
        }
    }

    /// Runs a query with text parameters whose columns are all text (NULL as `None`).
    pub(crate) async fn fetch(
        &self,
        q: &str,
        params: &[&str],
    ) -> std::result::Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        use sqlx::Row;
        let q = self.sql(q);
        match self {
            Self::Sqlite(p) => {
                let mut s = sqlx::query(&q);
                for v in params {
                    s = s.bind(*v);
                }
                let rows = s.fetch_all(p).await?;
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.try_get(i)).collect())
                    .collect()
            }
            Self::Postgres(p) => {
                let mut s = sqlx::query(&q);
                for v in params {
                    s = s.bind(*v);
                }
                let rows = s.fetch_all(p).await?;
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.try_get(i)).collect())
                    .collect()
            }
        }
    }
}

/// The catalog's metadata pointers, on the adapter's own pool.
#[derive(Debug, Clone)]
pub(crate) struct MetadataPointer {
    pool: CatalogPool,
    catalog_name: String,
}

impl MetadataPointer {
    pub(crate) fn new(pool: CatalogPool, catalog_name: String) -> Self {
        Self { pool, catalog_name }
    }

    pub(crate) fn pool(&self) -> &CatalogPool {
        &self.pool
    }

    /// The metadata location the catalog currently names for `table`.
    pub(crate) async fn current(&self, table: &TableIdent) -> Result<Option<String>> {
        let ns = table.namespace().join(".");
        let rows = self
            .pool
            .fetch(
                "SELECT metadata_location FROM iceberg_tables \
                 WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
                &[&self.catalog_name, &ns, table.name()],
            )
            .await
            .map_err(|e| sql(format!("reading the metadata pointer of {table}"), e))?;
        Ok(rows.into_iter().next().and_then(|mut r| r.pop().flatten()))
    }

    async fn swap(
        &self,
        table: &TableIdent,
        expected: &str,
        new: &str,
    ) -> std::result::Result<u64, sqlx::Error> {
        let ns = table.namespace().join(".");
        self.pool
            .execute(
                "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
                 WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
                 AND metadata_location = ?",
                &[
                    new,
                    expected,
                    &self.catalog_name,
                    &ns,
                    table.name(),
                    expected,
                ],
            )
            .await
    }
}

/// Commits `change`, made from `base`, to the catalog: the only way this crate changes a table.
pub(crate) async fn commit(
    catalog: &IcebergCatalog,
    base: &Table,
    change: TableChange,
) -> Result<Committed> {
    let ident = base.identifier();
    let what = || format!("committing to table {ident}");
    for r in &change.requirements {
        if let Err(e) = r.check(Some(base.metadata())) {
            return if e.kind() == IceKind::CatalogCommitConflicts {
                Ok(Committed::Lost(e.message().to_owned()))
            } else {
                Err(ice(what(), e))
            };
        }
    }
    let current = base
        .metadata_location_result()
        .map_err(|e| ice(what(), e))?
        .to_owned();
    let mut builder = base.metadata().clone().into_builder(Some(current.clone()));
    for u in change.updates {
        builder = u.apply(builder).map_err(|e| ice(what(), e))?;
    }
    let metadata = builder.build().map_err(|e| ice(what(), e))?.metadata;
    let location = MetadataLocation::from_str(&current)
        .map_err(|e| ice(what(), e))?
        .with_next_version()
        .with_new_metadata(&metadata);
    metadata
        .write_to(base.file_io(), &location)
        .await
        .map_err(|e| ice(what(), e))?;
    let new = location.to_string();
    let pointer = catalog.pointer();
    match pointer.swap(ident, &current, &new).await {
        Ok(1) => Ok(Committed::Yes(Box::new(catalog.load(ident).await?))),
        Ok(_) => {
            let _ = base.file_io().delete(&new).await;
            Ok(Committed::Lost(format!(
                "the metadata pointer of {ident} moved from {current}"
            )))
        }
        Err(e) => {
            // Unknown outcome: look, do not swap again.
            for wait in [0u64, 100, 500, 2_000] {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                match pointer.current(ident).await {
                    Ok(Some(now)) if now == new => {
                        return Ok(Committed::Yes(Box::new(catalog.load(ident).await?)))
                    }
                    Ok(Some(now)) if now == current => break,
                    Ok(_) => {
                        return Ok(Committed::Lost(format!(
                            "the metadata pointer of {ident} moved from {current}"
                        )))
                    }
                    Err(_) => continue,
                }
            }
            Err(sql(
                format!("moving the metadata pointer of {ident} (not moved)"),
                e,
            ))
        }
    }
}
