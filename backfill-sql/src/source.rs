//! A table or a query as a [`BackfillSource`]: keyset-chunked, pinned by a content digest, read in
//! bounded batches.
//!
//! # Chunks
//! - **By date**: one chunk per calendar month ([`SqlSourceBuilder::chunk_by_month`]) or per `n` days
//!   ([`SqlSourceBuilder::chunk_by_days`]) of the manifest's [`InputRange::Dates`], over a `DATE`
//!   column (`YYYY-MM-DD` text on SQLite) or a column of UTC epoch seconds.
//! - **By key**: chunks of about `n` rows of an integer key column
//!   ([`SqlSourceBuilder::keys_per_chunk`]) over the manifest's [`InputRange::Keys`]. The core compares
//!   key ranges as text, so the manifest writes the bounds zero-padded to one width (`"000000"` to
//!   `"100000"`) and the chunk bounds are written the same way. Rows with one key value stay in one
//!   chunk.
//!
//! # Snapshot
//! `plan` reads the whole input range once, in key order and in batches, and records per chunk its row
//! count and a sha256 digest of its rows ([`SqlChunkState`], the chunk's
//! [`SourceState`]). The plan's snapshot id is the digest of those digests
//! (`sql:sha256:…`), or what a caller-supplied function returns
//! ([`SqlSourceBuilder::snapshot_with`]). `read` recomputes the chunk's count and digest while it
//! streams and ends the stream with an error naming the chunk when they differ from the plan: input
//! changed after planning never becomes silently different output (the failed stream leaves nothing
//! staged).
//!
//! # Records made of several rows
//! [`SqlSource::grouped`] folds consecutive rows with one group key into one record (events into a
//! case history). Chunk by a column that is constant within a group (the case's opening date, copied
//! onto each event row) so every group is whole in one chunk; a query source can add filters
//! (`WHERE at_epoch < …`).
//!
//! # Reads
//! Keyset pagination over a unique key ([`SqlSourceBuilder::key`]): `WHERE <chunk> AND (k1, k2) >
//! (?, ?) ORDER BY k1, k2 LIMIT <batch>`, so memory is bounded by the batch size and a chunk reads the
//! same rows in the same order every time. Only `SELECT`s: a source never writes.

mod grouped;
mod scan;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::estimate::SizeEstimate;
use backfill_core::manifest::{InputRange, RunManifest};
use backfill_core::plan::{ChunkSpec, PlannedChunk, SourcePlan, SourceState};
use backfill_core::source::BackfillSource;
use backfill_core::Error as CoreError;
use chrono::{Datelike as _, Months, NaiveDate};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ADAPTER;
use crate::ident::{Ident, QualifiedName};
use crate::pool::SqlPool;
use crate::row::{Column, SqlType};

pub use grouped::Grouped;
use scan::{Bounds, Scan};

/// What `plan` recorded for one chunk, checked again by `read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlChunkState {
    /// Rows in the chunk at planning time.
    pub rows: u64,
    /// `sha256:<hex>` of the chunk's rows in key order.
    pub digest: String,
}

/// A caller-supplied snapshot id for an input range (instead of the content digest).
pub type SnapshotFn = Arc<
    dyn Fn(SqlPool, InputRange) -> BoxFuture<'static, backfill_core::Result<String>> + Send + Sync,
>;

/// How the chunk column stores dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateEncoding {
    /// `DATE` (`YYYY-MM-DD` text on SQLite).
    Date,
    /// Seconds since the Unix epoch, UTC.
    EpochSeconds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Month,
    Days(u32),
}

#[derive(Debug, Clone)]
enum Chunking {
    Dates {
        column: Ident,
        encoding: DateEncoding,
        period: Period,
    },
    Keys {
        column: Ident,
        per_chunk: u64,
    },
}

pub(crate) enum Relation {
    Table(QualifiedName),
    Query(String),
}

