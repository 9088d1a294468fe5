//! [`IcebergSource`]: a table read at one pinned snapshot, chunked by date or time range with the
//! range pushed down to Iceberg's file pruning; each chunk's file list is persisted at planning and
//! checked on every read.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::manifest::{InputRange, RunManifest};
use backfill_core::plan::{ChunkSpec, PlannedChunk, SourcePlan, SourceState};
use backfill_core::source::BackfillSource;
use backfill_core::{Error, Result};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::{Datum, PrimitiveType, Type};
use iceberg::table::Table;
use iceberg::TableIdent;
use serde::{Deserialize, Serialize};

use crate::catalog::IcebergCatalog;
use crate::error::{ice, IcebergError};
use crate::rows::{ArrowRows, SerdeRows};

/// How an [`IcebergSource`] cuts a range into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcebergChunking {
    /// One chunk per calendar month (UTC).
    Month,
    /// Chunks of `n` days.
    Days(u32),
}

/// What planning resolved for one chunk: the snapshot, the range filter and the files it selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcebergChunkState {
    /// The table.
    pub table: String,
    /// The snapshot read.
    pub snapshot_id: i64,
    /// The column the range filters on.
    pub column: String,
    /// `(path, record count)` of every data file the chunk's filter keeps, by path.
    pub files: Vec<(String, u64)>,
}

/// Reads an Iceberg table at a pinned snapshot.
///
/// The manifest's `source.snapshot` is a snapshot id or a ref (branch or tag) name, resolved once at
/// planning; without one, `main`'s head at planning is read and recorded. `source.range` is a date
/// (or timestamp) range over [`range_column`](Self::new).
pub struct IcebergSource<I, C = SerdeRows<I>> {
    catalog: IcebergCatalog,
    table: TableIdent,
    column: String,
    chunking: IcebergChunking,
    codec: Arc<C>,
    name: String,
    protect: bool,
    _rows: PhantomData<fn() -> I>,
}

impl<I, C> fmt::Debug for IcebergSource<I, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IcebergSource")
            .field("table", &self.name)
            .field("column", &self.column)
            .field("chunking", &self.chunking)
            .finish_non_exhaustive()
    }
}

impl<I: Serialize + serde::de::DeserializeOwned + Send + 'static> IcebergSource<I, SerdeRows<I>> {
    /// Reads `table`, filtering the manifest's range on `range_column`; monthly chunks.
    pub fn new(
        catalog: IcebergCatalog,
        table: TableIdent,
        range_column: impl Into<String>,
    ) -> Self {
        Self::with_codec(catalog, table, range_column, SerdeRows::new())
    }
}

