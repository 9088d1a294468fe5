//! An in-memory source over a vector of records.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Datelike, Months, NaiveDate};
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{Error, Result};
use crate::manifest::{InputRange, OffsetRange, RunManifest};
use crate::plan::{ChunkSpec, PlannedChunk, SourcePlan};
use crate::source::BackfillSource;

/// How [`MemorySource`] splits the input range into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkBy {
    /// One chunk per calendar month of a date range.
    Month,
    /// Chunks of `n` days of a date range.
    Days(u32),
    /// Chunks of `n` offsets of an offset range (records are addressed by their index).
    Offsets(i64),
}

type DateOf<I> = Arc<dyn Fn(&I) -> NaiveDate + Send + Sync>;

/// Records held in memory, addressed by a date or by their index (as offsets on partition 0).
///
/// Every `read` is logged, so tests can prove which chunks were (not) read again after a resume.
pub struct MemorySource<I> {
    records: Arc<Vec<I>>,
    date_of: Option<DateOf<I>>,
    chunk_by: ChunkBy,
    batch_size: usize,
    snapshot: String,
    reads: Arc<Mutex<Vec<InputRange>>>,
}

impl<I> fmt::Debug for MemorySource<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySource")
            .field("records", &self.records.len())
            .field("chunk_by", &self.chunk_by)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl<I: Clone + Send + Sync + 'static> MemorySource<I> {
    /// Records with a business date; chunks are calendar months of the manifest's date range.
    pub fn by_date(
        records: Vec<I>,
        date_of: impl Fn(&I) -> NaiveDate + Send + Sync + 'static,
    ) -> Self {
        Self {
            records: Arc::new(records),
            date_of: Some(Arc::new(date_of)),
            chunk_by: ChunkBy::Month,
            batch_size: 1024,
            snapshot: "memory".into(),
            reads: Arc::default(),
        }
    }

    /// Records addressed by index as offsets on partition 0; chunks of `chunk_size` offsets.
    pub fn by_offset(records: Vec<I>, chunk_size: i64) -> Self {
        Self {
            records: Arc::new(records),
            date_of: None,
            chunk_by: ChunkBy::Offsets(chunk_size.max(1)),
            batch_size: 1024,
            snapshot: "memory".into(),
            reads: Arc::default(),
        }
    }

    /// Changes the chunking.
    pub fn chunk_by(mut self, chunk_by: ChunkBy) -> Self {
        self.chunk_by = chunk_by;
        self
    }

    /// Changes the batch size of `read`.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The snapshot id `plan` reports.
    pub fn snapshot(mut self, snapshot: impl Into<String>) -> Self {
        self.snapshot = snapshot.into();
        self
    }

    /// Every range read so far, in order.
    pub fn read_log(&self) -> Vec<InputRange> {
        self.reads.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn date_chunks(&self, from: NaiveDate, to: NaiveDate) -> Vec<ChunkSpec> {
        let mut chunks = Vec::new();
        let mut start = from;
        while start < to {
            let end = match self.chunk_by {
                ChunkBy::Days(n) => start + chrono::Days::new(u64::from(n.max(1))),
                _ => {
                    let first = start.with_day(1).unwrap_or(start);
                    first.checked_add_months(Months::new(1)).unwrap_or(to)
                }
            }
            .min(to);
            let label = if self.chunk_by == ChunkBy::Month && start.day() == 1 && end.day() == 1 {
                start.format("%Y-%m").to_string()
            } else {
                format!("{start}..{end}")
            };
            let records = self.date_of.as_ref().map_or(0, |date_of| {
                self.records
                    .iter()
                    .filter(|r| (start..end).contains(&date_of(r)))
                    .count() as u64
            });
            chunks.push(
                ChunkSpec::new(
                    InputRange::Dates {
                        from: start,
                        to_exclusive: end,
                    },
                    label,
                )
                .with_estimate(records, None),
            );
            start = end;
        }
        chunks
    }
}

#[async_trait]
impl<I: Clone + Send + Sync + 'static> BackfillSource<I> for MemorySource<I> {
    fn name(&self) -> &str {
        "memory"
    }

    async fn plan(&self, manifest: &RunManifest) -> Result<SourcePlan> {
        let unsupported = |what: &str| Error::InvalidManifest {
            run_id: manifest.run_id.clone(),
            field: "source.range".into(),
            message: format!("memory source cannot plan {what}"),
        };
        let chunks = match (&manifest.source.range, self.chunk_by) {
            (Some(InputRange::Dates { from, to_exclusive }), ChunkBy::Month | ChunkBy::Days(_))
                if self.date_of.is_some() =>
            {
                self.date_chunks(*from, *to_exclusive)
            }
            (Some(InputRange::Offsets { partitions }), ChunkBy::Offsets(size))
                if self.date_of.is_none() =>
            {
                let mut chunks = Vec::new();
                for p in partitions {
                    let mut start = p.from;
                    while start < p.to_exclusive {
                        let end = (start + size).min(p.to_exclusive);
                        chunks.push(
                            ChunkSpec::new(
                                InputRange::Offsets {
                                    partitions: vec![OffsetRange {
                                        partition: p.partition,
                                        from: start,
                                        to_exclusive: end,
                                    }],
                                },
                                format!("{}:{start}..{end}", p.partition),
                            )
                            .with_estimate(u64::try_from(end - start).unwrap_or(0), None),
                        );
                        start = end;
                    }
                }
                chunks
            }
            (None, _) => return Err(unsupported("a missing range")),
            (Some(r), _) => return Err(unsupported(&format!("{r} with {:?}", self.chunk_by))),
        };
        Ok(SourcePlan {
            snapshot: Some(self.snapshot.clone()),
            resolved_from: None,
            chunks,
        })
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, Result<Vec<I>>> {
        if let Ok(mut log) = self.reads.lock() {
            log.push(chunk.range.clone());
        }
        let records = Arc::clone(&self.records);
        let batch = self.batch_size;
        let indices: Vec<usize> = match (&chunk.range, &self.date_of) {
            (InputRange::Dates { from, to_exclusive }, Some(date_of)) => records
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    let d = date_of(r);
                    d >= *from && d < *to_exclusive
                })
                .map(|(i, _)| i)
                .collect(),
            (InputRange::Offsets { partitions }, None) => partitions
                .iter()
                .filter(|p| p.partition == 0)
                .flat_map(|p| {
                    let from = usize::try_from(p.from.max(0)).unwrap_or(0);
                    let to = usize::try_from(p.to_exclusive.max(0))
                        .unwrap_or(0)
                        .min(records.len());
                    from..to.max(from)
                })
                .collect(),
            _ => Vec::new(),
        };
        let batches: Vec<Vec<usize>> = indices.chunks(batch).map(<[usize]>::to_vec).collect();
        stream::iter(batches)
            .map(move |idx| Ok(idx.into_iter().map(|i| records[i].clone()).collect()))
            .boxed()
    }
}
