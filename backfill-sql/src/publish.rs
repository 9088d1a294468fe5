//! Publishers: each publication is one transaction that changes the target, archives what it
//! replaced (for rollback) and records its receipt and the target's pointer in the target database.

use std::fmt;
use std::marker::PhantomData;

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::manifest::Mutation;
use backfill_core::publish::{PublishReceipt, PublishRequest, Publisher, RollbackRequest};
use backfill_core::sink::{SinkDescriptor, StagingSink};
use backfill_core::Error as CoreError;
use futures::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::dialect::Dialect;
use crate::error::{db, is_unique_violation};
use crate::ident::Ident;
use crate::migrate::migrate;
use crate::pool::{with_pool, SqlPool};
use crate::row::{RowSchema, SqlRow};
use crate::sink::{check_columns, column_ddl, column_list, read_rows, staging_table_name};

/// Column naming the run whose publication archived a row.
const ARCHIVED_BY: &str = "bf_archived_by";

/// Publishes staged rows into a target table (or view) on the same database as the [`SqlSink`](crate::SqlSink)
/// that staged them, with the manifest's mutation:
///
/// - **replace partitions**: one transaction deletes the run's partitions and inserts the staged rows;
///   rows of other partitions are not touched;
/// - **merge by key**: upsert guarded by the version column (a staged row older than the target's
///   never wins; equal versions rewrite the same row); deletes are explicit tombstone rows;
/// - **append with run id**: rows are appended with their lineage; the view `<target>_accepted` shows
///   the accepted run's rows;
/// - **shadow swap**: the run's rows go into their own table and the view `<target>` is pointed at it;
/// - **versioned output**: like shadow swap, the view is `<target>_current` and every version's table stays.
///
/// Rows replaced or overwritten are archived with the publishing run's id, so rollback restores them
/// exactly. `inspect` reads the receipt recorded in the same transaction as the change.
pub struct SqlPublisher<R> {
    pub(crate) pool: SqlPool,
    pub(crate) target: Ident,
    pub(crate) schema: RowSchema,
    _rows: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for SqlPublisher<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlPublisher")
            .field("dialect", &self.pool.dialect())
            .field("target", &self.target)
            .finish()
    }
}

pub(crate) fn hashed(prefix: &str, parts: &[&str]) -> Ident {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    Ident::generated(prefix, &hex::encode(h.finalize())[..24])
}

pub(crate) fn refuse(run_id: &RunId, reason: impl Into<String>) -> CoreError {
    CoreError::PublishRefused {
        run_id: run_id.clone(),
        reason: reason.into(),
    }
}