pub(crate) struct Inner {
    pub(crate) pool: SqlPool,
    pub(crate) relation: Relation,
    pub(crate) name: String,
    pub(crate) columns: &'static [Column],
    /// Positions in `columns` of the keyset order.
    pub(crate) key: Vec<usize>,
    pub(crate) batch: usize,
    chunking: Chunking,
    snapshot: Option<SnapshotFn>,
}

/// Rows of a table or query, deserialized into `I` through serde (like [`SqlRow`](crate::SqlRow)
/// rows: one field per [`Column`], in order). Build it with [`SqlSourceBuilder`].
///
/// ```no_run
/// # async fn f(pool: backfill_sql::SqlPool) -> backfill_core::Result<()> {
/// use backfill_sql::{Column, SqlSource, SqlSourceBuilder, SqlType};
/// #[derive(serde::Deserialize)]
/// struct Event { case_id: String, seq: i64, event_date: chrono::NaiveDate, kind: String }
/// static COLUMNS: &[Column] = &[
///     Column::new("case_id", SqlType::Text),
///     Column::new("seq", SqlType::BigInt),
///     Column::new("event_date", SqlType::Date),
///     Column::new("kind", SqlType::Text),
/// ];
/// let source: SqlSource<Event> = SqlSourceBuilder::table(pool, "bronze.case_events")
///     .columns(COLUMNS)
///     .key(&["case_id", "seq"])
///     .date_column("event_date")
///     .chunk_by_month()
///     .batch_size(5000)
///     .build()?;
/// # Ok(()) }
/// ```
pub struct SqlSource<I> {
    inner: Arc<Inner>,
    _rows: PhantomData<fn() -> I>,
}

impl<I> Clone for SqlSource<I> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _rows: PhantomData,
        }
    }
}

impl<I> fmt::Debug for SqlSource<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSource")
            .field("name", &self.inner.name)
            .field("dialect", &self.inner.pool.dialect())
            .field("chunking", &self.inner.chunking)
            .field("batch", &self.inner.batch)
            .finish()
    }
}

/// Builds a [`SqlSource`]. Every name is validated by [`build`](Self::build); nothing touches the
/// database until `plan`.
pub struct SqlSourceBuilder<I> {
    pool: SqlPool,
    relation: Result<Relation, CoreError>,
    name: Option<String>,
    columns: &'static [Column],
    key: Vec<String>,
    date: Option<(String, DateEncoding)>,
    period: Option<Period>,
    key_column: Option<(String, u64)>,
    batch: usize,
    snapshot: Option<SnapshotFn>,
    _rows: PhantomData<fn() -> I>,
}

