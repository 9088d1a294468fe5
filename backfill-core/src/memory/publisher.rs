//! An in-memory target with atomic publication, receipts and rollback.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use super::sink::{MemoryArtifact, MemorySink, SharedArea};
use super::{poisoned, ADAPTER};
use crate::digest::OutputRow;
use crate::error::{Error, Result};
use crate::ids::{PartitionKey, RunId};
use crate::manifest::Mutation;
use crate::publish::{
    PublishReceipt, PublishRequest, Publisher, PublisherCapabilities, RollbackRequest, TargetReader,
};
use crate::sink::SinkDescriptor;

type Partitions<R> = BTreeMap<PartitionKey, Vec<R>>;

struct Published<R> {
    receipt: PublishReceipt,
    /// The rows this run made visible, per partition.
    rows: Partitions<R>,
    /// What readers saw in those partitions just before.
    replaced: Partitions<R>,
}

struct State<R> {
    current: Partitions<R>,
    runs: BTreeMap<RunId, Published<R>>,
    rollbacks: BTreeMap<(RunId, RunId), PublishReceipt>,
}

/// A target table in memory, partitioned by [`OutputRow::partition`], publishing what a
/// [`MemorySink`] staged (found through the artifacts of the publish request).
///
/// Supports replace-partitions, append-with-run-id, shadow swap and versioned output (the latter two
/// replace the whole visible table). Merge-by-key and correction events need row semantics that only
/// a real target has; they are not in its capabilities and are refused with [`Error::NotSupported`].
pub struct MemoryPublisher<R> {
    descriptor: SinkDescriptor,
    staging: SharedArea<R>,
    state: Mutex<State<R>>,
}

impl<R> fmt::Debug for MemoryPublisher<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPublisher")
            .field("descriptor", &self.descriptor)
            .finish_non_exhaustive()
    }
}

impl<R: OutputRow> MemoryPublisher<R> {
    /// A target named `name` (the manifests' `target.name`), without external side effects, that
    /// publishes what `staging` staged.
    pub fn new(name: impl Into<String>, staging: &MemorySink<R>) -> Self {
        Self::with_descriptor(SinkDescriptor::internal(name, "memory"), staging)
    }

    /// A target described as `descriptor`.
    pub fn with_descriptor(descriptor: SinkDescriptor, staging: &MemorySink<R>) -> Self {
        Self {
            descriptor,
            staging: std::sync::Arc::clone(&staging.area),
            state: Mutex::new(State {
                current: BTreeMap::new(),
                runs: BTreeMap::new(),
                rollbacks: BTreeMap::new(),
            }),
        }
    }

    /// The staged rows named by the request's artifacts, refusing an artifact whose attempt is no
    /// longer the one staged.
    fn staged_rows(&self, req: &PublishRequest<'_>) -> Result<Vec<std::sync::Arc<Vec<Vec<R>>>>> {
        let area = self.staging.lock().map_err(|_| poisoned())?;
        let mut out = Vec::with_capacity(req.artifacts.len());
        for a in req.artifacts {
            let art: MemoryArtifact = a.artifact.parse()?;
            let slot = area
                .staged
                .get(req.run_id)
                .and_then(|c| c.get(&art.chunk_id))
                .ok_or_else(|| Error::NotFound {
                    run_id: req.run_id.clone(),
                    what: format!("staged rows of chunk {} in {}", art.chunk_id, art.sink),
                })?;
            if slot.attempt != art.attempt {
                return Err(Error::Fenced {
                    run_id: req.run_id.clone(),
                    chunk_id: art.chunk_id,
                    attempt: art.attempt,
                    current: slot.attempt,
                });
            }
            out.push(std::sync::Arc::clone(&slot.batches));
        }
        Ok(out)
    }