impl<R: SqlRow> SqlPublisher<R> {
    /// A publisher for `target` on `pool`.
    pub async fn new(pool: SqlPool, target: &str) -> backfill_core::Result<Self> {
        Self::with_schema(pool, target, RowSchema::of::<R>()).await
    }
}

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// A publisher for a row type described by `schema`.
    pub async fn with_schema(
        pool: SqlPool,
        target: &str,
        schema: RowSchema,
    ) -> backfill_core::Result<Self> {
        check_columns::<R>(&schema)?;
        migrate(&pool).await?;
        Ok(Self {
            pool,
            target: Ident::new(target)?,
            schema,
            _rows: PhantomData,
        })
    }

    /// The target table (or view) name.
    pub fn target(&self) -> &Ident {
        &self.target
    }

    fn d(&self) -> Dialect {
        self.pool.dialect()
    }

    fn archive(&self) -> Ident {
        hashed("bfa_", &[self.target.as_str()])
    }

    fn shadow(&self, run_id: &RunId) -> Ident {
        hashed("bfsh_", &[self.target.as_str(), run_id.as_str()])
    }

    fn suffixed(&self, suffix: &str) -> backfill_core::Result<Ident> {
        Ident::new(&format!("{}{suffix}", self.target))
    }

    /// The relation readers query for a mutation.
    fn relation(&self, mutation: &Mutation) -> backfill_core::Result<Ident> {
        match mutation {
            Mutation::AppendWithRunId => self.suffixed("_accepted"),
            Mutation::VersionedOutput => self.suffixed("_current"),
            _ => Ok(self.target.clone()),
        }
    }

    fn q(&self, name: &str) -> String {
        self.d().quote(name)
    }

    /// Creates the target table (or, for shadow/versioned, nothing: tables are per run), the archive
    /// and the indexes a mutation needs. DDL runs outside the publishing transaction because MySQL
    /// commits implicitly around DDL.
    async fn ensure_tables(&self, mutation: &Mutation) -> backfill_core::Result<()> {
        let d = self.d();
        let cols = column_ddl(&self.schema, d);
        let part = self.q(self.schema.partition_column);
        if !matches!(mutation, Mutation::ShadowSwap | Mutation::VersionedOutput) {
            let t = self.target.quoted(d);
            self.pool
                .execute(&format!("CREATE TABLE IF NOT EXISTS {t} ({cols})"))
                .await?;
            let idx = hashed("bfi_", &[self.target.as_str(), "partition"]);
            self.pool
                .execute(&format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} ({part})",
                    idx.quoted(d)
                ))
                .await?;
        }
        if let Mutation::MergeByKey { key, .. } = mutation {
            let keys = key
                .iter()
                .map(|k| Ident::new(k).map(|i| i.quoted(d)))
                .collect::<Result<Vec<_>, _>>()?;
            let idx = hashed("bfu_", &[self.target.as_str(), &key.join(",")]);
            self.pool
                .execute(&format!(
                    "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
                    idx.quoted(d),
                    self.target.quoted(d),
                    keys.join(", ")
                ))
                .await?;
        }
        let archived_by = format!("{} {} NOT NULL", self.q(ARCHIVED_BY), d.key_type());
        self.pool
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} ({archived_by}, {cols})",
                self.archive().quoted(d)
            ))
            .await?;
        if mutation == &Mutation::AppendWithRunId {
            let view = self.relation(mutation)?;
            let body = format!(
                "SELECT * FROM {t} WHERE {run} = (SELECT run_id FROM bf_target_pointers WHERE target = '{target}')",
                t = self.target.quoted(d),
                run = self.q("produced_by_run_id"),
                target = self.target.as_str(),
            );
            self.replace_view(&view, &body).await?;
        }
        Ok(())
    }

    async fn replace_view(&self, view: &Ident, body: &str) -> backfill_core::Result<()> {
        let d = self.d();
        let v = view.quoted(d);
        match d {
            Dialect::Sqlite => {
                with_pool!(&self.pool, p => {
                    let mut tx = p.begin().await.map_err(db)?;
                    sqlx::query(&format!("DROP VIEW IF EXISTS {v}")).execute(&mut *tx).await.map_err(db)?;
                    sqlx::query(&format!("CREATE VIEW {v} AS {body}")).execute(&mut *tx).await.map_err(db)?;
                    tx.commit().await.map_err(db)?;
                });
            }
            _ => {
                self.pool
                    .execute(&format!("CREATE OR REPLACE VIEW {v} AS {body}"))
                    .await?;
            }
        }
        Ok(())
    }

    async fn staged_partitions(&self, stg: &Ident) -> backfill_core::Result<Vec<PartitionKey>> {
        let d = self.d();
        let sql = format!(
            "SELECT DISTINCT {p} FROM {s} ORDER BY {p}",
            p = self.q(self.schema.partition_column),
            s = stg.quoted(d)
        );
        let v: Vec<String> =
            with_pool!(&self.pool, p => sqlx::query_scalar(&sql).fetch_all(p).await.map_err(db)?);
        Ok(v.into_iter().map(PartitionKey::from).collect())
    }

    async fn staged_exists(&self, run_id: &RunId) -> backfill_core::Result<Ident> {
        let d = self.d();
        let found: Option<String> = with_pool!(&self.pool, p => {
            sqlx::query_scalar(&d.sql("SELECT table_name FROM bf_staging_tables WHERE run_id = ? AND target = ?"))
                .bind(run_id.as_str())
                .bind(self.target.as_str())
                .fetch_optional(p)
                .await
                .map_err(db)?
        });
        match found {
            Some(_) => Ok(staging_table_name(&self.target, run_id)),
            None => Err(CoreError::NotFound {
                run_id: run_id.clone(),
                what: format!("staging table for target {}", self.target),
            }),
        }
    }

    /// The statements (with their bound values) that apply `mutation` from staging table `stg`.
    fn apply_sql(
        &self,
        mutation: &Mutation,
        run_id: &RunId,
        stg: &Ident,
        partitions: &[PartitionKey],
    ) -> backfill_core::Result<Vec<Stmt>> {
        let d = self.d();
        let t = self.target.quoted(d);
        let s = stg.quoted(d);
        let a = self.archive().quoted(d);
        let cols = column_list(&self.schema, d, "");
        let part = self.q(self.schema.partition_column);
        let arch = self.q(ARCHIVED_BY);
        let (in_list, parts) = in_list(partitions);
        let run = run_id.to_string();
        Ok(match mutation {
            Mutation::ReplacePartitions => vec![
                Stmt::new(
                    format!("INSERT INTO {a} ({arch}, {cols}) SELECT ?, {cols} FROM {t} WHERE {part} IN ({in_list})"),
                    std::iter::once(run).chain(parts.iter().cloned()).collect(),
                ),
                Stmt::new(format!("DELETE FROM {t} WHERE {part} IN ({in_list})"), parts),
                Stmt::new(format!("INSERT INTO {t} ({cols}) SELECT {cols} FROM {s}"), Vec::new()),
            ],
            Mutation::AppendWithRunId => vec![Stmt::new(format!("INSERT INTO {t} ({cols}) SELECT {cols} FROM {s}"), Vec::new())],
            Mutation::MergeByKey { key, version_column } => {
                let keys = key.iter().map(|k| Ident::new(k)).collect::<Result<Vec<_>, _>>()?;
                let v = Ident::new(version_column)?.quoted(d);
                let matches = keys
                    .iter()
                    .map(|k| format!("s.{k} = {t}.{k}", k = k.quoted(d)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let archive = Stmt::new(
                    format!(
                        "INSERT INTO {a} ({arch}, {cols}) SELECT ?, {tcols} FROM {t} WHERE EXISTS (SELECT 1 FROM {s} s WHERE {matches} AND s.{v} >= {t}.{v})",
                        tcols = column_list(&self.schema, d, &format!("{t}.")),
                    ),
                    vec![run],
                );
                let all: Vec<String> = crate::row::all_columns(self.schema.columns).map(|(n, _, _)| d.quote(&n)).collect();
                let key_q: Vec<String> = keys.iter().map(|k| k.quoted(d)).collect();
                let non_key: Vec<&String> = all.iter().filter(|c| !key_q.contains(c) && **c != v).collect();
                let upsert = match d {
                    Dialect::Postgres | Dialect::Sqlite => {
                        let set = non_key
                            .iter()
                            .chain(std::iter::once(&&v))
                            .map(|c| format!("{c} = excluded.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        format!(
                            "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} WHERE 1 = 1 ON CONFLICT ({keys}) DO UPDATE SET {set} WHERE {t}.{v} <= excluded.{v}",
                            keys = key_q.join(", ")
                        )
                    }
                    Dialect::MySql => {
                        // Assignments run left to right: the version column is updated last so every
                        // IF compares against the row's old version.
                        let set = non_key
                            .iter()
                            .chain(std::iter::once(&&v))
                            .map(|c| format!("{c} = IF({t}.{v} <= VALUES({v}), VALUES({c}), {t}.{c})"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        format!("INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} ON DUPLICATE KEY UPDATE {set}")
                    }
                };
                vec![archive, Stmt::new(upsert, Vec::new())]
            }
            Mutation::ShadowSwap | Mutation::VersionedOutput => Vec::new(),
            Mutation::CorrectionEvents => {
                return Err(CoreError::NotSupported {
                    adapter: crate::error::ADAPTER,
                    operation: "publish correction_events to a SQL table",
                })
            }
        })
    }

    async fn count(&self, stg: &Ident) -> backfill_core::Result<u64> {
        let sql = format!("SELECT COUNT(*) FROM {}", stg.quoted(self.d()));
        let n: i64 =
            with_pool!(&self.pool, p => sqlx::query_scalar(&sql).fetch_one(p).await.map_err(db)?);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// A statement and the text values bound to its `?` placeholders, in order.
pub(crate) struct Stmt {
    pub(crate) sql: String,
    pub(crate) binds: Vec<String>,
}

impl Stmt {
    pub(crate) fn new(sql: String, binds: Vec<String>) -> Self {
        Self { sql, binds }
    }
}

/// `?, ?, ?` for the partitions and their values (one impossible value when there are none, so the
/// list is never empty).
fn in_list(partitions: &[PartitionKey]) -> (String, Vec<String>) {
    if partitions.is_empty() {
        return ("?".into(), vec![String::new()]);
    }
    (
        vec!["?"; partitions.len()].join(", "),
        partitions.iter().map(ToString::to_string).collect(),
    )
}

#[async_trait]
impl<R: OutputRow + DeserializeOwned> Publisher<R> for SqlPublisher<R> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal(self.target.as_str(), format!("{}_table", self.d().name()))
    }

    async fn publish(
        &self,
        req: PublishRequest<'_>,
        _staged: &dyn StagingSink<R>,
    ) -> backfill_core::Result<PublishReceipt> {
        if let Some(done) = self.inspect(req.run_id).await? {
            return Ok(done);
        }
        let d = self.d();
        let mutation = req.manifest.mutation()?.clone();
        let stg = self.staged_exists(req.run_id).await?;
        let partitions: Vec<PartitionKey> = if req.manifest.target.partitions.is_empty() {
            self.staged_partitions(&stg).await?
        } else {
            req.manifest.target.partitions.clone()
        };
        self.ensure_tables(&mutation).await?;
        let rows = self.count(&stg).await?;
        let relation = self.relation(&mutation)?;
        let mut reference = format!("{}:{}", d.name(), relation);
        if matches!(mutation, Mutation::ShadowSwap | Mutation::VersionedOutput) {
            // The run's own table, built before the switch (DDL).
            let shadow = self.shadow(req.run_id);
            let cols = column_list(&self.schema, d, "");
            self.pool
                .execute(&format!("DROP TABLE IF EXISTS {}", shadow.quoted(d)))
                .await?;
            self.pool
                .execute(&format!(
                    "CREATE TABLE {} ({})",
                    shadow.quoted(d),
                    column_ddl(&self.schema, d)
                ))
                .await?;
            self.pool
                .execute(&format!(
                    "INSERT INTO {} ({cols}) SELECT {cols} FROM {}",
                    shadow.quoted(d),
                    stg.quoted(d)
                ))
                .await?;
            reference = format!("{}:{} -> {}", d.name(), relation, shadow);
        }
        let attach = mutation == Mutation::ReplacePartitions && self.is_partitioned().await?;
        if attach {
            // A declaratively partitioned PostgreSQL table: swap whole partitions instead of rewriting rows.
            reference = format!("postgres:{} (detach/attach)", self.target);
        }
        let receipt = PublishReceipt {
            run_id: req.run_id.clone(),
            target: self.target.to_string(),
            mutation: mutation.name().into(),
            partitions: partitions.clone(),
            rows,
            published_at: req.at,
            reference,
        };
        let statements = if attach {
            self.attach_statements(req.run_id, &stg, &partitions)
                .await?
        } else {
            self.apply_sql(&mutation, req.run_id, &stg, &partitions)?
        };
        let receipt_json = serde_json::to_string(&receipt).unwrap_or_default();
        let at = req.at.timestamp_micros();
        let previous = req.previous.map(|r| r.to_string());
        let result = with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(db)?;
            for stmt in &statements {
                let sql = d.sql(&stmt.sql);
                let mut q = sqlx::query(&sql);
                for b in &stmt.binds {
                    q = q.bind(b.as_str());
                }
                q.execute(&mut *tx).await.map_err(db)?;
            }
            let recorded = sqlx::query(&d.sql("INSERT INTO bf_publications (run_id, target, mutation, previous_run_id, receipt, published_at) VALUES (?, ?, ?, ?, ?, ?)"))
                .bind(req.run_id.as_str())
                .bind(self.target.as_str())
                .bind(mutation.name())
                .bind(&previous)
                .bind(&receipt_json)
                .bind(at)
                .execute(&mut *tx)
                .await;
            match recorded {
                // Another publisher of the same run committed first: ours rolls back.
                Err(e) if is_unique_violation(&e) => Ok(false),
                Err(e) => Err(db(e)),
                Ok(_) => {
                    sqlx::query(&d.sql("DELETE FROM bf_target_pointers WHERE target = ?"))
                        .bind(self.target.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    sqlx::query(&d.sql("INSERT INTO bf_target_pointers (target, run_id, mutation, relation, updated_at) VALUES (?, ?, ?, ?, ?)"))
                        .bind(self.target.as_str())
                        .bind(req.run_id.as_str())
                        .bind(mutation.name())
                        .bind(relation.as_str())
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    Ok(true)
                }
            }
        })?;
        if !result {
            return self
                .inspect(req.run_id)
                .await?
                .ok_or_else(|| refuse(req.run_id, "publication raced and vanished"));
        }
        if matches!(mutation, Mutation::ShadowSwap | Mutation::VersionedOutput) {
            self.point_view(&relation, &self.shadow(req.run_id)).await?;
        }
        Ok(receipt)
    }

    async fn inspect(&self, run_id: &RunId) -> backfill_core::Result<Option<PublishReceipt>> {
        let d = self.d();
        let text: Option<String> = with_pool!(&self.pool, p => {
            sqlx::query_scalar(&d.sql("SELECT receipt FROM bf_publications WHERE run_id = ? AND target = ?"))
                .bind(run_id.as_str())
                .bind(self.target.as_str())
                .fetch_optional(p)
                .await
                .map_err(db)?
        });
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| crate::error::corrupt("publish receipt", e))
        })
        .transpose()
    }

    async fn rollback(&self, req: RollbackRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        let d = self.d();
        let from = self.inspect(req.from).await?.ok_or_else(|| {
            refuse(
                req.from,
                format!("run was never published to {}", self.target),
            )
        })?;
        let to = self.inspect(req.to).await?.ok_or_else(|| {
            refuse(
                req.to,
                format!("run was never published to {}", self.target),
            )
        })?;
        let mutation = req.manifest.mutation()?.clone();
        let previous: Option<Option<String>> = with_pool!(&self.pool, p => {
            sqlx::query_scalar(&d.sql("SELECT previous_run_id FROM bf_publications WHERE run_id = ? AND target = ?"))
                .bind(req.from.as_str())
                .bind(self.target.as_str())
                .fetch_optional(p)
                .await
                .map_err(db)?
        });
        let replaced = previous.flatten();
        let reversible_to_any =
            matches!(mutation, Mutation::ShadowSwap | Mutation::VersionedOutput);
        if !reversible_to_any && replaced.as_deref() != Some(req.to.as_str()) {
            return Err(refuse(
                req.to,
                format!(
                    "{} replaced {}, so it can only roll back to that run",
                    req.from,
                    replaced.as_deref().unwrap_or("nothing")
                ),
            ));
        }
        let t = self.target.quoted(d);
        let a = self.archive().quoted(d);
        let cols = column_list(&self.schema, d, "");
        let part = self.q(self.schema.partition_column);
        let arch = self.q(ARCHIVED_BY);
        let from_run = req.from.to_string();
        let (in_list, parts) = in_list(&from.partitions);
        let restore = || {
            [
                Stmt::new(
                    format!("INSERT INTO {t} ({cols}) SELECT {cols} FROM {a} WHERE {arch} = ?"),
                    vec![from_run.clone()],
                ),
                Stmt::new(
                    format!("DELETE FROM {a} WHERE {arch} = ?"),
                    vec![from_run.clone()],
                ),
            ]
        };
        let attached = mutation == Mutation::ReplacePartitions && self.is_partitioned().await?;
        let statements: Vec<Stmt> = match &mutation {
            Mutation::ReplacePartitions if attached => self.reattach_statements(req.from).await?,
            Mutation::ReplacePartitions => std::iter::once(Stmt::new(
                format!("DELETE FROM {t} WHERE {part} IN ({in_list})"),
                parts,
            ))
            .chain(restore())
            .collect(),
            Mutation::MergeByKey { key, .. } => {
                let stg = staging_table_name(&self.target, req.from).quoted(d);
                let matches = key
                    .iter()
                    .map(|k| Ident::new(k).map(|k| format!("s.{k} = {t}.{k}", k = k.quoted(d))))
                    .collect::<Result<Vec<_>, _>>()?
                    .join(" AND ");
                std::iter::once(Stmt::new(
                    format!("DELETE FROM {t} WHERE EXISTS (SELECT 1 FROM {stg} s WHERE {matches})"),
                    Vec::new(),
                ))
                .chain(restore())
                .collect()
            }
            Mutation::AppendWithRunId => vec![Stmt::new(
                format!("DELETE FROM {t} WHERE {} = ?", self.q("produced_by_run_id")),
                vec![from_run.clone()],
            )],
            Mutation::ShadowSwap | Mutation::VersionedOutput => Vec::new(),
            Mutation::CorrectionEvents => {
                return Err(CoreError::NotSupported {
                    adapter: crate::error::ADAPTER,
                    operation: "roll back correction_events",
                })
            }
        };
        let relation = self.relation(&mutation)?;
        let at = req.at.timestamp_micros();
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(db)?;
            for stmt in &statements {
                let sql = d.sql(&stmt.sql);
                let mut q = sqlx::query(&sql);
                for b in &stmt.binds {
                    q = q.bind(b.as_str());
                }
                q.execute(&mut *tx).await.map_err(db)?;
            }
            sqlx::query(&d.sql("UPDATE bf_target_pointers SET run_id = ?, updated_at = ? WHERE target = ?"))
                .bind(req.to.as_str())
                .bind(at)
                .bind(self.target.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query(&d.sql("INSERT INTO bf_rollbacks (from_run_id, to_run_id, target, rolled_back_at) VALUES (?, ?, ?, ?)"))
                .bind(req.from.as_str())
                .bind(req.to.as_str())
                .bind(self.target.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
        });
        if reversible_to_any {
            self.point_view(&relation, &self.shadow(req.to)).await?;
        }
        Ok(PublishReceipt {
            mutation: "rollback".into(),
            partitions: from.partitions,
            published_at: req.at,
            reference: format!("{}:{} rolled back from {}", d.name(), relation, req.from),
            ..to
        })
    }

    fn read_current<'a>(
        &'a self,
        partition: &'a PartitionKey,
    ) -> BoxStream<'a, backfill_core::Result<Vec<R>>> {
        stream::once(async move {
            let d = self.d();
            let relation: Option<String> = with_pool!(&self.pool, p => {
                sqlx::query_scalar(&d.sql("SELECT relation FROM bf_target_pointers WHERE target = ?"))
                    .bind(self.target.as_str())
                    .fetch_optional(p)
                    .await
                    .map_err(db)?
            });
            let Some(relation) = relation else {
                return Ok(Vec::new());
            };
            let relation = Ident::new(&relation)?;
            let from = format!("{} WHERE {} = ?", relation.quoted(d), self.q(self.schema.partition_column));
            read_rows::<R>(&self.pool, &self.schema, &from, Some(partition.as_str())).await
        })
        .boxed()
    }
}

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    async fn point_view(&self, view: &Ident, table: &Ident) -> backfill_core::Result<()> {
        let cols = column_list(&self.schema, self.d(), "");
        self.replace_view(
            view,
            &format!("SELECT {cols} FROM {}", table.quoted(self.d())),
        )
        .await
    }
}