impl<I> fmt::Debug for SqlSourceBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSourceBuilder")
            .field("name", &self.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn config(message: impl Into<String>) -> CoreError {
    CoreError::adapter(ADAPTER, message.into())
}

impl<I> SqlSourceBuilder<I> {
    fn new(pool: SqlPool, relation: Result<Relation, CoreError>, name: Option<String>) -> Self {
        Self {
            pool,
            relation,
            name,
            columns: &[],
            key: Vec::new(),
            date: None,
            period: None,
            key_column: None,
            batch: 1000,
            snapshot: None,
            _rows: PhantomData,
        }
    }

    /// Rows of a table, `table` or `schema.table` (see [`QualifiedName`]).
    pub fn table(pool: SqlPool, table: &str) -> Self {
        Self::new(
            pool,
            QualifiedName::parse(table).map(Relation::Table),
            Some(table.to_owned()),
        )
    }

    /// Rows of a query, written by the program (never from input): it is used as a subquery,
    /// `SELECT … FROM (<query>) bf_src WHERE …`, and must expose the columns, the key and the chunk
    /// column by name.
    pub fn query(pool: SqlPool, sql: impl Into<String>) -> Self {
        Self::new(pool, Ok(Relation::Query(sql.into())), None)
    }

    /// The name in logs and evidence (default: the table name, or `query`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The columns read, in the field order of `I`.
    pub fn columns(mut self, columns: &'static [Column]) -> Self {
        self.columns = columns;
        self
    }

    /// The unique key (non-null columns among [`columns`](Self::columns)) that orders a chunk's rows
    /// and pages through them. Defaults to the key column when chunking by key.
    pub fn key(mut self, columns: &[&str]) -> Self {
        self.key = columns.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Chunks by a `DATE` column (`YYYY-MM-DD` text on SQLite).
    pub fn date_column(mut self, column: &str) -> Self {
        self.date = Some((column.to_owned(), DateEncoding::Date));
        self
    }

    /// Chunks by a column of UTC epoch seconds (a day starts at midnight UTC).
    pub fn epoch_seconds_column(mut self, column: &str) -> Self {
        self.date = Some((column.to_owned(), DateEncoding::EpochSeconds));
        self
    }

    /// One chunk per calendar month of the input range (the first and last may be partial).
    pub fn chunk_by_month(mut self) -> Self {
        self.period = Some(Period::Month);
        self
    }

    /// One chunk per `days` days of the input range.
    pub fn chunk_by_days(mut self, days: u32) -> Self {
        self.period = Some(Period::Days(days));
        self
    }

    /// Chunks by an integer key column, about `per_chunk` rows each.
    pub fn keys_per_chunk(mut self, column: &str, per_chunk: u64) -> Self {
        self.key_column = Some((column.to_owned(), per_chunk));
        self
    }

    /// Rows per batch handed to the transform (and per page read).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch = rows;
        self
    }

    /// Uses `f(pool, input range)` as the snapshot id instead of the content digest (a load id, a
    /// database snapshot name). Chunk counts and digests are still recorded and verified.
    pub fn snapshot_with(mut self, f: SnapshotFn) -> Self {
        self.snapshot = Some(f);
        self
    }

    /// Validates names and settings.
    pub fn build(self) -> backfill_core::Result<SqlSource<I>> {
        let relation = self.relation?;
        if self.columns.is_empty() {
            return Err(config("sql source: no columns (call .columns(...))"));
        }
        for c in self.columns {
            Ident::new(c.name)?;
        }
        let position = |name: &str| -> backfill_core::Result<usize> {
            Ident::new(name)?;
            self.columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| {
                    config(format!(
                        "sql source: key column `{name}` is not among the columns"
                    ))
                })
        };
        let chunking = match (self.date, self.key_column) {
            (Some((column, encoding)), None) => Chunking::Dates {
                column: Ident::new(&column)?,
                encoding,
                period: match self.period {
                    Some(Period::Days(0)) => return Err(config("sql source: chunk_by_days(0)")),
                    Some(p) => p,
                    None => {
                        return Err(config(
                            "sql source: date chunks need chunk_by_month() or chunk_by_days(n)",
                        ))
                    }
                },
            },
            (None, Some((column, per_chunk))) if per_chunk > 0 => {
                let at = position(&column)?;
                if self.columns[at].ty != SqlType::BigInt {
                    return Err(config(format!(
                        "sql source: key column `{column}` must be BigInt"
                    )));
                }
                Chunking::Keys {
                    column: Ident::new(&column)?,
                    per_chunk,
                }
            }
            (None, Some(_)) => return Err(config("sql source: keys_per_chunk needs at least 1")),
            _ => return Err(config(
                "sql source: chunk either by a date column or by a key column, not both or neither",
            )),
        };
        let mut key: Vec<usize> = self
            .key
            .iter()
            .map(|k| position(k))
            .collect::<Result<_, _>>()?;
        if let Chunking::Keys { column, .. } = &chunking {
            // The chunk key orders first, so chunk bounds and pages follow one order.
            let at = position(column.as_str())?;
            key.retain(|k| *k != at);
            key.insert(0, at);
        }
        if key.is_empty() {
            return Err(config(
                "sql source: no key (call .key(...)): pages need a unique order",
            ));
        }
        let name = self.name.unwrap_or_else(|| "query".into());
        Ok(SqlSource {
            inner: Arc::new(Inner {
                pool: self.pool,
                relation,
                name,
                columns: self.columns,
                key,
                batch: self.batch.max(1),
                chunking,
                snapshot: self.snapshot,
            }),
            _rows: PhantomData,
        })
    }
}

