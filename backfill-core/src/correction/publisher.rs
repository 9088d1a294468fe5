//! The publisher of the mutation `correction_events`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;

use super::diff::{Correction, EventOrigin, Side};
use super::outbox::CorrectionOutbox;
use super::CorrectionEvent;
use crate::digest::{OutputRow, PartitionDigests};
use crate::error::{Error, Result};
use crate::ids::{PartitionKey, RunId};
use crate::manifest::Mutation;
use crate::publish::{
    PublishReceipt, PublishRequest, Publisher, PublisherCapabilities, RollbackRequest, TargetReader,
};
use crate::sink::{SinkDescriptor, StagingSink};

const PART: &str = "correction events";

/// Publishes a run as correction events: for each of the manifest's target partitions it compares
/// the accepted output (what readers see now, through a [`TargetReader`]) with the run's staged rows
/// per key ([`Correction`]) and writes one [`CorrectionEvent`] per added, changed or removed key,
/// with the manifest's `reason`, to a [`CorrectionOutbox`], together with the receipt.
///
/// # Why it holds a staging sink
/// [`Publisher`] is untyped and a request's artifacts are opaque to everyone but the sink that wrote
/// them; the events need the staged rows themselves, typed. So the publisher is given the run's
/// [`StagingSink`] and calls only its [`read_staged`](StagingSink::read_staged): it never stages,
/// discards or changes staging. The rows read are checked against the request's ledger digests
/// before any event is derived from them, so the events describe exactly what the ledger recorded.
///
/// # Once, and after an unknown outcome
/// `publish` asks the outbox first ([`CorrectionOutbox::inspect`]) and returns the stored receipt
/// when the run was written already, so a retry after a timeout never writes twice; the outbox's
/// own idempotence covers a race between two callers.
///
/// # Rollback
/// Consumers may have acted on an event; it cannot be taken back. The capabilities say
/// `rollback: false`, and [`rollback`](Publisher::rollback) fails with
/// [`Error::NotSupported`]. To undo a correction, restate again: the next run's events correct
/// this run's values.
///
/// # Alongside a row publication
/// [`publish`](Publisher::publish) serves manifests whose mutation is `correction_events` and whose
/// target is the outbox. A run that replaces rows in its target and also owes event-sourced
/// consumers corrections calls [`publish_corrections`](Self::publish_corrections) with the same
/// request, **before** the rows are published: afterwards the accepted output is the run's own, and
/// there would be nothing left to compare (that case is refused).
///
/// Memory: the staged side is held per partition as keys with their projected values (the sink
/// reads a whole run at once); the accepted side is read one partition at a time.
pub struct CorrectionPublisher<R: OutputRow> {
    outbox: Arc<dyn CorrectionOutbox>,
    accepted: Arc<dyn TargetReader<R>>,
    staged: Arc<dyn StagingSink<R>>,
    correction: Correction<R>,
}

impl<R: OutputRow> fmt::Debug for CorrectionPublisher<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorrectionPublisher")
            .field("outbox", &self.outbox)
            .field("correction", &self.correction)
            .finish_non_exhaustive()
    }
}

impl<R: OutputRow> CorrectionPublisher<R> {
    /// A publisher writing to `outbox` the corrections of `accepted` (what readers see now) by the
    /// rows a run staged in `staged`, as `correction` describes them.
    pub fn new(
        outbox: Arc<dyn CorrectionOutbox>,
        accepted: Arc<dyn TargetReader<R>>,
        staged: Arc<dyn StagingSink<R>>,
        correction: Correction<R>,
    ) -> Self {
        Self {
            outbox,
            accepted,
            staged,
            correction,
        }
    }

    /// The outbox.
    pub fn outbox(&self) -> &Arc<dyn CorrectionOutbox> {
        &self.outbox
    }

    /// Publishes the request's run as correction events whatever its manifest's mutation, for a run
    /// that also publishes rows (see the type's docs): the receipt names the outbox as its target
    /// and `correction_events` as its mutation. Idempotent per run, like `publish`.
    ///
    /// # Errors
    /// [`Error::PublishRefused`] when the accepted output already is the run's (`req.previous` is
    /// the run), when the staged rows differ from the ledger's digests, lie outside the manifest's
    /// partitions or repeat a key; the outbox's errors otherwise.
    pub async fn publish_corrections(&self, req: PublishRequest<'_>) -> Result<PublishReceipt> {
        let run = req.run_id;
        if let Some(done) = self.outbox.inspect(run).await? {
            return Ok(done);
        }
        if req.previous == Some(run) {
            return Err(refuse(
                run,
                "the accepted output already is this run's: there is nothing left to correct \
                 (publish correction events before the run's rows)",
            ));
        }
        let (partitions, events) = self.events(&req).await?;
        let d = self.outbox.descriptor();
        let receipt = PublishReceipt {
            run_id: run.clone(),
            target: d.name.clone(),
            mutation: Mutation::CorrectionEvents.name().into(),
            partitions,
            rows: events.len() as u64,
            published_at: req.at,
            reference: format!("{}:{}", d.kind, d.name),
            digests: req.digests.clone(),
        };
        let stored = self.outbox.write(run, &events, &receipt).await?;
        tracing::info!(run_id = %run, outbox = %d.name, events = stored.rows, "published correction events");
        Ok(stored)
    }

