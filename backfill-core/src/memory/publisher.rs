//! An in-memory target with atomic publication, receipts and rollback.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::{poisoned, ADAPTER};
use crate::digest::OutputRow;
use crate::error::{Error, Result};
use crate::ids::{PartitionKey, RunId};
use crate::manifest::Mutation;
use crate::publish::{PublishReceipt, PublishRequest, Publisher, RollbackRequest};
use crate::sink::{SinkDescriptor, StagingSink};

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
}

/// A target table in memory, partitioned by [`OutputRow::partition`].
///
/// Supports replace-partitions, append-with-run-id, shadow swap and versioned output (the latter two
/// replace the whole visible table). Merge-by-key and correction events need row semantics that only
/// a real target has; they are refused with [`Error::NotSupported`].
pub struct MemoryPublisher<R> {
    descriptor: SinkDescriptor,
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
    /// A target without external side effects.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_descriptor(SinkDescriptor::internal(name, "memory"))
    }

    /// A target described as `descriptor`.
    pub fn with_descriptor(descriptor: SinkDescriptor) -> Self {
        Self {
            descriptor,
            state: Mutex::new(State {
                current: BTreeMap::new(),
                runs: BTreeMap::new(),
            }),
        }
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
impl<R: OutputRow> Publisher<R> for MemoryPublisher<R> {
    fn descriptor(&self) -> SinkDescriptor {
        self.descriptor.clone()
    }

    async fn publish(
        &self,
        req: PublishRequest<'_>,
        staged: &dyn StagingSink<R>,
    ) -> Result<PublishReceipt> {
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
        // Read everything first, then switch under one lock: readers see all or nothing.
        let mut rows: Partitions<R> = BTreeMap::new();
        let mut stream = staged.read_staged(req.run_id);
        while let Some(batch) = stream.try_next().await? {
            for r in batch {
                let p = r.partition();
                match rows.get_mut(p.as_ref()) {
                    Some(v) => v.push(r),
                    None => {
                        rows.insert(PartitionKey::new(p.into_owned()), vec![r]);
                    }
                }
            }
        }
        drop(stream);
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
        let not_found = |run: &RunId| Error::NotFound {
            run_id: run.clone(),
            what: "publication in memory target".into(),
        };
        let from = state
            .runs
            .get(req.from)
            .ok_or_else(|| not_found(req.from))?;
        let to = state.runs.get(req.to).ok_or_else(|| not_found(req.to))?;
        let mut restore: Partitions<R> = BTreeMap::new();
        for p in from.rows.keys() {
            let rows = to
                .rows
                .get(p)
                .or_else(|| from.replaced.get(p))
                .cloned()
                .unwrap_or_default();
            restore.insert(p.clone(), rows);
        }
        let receipt = PublishReceipt {
            run_id: req.to.clone(),
            target: to.receipt.target.clone(),
            mutation: "rollback".into(),
            partitions: restore.keys().cloned().collect(),
            rows: restore.values().map(|v| v.len() as u64).sum(),
            published_at: req.at,
            reference: format!("memory:rollback:{}", req.from),
        };
        for (p, rows) in restore {
            state.current.insert(p, rows);
        }
        Ok(receipt)
    }

    fn read_current<'a>(&'a self, partition: &'a PartitionKey) -> BoxStream<'a, Result<Vec<R>>> {
        let rows = self
            .state
            .lock()
            .map(|s| s.current.get(partition).cloned().unwrap_or_default())
            .map_err(|_| poisoned());
        stream::once(async move { rows }).boxed()
    }
}