/// The first day of the month after `d`.
fn next_month(d: NaiveDate) -> Option<NaiveDate> {
    d.checked_add_months(Months::new(1))
        .and_then(|n| n.with_day(1))
}

/// Zero-padded key text of `width` digits.
fn key_text(k: i64, width: usize) -> String {
    format!("{k:0width$}")
}

impl<I> SqlSource<I> {
    /// Resolves an input range into chunks with their recorded state and the snapshot id.
    pub async fn resolve(&self, range: &InputRange) -> backfill_core::Result<SourcePlan> {
        let inner = &self.inner;
        let mut chunks = Vec::new();
        match (&inner.chunking, range) {
            (Chunking::Dates { period, .. }, InputRange::Dates { from, to_exclusive }) => {
                let mut start = *from;
                while start < *to_exclusive {
                    let next = match period {
                        Period::Month => next_month(start),
                        Period::Days(n) => start.checked_add_days(chrono::Days::new(u64::from(*n))),
                    }
                    .unwrap_or(*to_exclusive)
                    .min(*to_exclusive);
                    let label = match period {
                        Period::Month => start.format("%Y-%m").to_string(),
                        Period::Days(_) => start.format("%Y-%m-%d").to_string(),
                    };
                    let state = Scan::new(inner, self.bounds_of_dates(start, next)).digest().await?;
                    chunks.push(
                        ChunkSpec::new(
                            InputRange::Dates {
                                from: start,
                                to_exclusive: next,
                            },
                            label,
                        )
                        .with_estimate(state.rows, None)
                        .with_state(SourceState::of(&state)?),
                    );
                    start = next;
                }
            }
            (Chunking::Keys { per_chunk, .. }, InputRange::Keys { from, to_exclusive }) => {
                let width = to_exclusive.len();
                let parse = |s: &str| -> backfill_core::Result<i64> {
                    if s.len() != width {
                        return Err(config(format!(
                            "sql source {}: key range bounds `{from}` and `{to_exclusive}` must be written zero-padded to one width (the core orders key ranges as text)",
                            inner.name
                        )));
                    }
                    s.parse()
                        .map_err(|_| config(format!("sql source {}: key `{s}` is not an integer", inner.name)))
                };
                let (lo, hi) = (parse(from)?, parse(to_exclusive)?);
                for (a, b, state) in Scan::new(inner, Bounds::Keys(lo, hi)).split(*per_chunk).await? {
                    let (a, b) = (key_text(a, width), key_text(b, width));
                    chunks.push(
                        ChunkSpec::new(
                            InputRange::Keys {
                                from: a.clone(),
                                to_exclusive: b.clone(),
                            },
                            format!("{a}..{b}"),
                        )
                        .with_estimate(state.rows, None)
                        .with_state(SourceState::of(&state)?),
                    );
                }
            }
            (_, other) => {
                return Err(config(format!(
                    "sql source {}: cannot chunk input range {other} this way (dates need a date column, keys a key column)",
                    inner.name
                )))
            }
        }
        let snapshot = match &inner.snapshot {
            Some(f) => f(inner.pool.clone(), range.clone()).await?,
            None => content_snapshot(&chunks)?,
        };
        Ok(SourcePlan {
            snapshot: Some(snapshot),
            resolved_from: None,
            chunks,
        })
    }

    /// The snapshot id `plan` would record for `range` (to pin it in a manifest).
    pub async fn snapshot(&self, range: &InputRange) -> backfill_core::Result<String> {
        self.resolve(range)
            .await?
            .snapshot
            .ok_or_else(|| config("no snapshot"))
    }

    fn bounds_of_dates(&self, from: NaiveDate, to: NaiveDate) -> Bounds {
        match &self.inner.chunking {
            Chunking::Dates {
                encoding: DateEncoding::EpochSeconds,
                ..
            } => {
                let s = |d: NaiveDate| {
                    d.and_hms_opt(0, 0, 0)
                        .map_or(0, |t| t.and_utc().timestamp())
                };
                Bounds::Epoch(s(from), s(to))
            }
            _ => Bounds::Dates(from, to),
        }
    }