    /// Everything readers see now, by partition (for tests and examples).
    pub fn snapshot(&self) -> BTreeMap<PartitionKey, Vec<R>> {
        self.state
            .lock()
            .map(|s| s.current.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl<R: OutputRow> Publisher for MemoryPublisher<R> {
    fn descriptor(&self) -> SinkDescriptor {
        self.descriptor.clone()
    }

    fn capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities::with_mutations([
            Mutation::ReplacePartitions.name(),
            Mutation::AppendWithRunId.name(),
            Mutation::ShadowSwap.name(),
            Mutation::VersionedOutput.name(),
        ])
        .rollback(true)
        .read_back(true)
        .atomic_multi_partition(true)
    }

    async fn publish(&self, req: PublishRequest<'_>) -> Result<PublishReceipt> {
        let mutation = req.manifest.mutation()?.clone();
        if matches!(
            mutation,
            Mutation::MergeByKey { .. } | Mutation::CorrectionEvents
        ) {
            return Err(Error::NotSupported {
                adapter: ADAPTER,
                operation: mutation.name(),
            });
        }
        if let Some(done) = self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .runs
            .get(req.run_id)
        {
            return Ok(done.receipt.clone());
        }
        // Gather everything first, then switch under one lock: readers see all or nothing.
        let mut rows: Partitions<R> = BTreeMap::new();
        for chunk in self.staged_rows(&req)? {
            for r in chunk.iter().flatten() {
                let p = r.partition();
                match rows.get_mut(p.as_ref()) {
                    Some(v) => v.push(r.clone()),
                    None => {
                        rows.insert(PartitionKey::new(p.into_owned()), vec![r.clone()]);
                    }
                }
            }
        }
        let mut partitions: Vec<PartitionKey> = rows.keys().cloned().collect();
        if mutation == Mutation::ReplacePartitions {
            // Declared partitions with no rows are replaced by empty ones: the restatement says "none".
            for p in &req.manifest.target.partitions {
                if !rows.contains_key(p) {
                    rows.insert(p.clone(), Vec::new());
                    partitions.push(p.clone());
                }
            }
            partitions.sort();
        }
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if let Some(done) = state.runs.get(req.run_id) {
            return Ok(done.receipt.clone());
        }
        let replaced: Partitions<R> = match mutation {
            Mutation::ShadowSwap | Mutation::VersionedOutput => std::mem::take(&mut state.current),
            _ => partitions
                .iter()
                .map(|p| (p.clone(), state.current.get(p).cloned().unwrap_or_default()))
                .collect(),
        };
        let mut total = 0u64;
        for (p, v) in &rows {
            total += v.len() as u64;
            match mutation {
                Mutation::AppendWithRunId => state
                    .current
                    .entry(p.clone())
                    .or_default()
                    .extend(v.iter().cloned()),
                _ => {
                    state.current.insert(p.clone(), v.clone());
                }
            }
        }
        let receipt = PublishReceipt {
            run_id: req.run_id.clone(),
            target: req.manifest.target.name.clone(),
            mutation: mutation.name().into(),
            partitions,
            rows: total,
            published_at: req.at,
            reference: format!("memory:{}", state.runs.len() + 1),
            digests: req.digests.clone(),
        };
        state.runs.insert(
            req.run_id.clone(),
            Published {
                receipt: receipt.clone(),
                rows,
                replaced,
            },
        );
        Ok(receipt)
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        Ok(self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .runs
            .get(run_id)
            .map(|p| p.receipt.clone()))
    }

    async fn rollback(&self, req: RollbackRequest<'_>) -> Result<PublishReceipt> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if let Some(done) = state.rollbacks.get(&(req.from.clone(), req.to.clone())) {
            return Ok(done.clone());
        }
        let not_found = |run: &RunId| Error::NotFound {
            run_id: run.clone(),
            what: "publication in memory target".into(),
        };
        let from = state
            .runs
            .get(req.from)
            .ok_or_else(|| not_found(req.from))?;
        let to = state.runs.get(req.to).ok_or_else(|| not_found(req.to))?;
        let whole_table =
            |m: &str| m == Mutation::ShadowSwap.name() || m == Mutation::VersionedOutput.name();
        // Whole-table modes make `to`'s whole table visible again; the others undo exactly what
        // `from` changed, partition by partition.
        let (restore, replace_all): (Partitions<R>, bool) = if whole_table(&from.receipt.mutation) {
            if whole_table(&to.receipt.mutation) {
                (to.rows.clone(), true)
            } else {
                (from.replaced.clone(), true)
            }
        } else {
            let undo = from
                .rows
                .keys()
                .map(|p| (p.clone(), from.replaced.get(p).cloned().unwrap_or_default()))
                .collect();
            (undo, false)
        };
        let receipt = PublishReceipt {
            run_id: req.to.clone(),
            target: to.receipt.target.clone(),
            mutation: "rollback".into(),
            partitions: restore.keys().cloned().collect(),
            rows: restore.values().map(|v| v.len() as u64).sum(),
            published_at: req.at,
            reference: format!("memory:rollback:{}", req.from),
            digests: to.receipt.digests.clone(),
        };
        if replace_all {
            state.current = restore;
        } else {
            for (p, rows) in restore {
                state.current.insert(p, rows);
            }
        }
        state
            .rollbacks
            .insert((req.from.clone(), req.to.clone()), receipt.clone());
        Ok(receipt)
    }

    async fn inspect_rollback(&self, from: &RunId, to: &RunId) -> Result<Option<PublishReceipt>> {
        Ok(self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .rollbacks
            .get(&(from.clone(), to.clone()))
            .cloned())
    }
}

impl<R: OutputRow> TargetReader<R> for MemoryPublisher<R> {
    fn read_current<'a>(&'a self, partition: &'a PartitionKey) -> BoxStream<'a, Result<Vec<R>>> {
        let rows = self
            .state
            .lock()
            .map(|s| s.current.get(partition).cloned().unwrap_or_default())
            .map_err(|_| poisoned());
        stream::once(async move { rows }).boxed()
    }
}