impl<I: Send + 'static, C: ArrowRows<I>> IcebergSource<I, C> {
    /// A source with a hand-written row conversion.
    pub fn with_codec(
        catalog: IcebergCatalog,
        table: TableIdent,
        range_column: impl Into<String>,
        codec: C,
    ) -> Self {
        Self {
            name: format!("iceberg:{table}"),
            catalog,
            table,
            column: range_column.into(),
            chunking: IcebergChunking::Month,
            codec: Arc::new(codec),
            protect: false,
            _rows: PhantomData,
        }
    }

    /// At planning, tags the resolved snapshot `bf-input-<run>` so that snapshot expiry cannot take
    /// the input away while the run (or a later audit) still needs it. Off by default: it writes to
    /// the source table's metadata (a ref, no data).
    pub fn protect_input(mut self, yes: bool) -> Self {
        self.protect = yes;
        self
    }

    /// Chooses the chunking (default monthly).
    pub fn chunking(mut self, c: IcebergChunking) -> Self {
        self.chunking = c;
        self
    }

    fn resolve(&self, table: &Table, pin: Option<&str>) -> Result<(i64, Option<String>)> {
        let md = table.metadata();
        let refuse = |detail: String| -> Error {
            IcebergError::Pinned {
                table: self.table.to_string(),
                detail,
            }
            .into()
        };
        match pin {
            Some(p) => {
                if let Ok(id) = p.parse::<i64>() {
                    if md.snapshot_by_id(id).is_some() {
                        return Ok((id, None));
                    }
                }
                md.snapshot_for_ref(p)
                    .map(|s| (s.snapshot_id(), Some(p.to_owned())))
                    .ok_or_else(|| {
                        refuse(format!(
                            "the pinned snapshot or ref `{p}` does not exist (expired?)"
                        ))
                    })
            }
            None => md
                .current_snapshot_id()
                .map(|id| (id, None))
                .ok_or_else(|| refuse("the table has no snapshot to read".into())),
        }
    }

    fn filter(&self, table: &Table, range: &InputRange) -> Result<Predicate> {
        let field = table
            .metadata()
            .current_schema()
            .field_by_name(&self.column)
            .ok_or_else(|| {
                crate::error::schema(
                    &self.table,
                    format!("range column `{}` does not exist", self.column),
                )
            })?;
        let prim = match field.field_type.as_ref() {
            Type::Primitive(p) => p.clone(),
            other => {
                return Err(crate::error::schema(
                    &self.table,
                    format!(
                        "range column `{}` is {other}, not a date or timestamp",
                        self.column
                    ),
                ))
            }
        };
        let bound = |t: DateTime<Utc>| -> Result<Datum> {
            Ok(match prim {
                PrimitiveType::Date => Datum::date((t.date_naive() - epoch()).num_days() as i32),
                PrimitiveType::Timestamptz => Datum::timestamptz_micros(t.timestamp_micros()),
                PrimitiveType::Timestamp => Datum::timestamp_micros(t.timestamp_micros()),
                ref other => {
                    return Err(crate::error::schema(
                        &self.table,
                        format!(
                            "range column `{}` is {other}, not a date or timestamp",
                            self.column
                        ),
                    ))
                }
            })
        };
        let (from, to) = instants(range).ok_or_else(|| Error::InvalidManifest {
            run_id: Default::default(),
            field: "source.range".into(),
            message: "an Iceberg source reads a dates or timestamps range".into(),
        })?;
        Ok(Reference::new(&self.column)
            .greater_than_or_equal_to(bound(from)?)
            .and(Reference::new(&self.column).less_than(bound(to)?)))
    }

    async fn files(
        &self,
        table: &Table,
        snapshot: i64,
        filter: Predicate,
    ) -> Result<Vec<(String, u64)>> {
        let what = || format!("planning a read of {} at {snapshot}", self.table);
        let scan = table
            .scan()
            .snapshot_id(snapshot)
            .with_filter(filter)
            .build()
            .map_err(|e| ice(what(), e))?;
        let mut files: Vec<(String, u64)> = scan
            .plan_files()
            .await
            .map_err(|e| ice(what(), e))?
            .map_ok(|t| (t.data_file_path.clone(), t.record_count.unwrap_or(0)))
            .try_collect()
            .await
            .map_err(|e| ice(what(), e))?;
        files.sort();
        files.dedup();
        Ok(files)
    }

    async fn read_chunk(&self, chunk: PlannedChunk) -> Result<BoxStream<'static, Result<Vec<I>>>> {
        let state: IcebergChunkState = chunk.state.parse()?;
        let table = self.catalog.load(&self.table).await?;
        if table.metadata().snapshot_by_id(state.snapshot_id).is_none() {
            return Err(IcebergError::Pinned {
                table: self.table.to_string(),
                detail: format!(
                    "chunk {}: snapshot {} no longer exists (expired after planning)",
                    chunk.id, state.snapshot_id
                ),
            }
            .into());
        }
        let filter = self.filter(&table, &chunk.range)?;
        let now = self
            .files(&table, state.snapshot_id, filter.clone())
            .await?;
        if now != state.files {
            return Err(IcebergError::Pinned {
                table: self.table.to_string(),
                detail: format!(
                    "chunk {}: the files of snapshot {} differ from the plan ({} planned, {} now)",
                    chunk.id,
                    state.snapshot_id,
                    state.files.len(),
                    now.len()
                ),
            }
            .into());
        }
        let what = format!("reading {} at {}", self.table, state.snapshot_id);
        let scan = table
            .scan()
            .snapshot_id(state.snapshot_id)
            .with_filter(filter)
            .with_concurrency_limit(1)
            .build()
            .map_err(|e| ice(what.clone(), e))?;
        let batches = scan.to_arrow().await.map_err(|e| ice(what.clone(), e))?;
        let codec = Arc::clone(&self.codec);
        let name = self.table.to_string();
        Ok(batches
            .map(move |b| {
                let b = b.map_err(|e| ice(what.clone(), e))?;
                codec.decode(&b).map_err(|e| crate::error::arrow(&name, e))
            })
            .try_filter(|rows| futures::future::ready(!rows.is_empty()))
            .boxed())
    }
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