    fn bounds_of(&self, chunk: &PlannedChunk) -> backfill_core::Result<Bounds> {
        match (&self.inner.chunking, &chunk.range) {
            (Chunking::Dates { .. }, InputRange::Dates { from, to_exclusive }) => {
                Ok(self.bounds_of_dates(*from, *to_exclusive))
            }
            (Chunking::Keys { .. }, InputRange::Keys { from, to_exclusive }) => {
                let p = |s: &str| {
                    s.parse::<i64>()
                        .map_err(|e| CoreError::corrupt("sql source chunk range", e))
                };
                Ok(Bounds::Keys(p(from)?, p(to_exclusive)?))
            }
            (_, r) => Err(config(format!(
                "sql source {}: chunk {} has range {r}, which this source does not chunk by",
                self.inner.name, chunk.id
            ))),
        }
    }

    /// The chunk column and how it is bound.
    pub(crate) fn chunk_column(inner: &Inner) -> &Ident {
        match &inner.chunking {
            Chunking::Dates { column, .. } | Chunking::Keys { column, .. } => column,
        }
    }
}

/// `sql:sha256:<hex>` over the chunks' ranges, counts and digests, in plan order.
fn content_snapshot(chunks: &[ChunkSpec]) -> backfill_core::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"backfill-sql source v1\0");
    for c in chunks {
        let s: SqlChunkState = c.state.parse()?;
        h.update(c.range.to_string().as_bytes());
        h.update([0]);
        h.update(s.rows.to_be_bytes());
        h.update(s.digest.as_bytes());
        h.update([0]);
    }
    Ok(format!("sql:sha256:{}", hex::encode(h.finalize())))
}

#[async_trait]
impl<I: DeserializeOwned + Send + 'static> BackfillSource<I> for SqlSource<I> {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn plan(&self, manifest: &RunManifest) -> backfill_core::Result<SourcePlan> {
        let range = manifest.source.range.as_ref().ok_or_else(|| {
            config(format!(
                "run {}: the manifest has no input range",
                manifest.run_id
            ))
        })?;
        self.resolve(range).await
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, backfill_core::Result<Vec<I>>> {
        let planned = self.bounds_of(chunk).and_then(|b| {
            let state: SqlChunkState = chunk.state.parse().map_err(|_| {
                CoreError::corrupt(
                    "sql source state",
                    format!("chunk {} has no recorded row count and digest", chunk.id),
                )
            })?;
            Ok((b, state))
        });
        let (bounds, state) = match planned {
            Ok(p) => p,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let label = format!("chunk {} ({})", chunk.id, chunk.label);
        scan::read::<I>(Arc::clone(&self.inner), bounds, state, label)
    }

    /// The row count planning recorded in the chunk's state (exact: `read` refuses a chunk whose
    /// count changed since). Bytes are not sized: engines keep no per-range byte counts.
    async fn estimate(&self, chunk: &PlannedChunk) -> backfill_core::Result<SizeEstimate> {
        let state: SqlChunkState = chunk.state.parse().map_err(|_| {
            CoreError::corrupt(
                "sql source state",
                format!(
                    "sql source {}: chunk {} ({}) has no recorded row count",
                    self.inner.name, chunk.id, chunk.label
                ),
            )
        })?;
        Ok(SizeEstimate::records(state.rows))
    }
}

/// The error of a chunk whose input changed after planning (permanent: re-plan the run, or restore
/// the input).
pub(crate) fn changed(
    name: &str,
    label: &str,
    planned: &SqlChunkState,
    read: &SqlChunkState,
) -> CoreError {
    CoreError::adapter(
        ADAPTER,
        format!(
            "sql source {name}: {label}: input changed since planning: planned {} rows with digest {}, read {} rows with digest {}",
            planned.rows, planned.digest, read.rows, read.digest
        ),
    )
}
