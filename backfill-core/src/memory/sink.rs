//! An in-memory staging sink.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::poisoned;
use crate::digest::OutputRow;
use crate::error::Result;
use crate::ids::{ChunkId, RunId};
use crate::sink::{SinkDescriptor, StageReceipt, StageRequest, StagingSink};

/// Each chunk's rows as the batches they arrived in (kept as they are: no copying into one vector).
type Staged<R> = BTreeMap<RunId, BTreeMap<ChunkId, Vec<Vec<R>>>>;

/// Staging in memory: one slot per `(run, chunk)`, replaced whole by each successful attempt.
pub struct MemorySink<R> {
    descriptor: SinkDescriptor,
    staged: Mutex<Staged<R>>,
}

impl<R> fmt::Debug for MemorySink<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySink")
            .field("descriptor", &self.descriptor)
            .finish_non_exhaustive()
    }
}

impl<R: OutputRow> MemorySink<R> {
    /// A staging sink without external side effects.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_descriptor(SinkDescriptor::internal(name, "memory"))
    }

    /// A sink described as `descriptor` (for example one with external side effects, to test policies).
    pub fn with_descriptor(descriptor: SinkDescriptor) -> Self {
        Self {
            descriptor,
            staged: Mutex::new(BTreeMap::new()),
        }
    }

    /// Rows staged for one chunk (for tests).
    pub fn chunk_rows(&self, run_id: &RunId, chunk_id: &ChunkId) -> Vec<R> {
        self.staged
            .lock()
            .ok()
            .and_then(|s| {
                s.get(run_id)
                    .and_then(|c| c.get(chunk_id))
                    .map(|b| b.concat())
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl<R: OutputRow> StagingSink<R> for MemorySink<R> {
    fn descriptor(&self) -> SinkDescriptor {
        self.descriptor.clone()
    }

    async fn stage(
        &self,
        req: StageRequest<'_>,
        mut rows: BoxStream<'_, Result<Vec<R>>>,
    ) -> Result<StageReceipt> {
        // Collect the whole attempt first: a failed or dropped attempt never touches the slot.
        let mut all = Vec::new();
        let mut receipt = StageReceipt::default();
        while let Some(batch) = rows.try_next().await? {
            receipt.batches += 1;
            receipt.rows += batch.len() as u64;
            if !batch.is_empty() {
                all.push(batch);
            }
        }
        self.staged
            .lock()
            .map_err(|_| poisoned())?
            .entry(req.run_id.clone())
            .or_default()
            .insert(req.chunk_id.clone(), all);
        Ok(receipt)
    }

    fn read_staged<'a>(&'a self, run_id: &'a RunId) -> BoxStream<'a, Result<Vec<R>>> {
        let snapshot: Result<Vec<Vec<R>>> = self
            .staged
            .lock()
            .map(|s| {
                s.get(run_id)
                    .map(|c| c.values().flatten().cloned().collect())
                    .unwrap_or_default()
            })
            .map_err(|_| poisoned());
        match snapshot {
            Ok(chunks) => stream::iter(chunks.into_iter().map(Ok)).boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn discard(&self, run_id: &RunId) -> Result<()> {
        self.staged.lock().map_err(|_| poisoned())?.remove(run_id);
        Ok(())
    }
}
