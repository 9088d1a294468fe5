//! Run-scoped staging tables, loaded in bulk: binary COPY on PostgreSQL, multi-row INSERT elsewhere.

use std::fmt;
use std::marker::PhantomData;

use async_trait::async_trait;
use backfill_core::ids::RunId;
use backfill_core::sink::{
    SinkDescriptor, StageReceipt, StageRequest, StagedArtifact, StagingSink,
};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bind::{bind_value, read_value, types};
use crate::copy::CopyWriter;
use crate::dialect::Dialect;
use crate::error::{db, Error};
use crate::ident::{Ident, QualifiedName};
use crate::migrate::migrate;
use crate::pool::{with_pool, SqlPool};
use backfill_core::digest::OutputRow;
use serde::de::DeserializeOwned;

mod fence;

use crate::row::{all_columns, decode, encode, lineage_values, RowSchema, SqlRow, Value, Values};

/// Column holding the chunk id in staging tables.
pub(crate) const CHUNK_COLUMN: &str = "bf_chunk_id";

/// What [`SqlSink::stage`](StagingSink::stage) staged for one chunk: the artifact in its
/// [`StageReceipt`], recorded in the run store's chunk ledger and handed to the publisher.
///
/// Stored as JSON: `{"table": "silver.bfs_…", "target": "silver.case_sla_monthly",
/// "chunk_id": "00003-…", "attempt": 2}`. A publisher reads it back with
/// [`SqlArtifact::from_artifact`]; the chunk's rows are the rows of `table` whose `bf_chunk_id`
/// column equals `chunk_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlArtifact {
    /// The staging table, unquoted, schema-qualified (`schema.table`) when the target is.
    pub table: String,
    /// The target the rows are staged for, as the sink was given it (`schema.table` or `table`).
    pub target: String,
    /// The chunk; its rows are the staging table's rows with this `bf_chunk_id`.
    pub chunk_id: String,
    /// The ledger attempt whose rows these are (the fencing token the stage ran with).
    pub attempt: u32,
}

impl SqlArtifact {
    /// Reads a [`StagedArtifact`] made by [`SqlSink`]; any other shape is
    /// [`Error::Corrupt`](backfill_core::Error::Corrupt).
    pub fn from_artifact(artifact: &StagedArtifact) -> backfill_core::Result<Self> {
        artifact.parse()
    }

    /// The opaque form the core records.
    pub fn to_artifact(&self) -> backfill_core::Result<StagedArtifact> {
        StagedArtifact::of(self)
    }
}

/// Stages rows into one table per `(target, run)`, named `bfs_<hash>` (in the target's schema when the
/// target is schema-qualified, see [`QualifiedName`]), with the row's columns, the lineage columns
/// and the chunk id. Re-staging a chunk deletes and reloads it in one transaction.
///
/// Stale attempts are fenced (contract clause 6): the staging transaction first locks the chunk's
/// fence row and, when the run store shares the database, the chunk's ledger row, and refuses an
/// attempt older than the fence or other than the ledger's current claim with
/// [`Error::Fenced`](backfill_core::Error::Fenced). The receipt's artifact is a [`SqlArtifact`].
pub struct SqlSink<R> {
    pool: SqlPool,
    target: QualifiedName,
    schema: RowSchema,
    _rows: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for SqlSink<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSink")
            .field("dialect", &self.pool.dialect())
            .field("target", &self.target)
            .finish()
    }
}

/// Validates a row type's column names once.
pub(crate) fn check_columns<R>(schema: &RowSchema) -> backfill_core::Result<Vec<Ident>> {
    let cols: Vec<Ident> = schema
        .columns
        .iter()
        .map(|c| Ident::new(c.name))
        .collect::<Result<_, _>>()?;
    if schema.partition_index().is_none() {
        return Err(Error::Row {
            row: std::any::type_name::<R>(),
            detail: format!(
                "partition column `{}` is not in the schema",
                schema.partition_column
            ),
        }
        .into());
    }
    let reserved = crate::row::LINEAGE
        .iter()
        .map(|(n, _, _)| *n)
        .chain([CHUNK_COLUMN]);
    for name in reserved {
        if let Some(c) = schema
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
        {
            return Err(Error::Row {
                row: std::any::type_name::<R>(),
                detail: format!(
                    "column `{}` is a lineage column the sink adds to every row; remove it from the row type",
                    c.name
                ),
            }
            .into());
        }
    }
    Ok(cols)
}