fn instants(range: &InputRange) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    match range {
        InputRange::Dates { from, to_exclusive } => Some((
            from.and_hms_opt(0, 0, 0)?.and_utc(),
            to_exclusive.and_hms_opt(0, 0, 0)?.and_utc(),
        )),
        InputRange::Timestamps { from, to_exclusive } => Some((*from, *to_exclusive)),
        _ => None,
    }
}

/// The sub-ranges of a dates range.
fn split_dates(from: NaiveDate, to: NaiveDate, by: IcebergChunking) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let next = match by {
            IcebergChunking::Month => {
                let (y, m) = if at.month() == 12 {
                    (at.year() + 1, 1)
                } else {
                    (at.year(), at.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(to)
            }
            IcebergChunking::Days(n) => at + Duration::days(i64::from(n.max(1))),
        };
        let end = next.min(to);
        out.push((at, end));
        at = end;
    }
    out
}

#[async_trait]
impl<I: Send + 'static, C: ArrowRows<I>> BackfillSource<I> for IcebergSource<I, C> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn plan(&self, manifest: &RunManifest) -> Result<SourcePlan> {
        let table = self.catalog.load(&self.table).await?;
        let (snapshot, resolved_from) =
            self.resolve(&table, manifest.source.snapshot.as_deref())?;
        if self.protect {
            crate::refs::create_tag(
                &self.catalog,
                &self.table,
                &format!("bf-input-{}", manifest.run_id),
                snapshot,
            )
            .await?;
        }
        let range = manifest
            .source
            .range
            .clone()
            .ok_or_else(|| Error::InvalidManifest {
                run_id: manifest.run_id.clone(),
                field: "source.range".into(),
                message: "an Iceberg source needs an input range".into(),
            })?;
        let ranges: Vec<InputRange> = match &range {
            InputRange::Dates { from, to_exclusive } => {
                split_dates(*from, *to_exclusive, self.chunking)
                    .into_iter()
                    .map(|(from, to_exclusive)| InputRange::Dates { from, to_exclusive })
                    .collect()
            }
            InputRange::Timestamps { .. } => vec![range.clone()],
            _ => {
                return Err(Error::InvalidManifest {
                    run_id: manifest.run_id.clone(),
                    field: "source.range".into(),
                    message: "an Iceberg source reads a dates or timestamps range".into(),
                })
            }
        };
        let mut chunks = Vec::with_capacity(ranges.len());
        for r in ranges {
            let files = self
                .files(&table, snapshot, self.filter(&table, &r)?)
                .await?;
            let label = match &r {
                InputRange::Dates { from, to_exclusive }
                    if self.chunking == IcebergChunking::Month
                        && from.day() == 1
                        && (*to_exclusive - *from).num_days() >= 28 =>
                {
                    from.format("%Y-%m").to_string()
                }
                other => other.to_string(),
            };
            let rows = files.iter().map(|f| f.1).sum();
            let state = SourceState::of(&IcebergChunkState {
                table: self.table.to_string(),
                snapshot_id: snapshot,
                column: self.column.clone(),
                files,
            })?;
            chunks.push(
                ChunkSpec::new(r, label)
                    .with_estimate(rows, None)
                    .with_state(state),
            );
        }
        Ok(SourcePlan {
            snapshot: Some(snapshot.to_string()),
            resolved_from,
            chunks,
        })
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, Result<Vec<I>>> {
        let this = Self {
            catalog: self.catalog.clone(),
            table: self.table.clone(),
            column: self.column.clone(),
            chunking: self.chunking,
            codec: Arc::clone(&self.codec),
            name: self.name.clone(),
            protect: self.protect,
            _rows: PhantomData,
        };
        let chunk = chunk.clone();
        stream::once(async move { this.read_chunk(chunk).await })
            .try_flatten()
            .boxed()
    }
}