    /// The partitions compared (sorted) and the events, in partition then key order.
    async fn events(
        &self,
        req: &PublishRequest<'_>,
    ) -> Result<(Vec<PartitionKey>, Vec<CorrectionEvent>)> {
        let run = req.run_id;
        let declared: BTreeSet<PartitionKey> = if req.manifest.target.partitions.is_empty() {
            req.digests.0.keys().cloned().collect()
        } else {
            req.manifest.target.partitions.iter().cloned().collect()
        };
        let mut restated: BTreeMap<PartitionKey, Side> = BTreeMap::new();
        let mut digests = PartitionDigests::default();
        let mut scratch = Vec::new();
        let mut staged = self.staged.read_staged(run);
        while let Some(batch) = staged.try_next().await? {
            for row in &batch {
                digests
                    .add_row(row, &mut scratch)
                    .map_err(|source| Error::Encode {
                        run_id: run.clone(),
                        source,
                    })?;
                let p = row.partition();
                if !declared.contains(p.as_ref()) {
                    return Err(refuse(
                        run,
                        format!(
                            "a staged row is in partition `{p}`, outside the manifest's target partitions"
                        ),
                    ));
                }
                let side = restated.entry(PartitionKey::new(p.as_ref())).or_default();
                side.insert(&self.correction, run, &p, "restated", row)?;
            }
        }
        if digests != *req.digests {
            return Err(refuse(
                run,
                format!(
                    "the staged rows ({} in {} partitions) do not match the ledger's digests ({} in {} partitions)",
                    digests.total_rows(),
                    digests.0.len(),
                    req.digests.total_rows(),
                    req.digests.0.len()
                ),
            ));
        }
        let origin = EventOrigin::new(run, &req.manifest.reason, req.at).supersedes(req.previous);
        let mut events = Vec::new();
        for p in &declared {
            let mut old = Side::default();
            let mut current = self.accepted.read_current(p);
            while let Some(batch) = current.try_next().await? {
                for row in &batch {
                    old.insert(&self.correction, run, p.as_str(), "accepted", row)?;
                }
            }
            let new = restated.remove(p).unwrap_or_default();
            self.correction.events(&origin, p, old, new, &mut events);
        }
        Ok((declared.into_iter().collect(), events))
    }
}

fn refuse(run_id: &RunId, reason: impl Into<String>) -> Error {
    Error::PublishRefused {
        run_id: run_id.clone(),
        reason: reason.into(),
    }
}

#[async_trait]
impl<R: OutputRow> Publisher for CorrectionPublisher<R> {
    /// The outbox's descriptor: manifests publishing `correction_events` name the outbox as target.
    fn descriptor(&self) -> SinkDescriptor {
        self.outbox.descriptor()
    }

    fn capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities::with_mutations([Mutation::CorrectionEvents.name()])
            .rollback(false)
            .read_back(false)
            .atomic_multi_partition(true)
    }

    async fn publish(&self, req: PublishRequest<'_>) -> Result<PublishReceipt> {
        let mutation = req.manifest.mutation()?;
        if *mutation != Mutation::CorrectionEvents {
            return Err(Error::Unsupported {
                run_id: req.run_id.clone(),
                part: format!("{PART} publisher for {}", self.outbox.descriptor().name),
                what: format!(
                    "publish mutation {} (it publishes correction_events; see publish_corrections)",
                    mutation.name()
                ),
            });
        }
        let name = self.outbox.descriptor().name;
        if req.manifest.target.name != name {
            return Err(refuse(
                req.run_id,
                format!(
                    "the manifest's target is `{}`, this publisher writes `{name}`",
                    req.manifest.target.name
                ),
            ));
        }
        self.publish_corrections(req).await
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        self.outbox.inspect(run_id).await
    }

    async fn rollback(&self, _req: RollbackRequest<'_>) -> Result<PublishReceipt> {
        Err(Error::NotSupported {
            adapter: "correction",
            operation:
                "roll back correction_events (published events cannot be taken back; restate again)",
        })
    }

    async fn inspect_rollback(&self, _from: &RunId, _to: &RunId) -> Result<Option<PublishReceipt>> {
        Ok(None)
    }
}