/// `"a", "b", ...` for the row's columns, lineage included.
pub(crate) fn column_list(schema: &RowSchema, d: Dialect, prefix: &str) -> String {
    all_columns(schema.columns)
        .map(|(n, _, _)| format!("{prefix}{}", d.quote(&n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Column definitions for DDL.
pub(crate) fn column_ddl(schema: &RowSchema, d: Dialect) -> String {
    all_columns(schema.columns)
        .map(|(n, t, null)| {
            format!(
                "{} {}{}",
                d.quote(&n),
                t.ddl(d),
                if null { " NULL" } else { " NOT NULL" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl<R: SqlRow> SqlSink<R> {
    /// A sink staging rows for `target` (`table` or `schema.table`) on `pool`.
    pub async fn new(pool: SqlPool, target: &str) -> backfill_core::Result<Self> {
        Self::with_schema(pool, target, RowSchema::of::<R>()).await
    }
}

impl<R: OutputRow + DeserializeOwned> SqlSink<R> {
    /// A sink for a row type described by `schema`.
    pub async fn with_schema(
        pool: SqlPool,
        target: &str,
        schema: RowSchema,
    ) -> backfill_core::Result<Self> {
        check_columns::<R>(&schema)?;
        let target = QualifiedName::parse(target)?;
        migrate(&pool).await?;
        Ok(Self {
            pool,
            target,
            schema,
            _rows: PhantomData,
        })
    }

    /// The row schema.
    pub fn schema(&self) -> &RowSchema {
        &self.schema
    }

    /// The pool.
    pub fn pool(&self) -> &SqlPool {
        &self.pool
    }

    /// The target name.
    pub fn target(&self) -> &QualifiedName {
        &self.target
    }

    /// The staging table of a run (it need not exist yet), in the target's schema.
    pub fn staging_table(&self, run_id: &RunId) -> QualifiedName {
        staging_table_for(&self.target, run_id)
    }

    async fn ensure_table(&self, run_id: &RunId) -> backfill_core::Result<QualifiedName> {
        let d = self.pool.dialect();
        let table = self.staging_table(run_id);
        self.target.ensure_schema(&self.pool).await?;
        let t = table.quoted(d);
        let chunk = d.quote(CHUNK_COLUMN);
        let cols = column_ddl(&self.schema, d);
        let key = d.key_type();
        match d {
            Dialect::MySql => {
                self.pool
                    .execute(&format!("CREATE TABLE IF NOT EXISTS {t} ({cols}, {chunk} {key} NOT NULL, INDEX ({chunk})){}", d.table_options()))
                    .await?;
            }
            _ => {
                self.pool
                    .execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {t} ({cols}, {chunk} {key} NOT NULL)"
                    ))
                    .await?;
                // An index name is not schema-qualified: PostgreSQL puts it in the table's schema.
                // Not a plain `execute`: see `ensure_index` (no SHARE lock per stage, which waited
                // for an autovacuum of the staging table).
                let idx = format!("{}_chunk", table.catalog_parts(d).1);
                self.pool
                    .ensure_index(
                        &idx,
                        &table,
                        &format!(
                            "CREATE INDEX IF NOT EXISTS {} ON {t} ({chunk})",
                            d.quote(&idx)
                        ),
                    )
                    .await?;
            }
        }
        let r = with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("INSERT INTO bf_staging_tables (run_id, target, table_name, created_at) VALUES (?, ?, ?, ?)"))
                .bind(run_id.as_str())
                .bind(self.target.to_string())
                .bind(table.to_string())
                .bind(chrono::Utc::now().timestamp_micros())
                .execute(p)
                .await
                .map(|_| ())
        });
        match r {
            Ok(()) => {}
            Err(e) if crate::error::is_unique_violation(&e) => {}
            Err(e) => return Err(db(e)),
        }
        Ok(table)
    }
}

/// The staging table of `(target, run)`: `bfs_` + 24 hex digits of sha256(target as written, run),
/// in the target's schema: a safe, bounded name whatever the run id is.
pub(crate) fn staging_table_for(target: &QualifiedName, run_id: &RunId) -> QualifiedName {
    let mut h = Sha256::new();
    h.update(target.to_string().as_bytes());
    h.update([0]);
    h.update(run_id.as_str().as_bytes());
    target.sibling(Ident::generated("bfs_", &hex::encode(h.finalize())[..24]))
}

/// Creates the chunk's fence row if missing, outside the staging transaction (PostgreSQL, MySQL).
async fn ensure_fence<DB: sqlx::Database>(
    p: &sqlx::Pool<DB>,
    f: &fence::Fence<'_>,
    d: Dialect,
) -> backfill_core::Result<()>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query::<DB>(&fence::Fence::ensure_sql(d))
        .bind(f.run_id.as_str().to_owned())
        .bind(f.target.to_owned())
        .bind(f.chunk_id.as_str().to_owned())
        .execute(p)
        .await
        .map(drop)
        .map_err(db)
}

/// Characters a MySQL/MariaDB `VARCHAR(255)` holds ([`SqlType::Text`](crate::SqlType::Text)).
const VARCHAR_CHARS: usize = 255;

/// The first [`SqlType::Text`](crate::SqlType::Text) column whose value is longer than MySQL's
/// `VARCHAR(255)` (checked before sending, so the error names the column instead of the server's
/// "data too long").
fn too_long(columns: &[crate::row::Column], values: &[Value]) -> Option<&'static str> {
    columns.iter().zip(values).find_map(|(c, v)| match v {
        Value::Text(s)
            if c.ty == crate::row::SqlType::Text
                && s.len() > VARCHAR_CHARS
                && s.chars().count() > VARCHAR_CHARS =>
        {
            Some(c.name)
        }
        _ => None,
    })
}

fn row_err<R>(e: impl fmt::Display) -> backfill_core::Error {
    Error::Row {
        row: std::any::type_name::<R>(),
        detail: e.to_string(),
    }
    .into()
}

#[async_trait]
impl<R: OutputRow + DeserializeOwned> StagingSink<R> for SqlSink<R> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal(
            format!("staging:{}", self.target),
            format!("{}_table", self.pool.dialect().name()),
        )
    }

    async fn stage(
        &self,
        req: StageRequest<'_>,
        mut rows: BoxStream<'_, backfill_core::Result<Vec<R>>>,
    ) -> backfill_core::Result<StageReceipt> {
        let d = self.pool.dialect();
        let table = self.ensure_table(req.run_id).await?;
        let t = table.quoted(d);
        let chunk = d.quote(CHUNK_COLUMN);
        let cols = column_list(&self.schema, d, "");
        let columns = self.schema.columns;
        let lineage = lineage_values(req.lineage);
        let chunk_value = Value::Text(req.chunk_id.to_string());
        let target = self.target.to_string();
        let f = fence::Fence {
            run_id: req.run_id,
            target: &target,
            chunk_id: req.chunk_id,
            attempt: req.attempt,
        };
        // On MySQL an earlier attempt's rows are looked for with a plain read first: a DELETE that finds
        // nothing still takes InnoDB gap locks, which make concurrent first attempts deadlock.
        let exists = d
            .sql(&format!("SELECT 1 FROM {t} WHERE {chunk} = ? LIMIT 1"))
            .into_owned();
        let delete = d
            .sql(&format!("DELETE FROM {t} WHERE {chunk} = ?"))
            .into_owned();
        let (mut n_rows, mut n_batches) = (0u64, 0u64);
        let ty = types(columns);
        let per_row = ty.len() + 1;
        let max_rows = (d.max_params() / per_row).clamp(1, 500);
        let one = format!("({})", vec!["?"; per_row].join(", "));
        let mysql = d == Dialect::MySql;
        // Deletes the chunk's earlier rows, then multi-row INSERTs the stream's batches, in the open
        // transaction `$tx`.
        macro_rules! replace_rows {
            ($tx:expr) => {
                let earlier = !mysql
                    || sqlx::query_scalar::<_, i64>(&exists)
                        .bind(req.chunk_id.as_str())
                        .fetch_optional(&mut *$tx)
                        .await
                        .map_err(db)?
                        .is_some();
                if earlier {
                    sqlx::query(&delete)
                        .bind(req.chunk_id.as_str())
                        .execute(&mut *$tx)
                        .await
                        .map_err(db)?;
                }
                while let Some(batch) = rows.try_next().await? {
                    n_batches += 1;
                    n_rows += batch.len() as u64;
                    for group in batch.chunks(max_rows) {
                        let mut values = Vec::with_capacity(group.len() * per_row);
                        for r in group {
                            let mut v = Values(Vec::with_capacity(per_row));
                            encode(r, columns, &mut v).map_err(row_err::<R>)?;
                            if mysql {
                                if let Some(col) = too_long(columns, &v.0) {
                                    return Err(row_err::<R>(format!(
                                        "run {} chunk {}: column `{col}` holds more than {VARCHAR_CHARS} characters, the most a MySQL/MariaDB text column can index (declare it SqlType::LongText if it is never a key)",
                                        req.run_id, req.chunk_id
                                    )));
                                }
                            }
                            values.extend(v.0);
                            values.extend(lineage.iter().cloned());
                            values.push(chunk_value.clone());
                        }
                        let sql = format!(
                            "INSERT INTO {t} ({cols}, {chunk}) VALUES {}",
                            vec![one.as_str(); group.len()].join(", ")
                        );
                        let mut q = sqlx::query(&sql);
                        for (i, v) in values.iter().enumerate() {
                            let col_ty = ty
                                .get(i % per_row)
                                .copied()
                                .unwrap_or(crate::row::SqlType::Text);
                            q = bind_value!(q, col_ty, v, mysql);
                        }
                        q.execute(&mut *$tx).await.map_err(db)?;
                    }
                }
            };
        }
        match &self.pool {
            SqlPool::Postgres(p) => {
                ensure_fence(p, &f, d).await?;
                let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
                let mut tx = conn.begin(None).await.map_err(db)?;
                fence::check_postgres(&mut tx, &f).await?;
                sqlx::query(&delete)
                    .bind(req.chunk_id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let fields = columns.len() + lineage.len() + 1;
                let mut w = CopyWriter::default();
                w.header();
                let mut copy = tx
                    .copy_in_raw(&format!(
                        "COPY {t} ({cols}, {chunk}) FROM STDIN (FORMAT binary)"
                    ))
                    .await
                    .map_err(db)?;
                while let Some(batch) = rows.next().await {
                    let batch = match batch {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = copy.abort(e.to_string()).await;
                            return Err(e);
                        }
                    };
                    n_batches += 1;
                    for r in &batch {
                        w.row_start(fields);
                        if let Err(e) = encode(r, columns, &mut w) {
                            let _ = copy.abort(e.to_string()).await;
                            return Err(row_err::<R>(e));
                        }
                        if let Some(col) = w.nul_in {
                            let e = format!(
                                "run {} chunk {}: column `{col}` holds a NUL character, which PostgreSQL text cannot store",
                                req.run_id, req.chunk_id
                            );
                            let _ = copy.abort(e.as_str()).await;
                            return Err(row_err::<R>(e));
                        }
                        for v in &lineage {
                            w.value(v);
                        }
                        w.value(&chunk_value);
                    }
                    n_rows += batch.len() as u64;
                    if w.buf.len() >= 1 << 20 {
                        copy.send(w.buf.as_slice()).await.map_err(db)?;
                        w.buf.clear();
                    }
                }
                w.trailer();
                copy.send(w.buf.as_slice()).await.map_err(db)?;
                copy.finish().await.map_err(db)?;
                tx.commit().await.map_err(db)?;
            }
            SqlPool::MySql(p) => {
                ensure_fence(p, &f, d).await?;
                let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
                let mut tx = conn.begin(None).await.map_err(db)?;
                fence::check_mysql(&mut tx, &f).await?;
                replace_rows!(tx);
                tx.commit().await.map_err(db)?;
            }
            SqlPool::Sqlite(p) => {
                // IMMEDIATE: the write lock is taken by BEGIN, so the fence is read under it.
                let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
                let mut tx = conn.begin(Some("BEGIN IMMEDIATE")).await.map_err(db)?;
                fence::check_sqlite(&mut tx, &f).await?;
                replace_rows!(tx);
                tx.commit().await.map_err(db)?;
            }
        }
        let artifact = SqlArtifact {
            table: table.to_string(),
            target,
            chunk_id: req.chunk_id.to_string(),
            attempt: req.attempt,
        }
        .to_artifact()?;
        Ok(StageReceipt {
            rows: n_rows,
            batches: n_batches,
            artifact,
        })
    }

    fn read_staged<'a>(
        &'a self,
        run_id: &'a RunId,
    ) -> BoxStream<'a, backfill_core::Result<Vec<R>>> {
        let d = self.pool.dialect();
        let table = self.staging_table(run_id);
        let chunks = async move {
            let exists: Option<String> = with_pool!(&self.pool, p => {
                sqlx::query_scalar(&d.sql("SELECT table_name FROM bf_staging_tables WHERE run_id = ? AND target = ?"))
                    .bind(run_id.as_str())
                    .bind(self.target.to_string())
                    .fetch_optional(p)
                    .await
                    .map_err(db)?
            });
            if exists.is_none() {
                return Ok::<Vec<String>, backfill_core::Error>(Vec::new());
            }
            let sql = format!(
                "SELECT DISTINCT {c} FROM {t} ORDER BY {c}",
                c = d.quote(CHUNK_COLUMN),
                t = table.quoted(d)
            );
            let ids: Vec<String> = with_pool!(&self.pool, p => sqlx::query_scalar(&sql).fetch_all(p).await.map_err(db)?);
            Ok(ids)
        };
        stream::once(chunks)
            .map_ok(move |ids| {
                stream::iter(ids.into_iter().map(Ok)).and_then(move |id| {
                    let table = self.staging_table(run_id);
                    async move { self.read_chunk(&table, &id).await }
                })
            })
            .try_flatten()
            .boxed()
    }

    async fn discard(&self, run_id: &RunId) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        let table = self.staging_table(run_id);
        self.pool
            .execute(&format!("DROP TABLE IF EXISTS {}", table.quoted(d)))
            .await?;
        with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("DELETE FROM bf_staging_tables WHERE run_id = ? AND target = ?"))
                .bind(run_id.as_str())
                .bind(self.target.to_string())
                .execute(p)
                .await
                .map(|_| ())
                .map_err(db)?
        });
        Ok(())
    }
}

