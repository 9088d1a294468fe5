//! An in-memory staging sink.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::poisoned;
use crate::digest::OutputRow;
use crate::error::{Error, Result};
use crate::ids::{ChunkId, RunId};
use crate::sink::{SinkDescriptor, StageReceipt, StageRequest, StagedArtifact, StagingSink};

/// One chunk's staged rows, as the batches they arrived in (kept as they are: no copying into one
/// vector), and the attempt that wrote them.
pub(super) struct Slot<R> {
    pub(super) attempt: u32,
    pub(super) batches: Arc<Vec<Vec<R>>>,
}

pub(super) struct Area<R> {
    pub(super) staged: BTreeMap<RunId, BTreeMap<ChunkId, Slot<R>>>,
    /// Highest attempt seen per chunk (the fence); kept after `discard`.
    fences: BTreeMap<(RunId, ChunkId), u32>,
}

pub(super) type SharedArea<R> = Arc<Mutex<Area<R>>>;

/// The artifact a [`MemorySink`] returns: which sink, chunk and attempt hold the rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct MemoryArtifact {
    pub(super) sink: String,
    pub(super) chunk_id: ChunkId,
    pub(super) attempt: u32,
}

/// Staging in memory: one slot per `(run, chunk)`, replaced whole by each successful attempt, fenced
/// by attempt. A [`MemoryPublisher`](super::MemoryPublisher) made with
/// [`MemoryPublisher::new`](super::MemoryPublisher::new) over this sink publishes from its artifacts.
pub struct MemorySink<R> {
    descriptor: SinkDescriptor,
    pub(super) area: SharedArea<R>,
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
            area: Arc::new(Mutex::new(Area {
                staged: BTreeMap::new(),
                fences: BTreeMap::new(),
            })),
        }
    }

    /// Rows staged for one chunk (for tests).
    pub fn chunk_rows(&self, run_id: &RunId, chunk_id: &ChunkId) -> Vec<R> {
        self.area
            .lock()
            .ok()
            .and_then(|s| {
                s.staged
                    .get(run_id)
                    .and_then(|c| c.get(chunk_id))
                    .map(|slot| slot.batches.concat())
            })
            .unwrap_or_default()
    }

    /// Replaces one staged row of a chunk, the way an out-of-band edit would (for tests that prove
    /// verification notices). Returns whether a row was there to replace.
    pub fn tamper(&self, run_id: &RunId, chunk_id: &ChunkId, index: usize, row: R) -> bool {
        let Ok(mut area) = self.area.lock() else {
            return false;
        };
        let Some(slot) = area
            .staged
            .get_mut(run_id)
            .and_then(|c| c.get_mut(chunk_id))
        else {
            return false;
        };
        let batches = Arc::make_mut(&mut slot.batches);
        match batches.iter_mut().flatten().nth(index) {
            Some(r) => {
                *r = row;
                true
            }
            None => false,
        }
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
        let mut receipt = StageReceipt {
            artifact: StagedArtifact::of(&MemoryArtifact {
                sink: self.descriptor.name.clone(),
                chunk_id: req.chunk_id.clone(),
                attempt: req.attempt,
            })?,
            ..StageReceipt::default()
        };
        while let Some(batch) = rows.try_next().await? {
            receipt.batches += 1;
            receipt.rows += batch.len() as u64;
            if !batch.is_empty() {
                all.push(batch);
            }
        }
        let mut area = self.area.lock().map_err(|_| poisoned())?;
        let fence = area
            .fences
            .entry((req.run_id.clone(), req.chunk_id.clone()))
            .or_insert(0);
        if req.attempt < *fence {
            return Err(Error::Fenced {
                run_id: req.run_id.clone(),
                chunk_id: req.chunk_id.clone(),
                attempt: req.attempt,
                current: *fence,
            });
        }
        *fence = req.attempt;
        area.staged.entry(req.run_id.clone()).or_default().insert(
            req.chunk_id.clone(),
            Slot {
                attempt: req.attempt,
                batches: Arc::new(all),
            },
        );
        Ok(receipt)
    }

    fn read_staged<'a>(&'a self, run_id: &'a RunId) -> BoxStream<'a, Result<Vec<R>>> {
        let snapshot: Result<Vec<Vec<R>>> = self
            .area
            .lock()
            .map(|s| {
                s.staged
                    .get(run_id)
                    .map(|c| {
                        c.values()
                            .flat_map(|slot| slot.batches.iter().cloned())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .map_err(|_| poisoned());
        match snapshot {
            Ok(chunks) => stream::iter(chunks.into_iter().map(Ok)).boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn discard(&self, run_id: &RunId) -> Result<()> {
        self.area
            .lock()
            .map_err(|_| poisoned())?
            .staged
            .remove(run_id);
        Ok(())
    }
}
