//! Rows folded into records: consecutive rows with one group key become one input record.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::manifest::RunManifest;
use backfill_core::plan::{PlannedChunk, SourcePlan};
use backfill_core::source::BackfillSource;
use futures::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;

use super::SqlSource;

type KeyFn<I> = Arc<dyn Fn(&I) -> String + Send + Sync>;
type FoldFn<I, G> = Arc<dyn Fn(Vec<I>) -> backfill_core::Result<G> + Send + Sync>;

/// A [`SqlSource`] whose rows are folded into records `G`: consecutive rows (in key order) with one
/// group key form one record, as case events form a case history. Made by [`SqlSource::grouped`].
///
/// The group key must be a prefix of the source's [`key`](super::SqlSourceBuilder::key) (group by
/// `case_id` over the key `case_id, seq`), so that a group's rows are adjacent; a group is never split
/// across batches, and a chunk's groups are whole when every row of a group falls in one chunk (chunk
/// by a column that is constant within a group, such as the case's opening date).
pub struct Grouped<I, G> {
    source: SqlSource<I>,
    key: KeyFn<I>,
    fold: FoldFn<I, G>,
}

impl<I, G> fmt::Debug for Grouped<I, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grouped")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl<I> SqlSource<I> {
    /// Folds consecutive rows with the same `key` into one record with `fold`. Batches hold up to
    /// the source's batch size of records.
    pub fn grouped<G>(
        self,
        key: impl Fn(&I) -> String + Send + Sync + 'static,
        fold: impl Fn(Vec<I>) -> backfill_core::Result<G> + Send + Sync + 'static,
    ) -> Grouped<I, G> {
        Grouped {
            source: self,
            key: Arc::new(key),
            fold: Arc::new(fold),
        }
    }
}

impl<I, G> Grouped<I, G> {
    /// The row source.
    pub fn rows(&self) -> &SqlSource<I> {
        &self.source
    }
}

struct Folding<I, G> {
    rows: BoxStream<'static, backfill_core::Result<Vec<I>>>,
    key: KeyFn<I>,
    fold: FoldFn<I, G>,
    open: Vec<I>,
    ready: Vec<G>,
    per_batch: usize,
    ended: bool,
}

impl<I, G> Folding<I, G> {
    fn close(&mut self) -> backfill_core::Result<()> {
        if !self.open.is_empty() {
            let rows = std::mem::take(&mut self.open);
            self.ready.push((self.fold)(rows)?);
        }
        Ok(())
    }

    fn push(&mut self, row: I) -> backfill_core::Result<()> {
        let same = self
            .open
            .first()
            .is_none_or(|first| (self.key)(first) == (self.key)(&row));
        if !same {
            self.close()?;
        }
        self.open.push(row);
        Ok(())
    }

    /// The next full batch of records, or the rest at the end.
    async fn next(&mut self) -> backfill_core::Result<Option<Vec<G>>> {
        loop {
            if self.ready.len() >= self.per_batch {
                return Ok(Some(self.ready.drain(..self.per_batch).collect()));
            }
            if self.ended {
                self.close()?;
                return Ok((!self.ready.is_empty()).then(|| std::mem::take(&mut self.ready)));
            }
            match self.rows.next().await {
                Some(batch) => {
                    for row in batch? {
                        self.push(row)?;
                    }
                }
                None => self.ended = true,
            }
        }
    }
}

#[async_trait]
impl<I, G> BackfillSource<G> for Grouped<I, G>
where
    I: DeserializeOwned + Send + 'static,
    G: Send + 'static,
{
    fn name(&self) -> &str {
        BackfillSource::<I>::name(&self.source)
    }

    async fn plan(&self, manifest: &RunManifest) -> backfill_core::Result<SourcePlan> {
        BackfillSource::<I>::plan(&self.source, manifest).await
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, backfill_core::Result<Vec<G>>> {
        let st = Folding {
            rows: self.source.read(chunk),
            key: Arc::clone(&self.key),
            fold: Arc::clone(&self.fold),
            open: Vec::new(),
            ready: Vec::new(),
            per_batch: self.source.inner.batch,
            ended: false,
        };
        stream::try_unfold(st, |mut st| async move {
            Ok(st.next().await?.map(|batch| (batch, st)))
        })
        .boxed()
    }
}