impl<R: OutputRow + DeserializeOwned> SqlSink<R> {
    async fn read_chunk(
        &self,
        table: &QualifiedName,
        chunk_id: &str,
    ) -> backfill_core::Result<Vec<R>> {
        read_rows::<R>(
            &self.pool,
            &self.schema,
            &format!(
                "{} WHERE {} = ?",
                table.quoted(self.pool.dialect()),
                self.pool.dialect().quote(CHUNK_COLUMN)
            ),
            Some(chunk_id),
        )
        .await
    }
}

/// `SELECT <row columns> FROM <from_where>` decoded into rows; `bind` fills one `?` if given.
pub(crate) async fn read_rows<R: DeserializeOwned>(
    pool: &SqlPool,
    schema: &RowSchema,
    from_where: &str,
    bind: Option<&str>,
) -> backfill_core::Result<Vec<R>> {
    let d = pool.dialect();
    let columns = schema.columns;
    let cols = columns
        .iter()
        .map(|c| d.quote(c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = d
        .sql(&format!("SELECT {cols} FROM {from_where}"))
        .into_owned();
    let mysql = d == Dialect::MySql;
    let raw: Vec<Vec<Value>> = with_pool!(pool, p => {
        let mut q = sqlx::query(&sql);
        if let Some(b) = bind {
            q = q.bind(b);
        }
        let rows = q.fetch_all(p).await.map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut vals = Vec::with_capacity(columns.len());
            for (i, c) in columns.iter().enumerate() {
                vals.push(read_value!(r, i, c.ty, mysql).map_err(db)?);
            }
            out.push(vals);
        }
        out
    });
    raw.into_iter()
        .map(|v| decode::<R>(columns, v).map_err(row_err::<R>))
        .collect()
}
