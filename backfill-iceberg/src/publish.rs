//! [`IcebergPublisher`]: commits a run's staged data files as one snapshot (append or replace
//! partitions), directly on `main` or by write-audit-publish on a branch, and rolls back by moving
//! `main`. The table is the authority: receipts live in its metadata, committed with the ref move.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::manifest::Mutation;
use backfill_core::publish::{
    PublishReceipt, PublishRequest, Publisher, PublisherCapabilities, RollbackRequest, TargetReader,
};
use backfill_core::sink::SinkDescriptor;
use backfill_core::{Error, Result};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use iceberg::spec::MAIN_BRANCH;
use iceberg::table::Table;
use iceberg::{TableIdent, TableUpdate};

use crate::audit;
use crate::catalog::IcebergCatalog;
use crate::commit::{commit, Committed, TableChange};
use crate::error::IcebergError;
use crate::files;
use crate::refs::{self, audit_branch, PUBLISHED_PREFIX, ROLLED_BACK_PREFIX};
use crate::rows::{ArrowRows, SerdeRows};
use crate::snapshot::{ManifestProducer, SnapshotProducer, SnapshotRequest};

/// How a publication reaches `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFlow {
    /// One snapshot committed on `main`.
    Direct,
    /// Write-audit-publish: the snapshot is committed to the branch `bf-<run>`, audited there (its
    /// rows per partition against the ledger's digests, its schema, its diff against `main`), then
    /// `main` is fast-forwarded to it and the branch dropped; a failed audit drops the branch and
    /// leaves `main` untouched.
    WriteAuditPublish,
}

/// Publishes staged data files into an Iceberg table; reads it back as `R` through `C`.
///
/// Mutations: `append_with_run_id` (a snapshot with operation `append`) and `replace_partitions`
/// (one `overwrite` snapshot deleting the touched partitions' live files and adding the run's).
/// Every snapshot carries `backfill.run-id`, `backfill.transform-version` and `backfill.mutation`
/// in its summary. Commits are compare-and-swaps of the catalog's metadata pointer; a commit that
/// loses to another writer is rebuilt on the new head and tried again (up to
/// [`max_commit_attempts`](Self::max_commit_attempts)); an unknown outcome is resolved by reading
/// the pointer back.
pub struct IcebergPublisher<R, C = SerdeRows<R>> {
    catalog: IcebergCatalog,
    table: TableIdent,
    flow: PublishFlow,
    producer: Arc<dyn SnapshotProducer>,
    codec: Arc<C>,
    attempts: u32,
    _rows: PhantomData<fn() -> R>,
}

impl<R, C> fmt::Debug for IcebergPublisher<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IcebergPublisher")
            .field("table", &self.table.to_string())
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

impl<R: OutputRow + serde::de::DeserializeOwned> IcebergPublisher<R, SerdeRows<R>> {
    /// A direct publisher of `table`, rows read back through serde.
    pub fn new(catalog: IcebergCatalog, table: TableIdent) -> Self {
        Self::with_codec(catalog, table, SerdeRows::new())
    }
}

impl<R: OutputRow, C: ArrowRows<R>> IcebergPublisher<R, C> {
    /// A direct publisher with a hand-written row conversion.
    pub fn with_codec(catalog: IcebergCatalog, table: TableIdent, codec: C) -> Self {
        Self {
            catalog,
            table,
            flow: PublishFlow::Direct,
            producer: Arc::new(ManifestProducer),
            codec: Arc::new(codec),
            attempts: 10,
            _rows: PhantomData,
        }
    }

    /// Chooses the flow (default [`PublishFlow::Direct`]).
    pub fn flow(mut self, flow: PublishFlow) -> Self {
        self.flow = flow;
        self
    }

    /// Replaces the snapshot producer (for upstream actions once they exist).
    pub fn producer(mut self, producer: Arc<dyn SnapshotProducer>) -> Self {
        self.producer = producer;
        self
    }

    /// How many commits one publication tries before giving up on a contended table (default 10).
    pub fn max_commit_attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// The table.
    pub fn table(&self) -> &TableIdent {
        &self.table
    }

    fn receipt_of(table: &Table, key: &str) -> Result<Option<PublishReceipt>> {
        match table.metadata().properties().get(key) {
            None => Ok(None),
            Some(v) => serde_json::from_str(v).map(Some).map_err(|e| {
                crate::error::corrupt(format!("receipt {key} of {}", table.identifier()), e)
            }),
        }
    }

    fn published_key(run: &RunId) -> String {
        format!("{PUBLISHED_PREFIX}{run}")
    }

    fn rolled_back_key(from: &RunId, to: &RunId) -> String {
        format!("{ROLLED_BACK_PREFIX}{from}.{to}")
    }

    fn record(key: String, receipt: &PublishReceipt) -> Result<TableUpdate> {
        let v = serde_json::to_string(receipt).map_err(|e| crate::error::corrupt("receipt", e))?;
        Ok(TableUpdate::SetProperties {
            updates: HashMap::from([(key, v)]),
        })
    }

    /// Reads `run`'s rows of `snapshot` per partition and compares them with the ledger.
    async fn audit(
        &self,
        table: &Table,
        snapshot: i64,
        base: Option<i64>,
        req: &PublishRequest<'_>,
    ) -> Result<audit::SnapshotDiff> {
        let seen = audit::partition_digests(table, snapshot, self.codec.as_ref(), |p| {
            req.digests.0.contains_key(p)
        })
        .await?;
        let mut problems = Vec::new();
        for (p, want) in &req.digests.0 {
            let got = seen.0.get(p).copied().unwrap_or_default();
            let replaced = req.manifest.target.mutation == Some(Mutation::ReplacePartitions);
            if replaced && got != *want {
                problems.push(format!("partition {p}: branch {got}, ledger {want}"));
            } else if !replaced && got.rows < want.rows {
                problems.push(format!(
                    "partition {p}: branch has {} rows, ledger {}",
                    got.rows, want.rows
                ));
            }
        }
        let diff = audit::diff(table, base, snapshot).await?;
        tracing::info!(run = %req.run_id, table = %self.table, %diff, "audited branch");
        if problems.is_empty() {
            Ok(diff)
        } else {
            Err(Error::ValidationFailed {
                run_id: req.run_id.clone(),
                failed: vec![format!("iceberg branch audit: {}", problems.join("; "))],
            })
        }
    }

    async fn publish_once(
        &self,
        req: &PublishRequest<'_>,
        receipt: &mut PublishReceipt,
    ) -> Result<Committed> {
        let table = self.catalog.load(&self.table).await?;
        let data_files = files::data_files(&table, req.artifacts).await?;
        let replace = req.manifest.target.mutation == Some(Mutation::ReplacePartitions);
        let props = HashMap::from([
            (refs::RUN_ID_PROPERTY.to_owned(), req.run_id.to_string()),
            (
                refs::TRANSFORM_VERSION_PROPERTY.to_owned(),
                req.manifest.transform.version.clone(),
            ),
            (
                refs::MUTATION_PROPERTY.to_owned(),
                req.manifest
                    .target
                    .mutation
                    .as_ref()
                    .map_or("none", Mutation::name)
                    .to_owned(),
            ),
        ]);
        let main = refs::main_head(&table);
        match self.flow {
            PublishFlow::Direct => {
                let mut produced = self
                    .producer
                    .produce(
                        &table,
                        SnapshotRequest {
                            branch: MAIN_BRANCH,
                            files: data_files,
                            replace_partitions: replace,
                            also_replace: declared(req),
                            properties: props,
                        },
                    )
                    .await?;
                receipt.reference = format!("snapshot {}", produced.snapshot_id);
                produced
                    .change
                    .updates
                    .push(Self::record(Self::published_key(req.run_id), receipt)?);
                commit(&self.catalog, &table, produced.change).await
            }
            PublishFlow::WriteAuditPublish => {
                let branch = audit_branch(req.run_id.as_str());
                let existing = refs::refs(&table).get(&branch).map(|r| r.snapshot_id);
                // The branch starts at main's head (or holds the first snapshot of an empty table).
                let mut table = table;
                if let Some(head) = main {
                    if existing != Some(head) {
                        match commit(
                            &self.catalog,
                            &table,
                            refs::set_ref(&table, &branch, head, existing, true),
                        )
                        .await?
                        {
                            Committed::Yes(t) => table = *t,
                            lost => return Ok(lost),
                        }
                    }
                } else if existing.is_some() {
                    match commit(&self.catalog, &table, refs::remove_ref(&table, &branch)).await? {
                        Committed::Yes(t) => table = *t,
                        lost => return Ok(lost),
                    }
                }
                let produced = self
                    .producer
                    .produce(
                        &table,
                        SnapshotRequest {
                            branch: &branch,
                            files: data_files,
                            replace_partitions: replace,
                            also_replace: declared(req),
                            properties: props,
                        },
                    )
                    .await?;
                let on_branch = match commit(&self.catalog, &table, produced.change).await? {
                    Committed::Yes(t) => *t,
                    lost => return Ok(lost),
                };
                let diff = match self
                    .audit(&on_branch, produced.snapshot_id, main, req)
                    .await
                {
                    Ok(diff) => diff,
                    Err(e) => {
                        // The refusal is the error to report; a branch that could not be dropped
                        // now is dropped by the sink's `discard`.
                        if let Err(drop) = refs::drop_audit_branch(
                            &self.catalog,
                            on_branch.identifier(),
                            req.run_id.as_str(),
                        )
                        .await
                        {
                            tracing::warn!(run = %req.run_id, error = %drop, "audit branch left for discard");
                        }
                        return Err(e);
                    }
                };
                receipt.reference = format!(
                    "snapshot {} (via branch {branch}, audited against the ledger; {diff})",
                    produced.snapshot_id
                );
                let mut ff =
                    refs::set_ref(&on_branch, MAIN_BRANCH, produced.snapshot_id, main, true);
                ff.updates
                    .push(TableUpdate::RemoveSnapshotRef { ref_name: branch });
                ff.updates
                    .push(Self::record(Self::published_key(req.run_id), receipt)?);
                commit(&self.catalog, &on_branch, ff).await
            }
        }
    }
}

/// The partitions a replace-partitions run declared: replaced even where it staged nothing (the
/// validation plan refuses that unless `target.allow_empty_partitions`).
fn declared(req: &PublishRequest<'_>) -> Vec<String> {
    req.manifest
        .target
        .partitions
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect()
}

#[async_trait]
impl<R: OutputRow, C: ArrowRows<R>> Publisher for IcebergPublisher<R, C> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal(self.table.to_string(), "iceberg_table")
    }

    fn capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities::with_mutations(["append_with_run_id", "replace_partitions"])
            .rollback(true)
            .read_back(true)
            .atomic_multi_partition(true)
    }

    async fn publish(&self, req: PublishRequest<'_>) -> Result<PublishReceipt> {
        if let Some(r) = self.inspect(req.run_id).await? {
            return Ok(r);
        }
        let mutation = match &req.manifest.target.mutation {
            Some(m @ (Mutation::AppendWithRunId | Mutation::ReplacePartitions)) => m,
            other => {
                return Err(Error::Unsupported {
                    run_id: req.run_id.clone(),
                    part: format!("iceberg table {}", self.table),
                    what: format!(
                        "publish with mutation {}",
                        other.as_ref().map_or("none", Mutation::name)
                    ),
                })
            }
        };
        let mut receipt = PublishReceipt {
            run_id: req.run_id.clone(),
            target: self.table.to_string(),
            mutation: mutation.name().to_owned(),
            partitions: req
                .digests
                .0
                .keys()
                .chain(&req.manifest.target.partitions)
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            rows: req.artifacts.iter().map(|a| a.rows).sum(),
            published_at: req.at,
            reference: String::new(),
            digests: req.digests.clone(),
        };
        let mut last = String::new();
        for _ in 0..self.attempts {
            match self.publish_once(&req, &mut receipt).await? {
                Committed::Yes(_) => return Ok(receipt),
                Committed::Lost(why) => last = why,
            }
        }
        tracing::warn!(table = %self.table, reason = %last, "publication lost every commit race");
        Err(IcebergError::Contended {
            table: self.table.to_string(),
            attempts: self.attempts,
        }
        .into())
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        let table = self.catalog.load(&self.table).await?;
        Self::receipt_of(&table, &Self::published_key(run_id))
    }

    async fn rollback(&self, req: RollbackRequest<'_>) -> Result<PublishReceipt> {
        if let Some(r) = self.inspect_rollback(req.from, req.to).await? {
            return Ok(r);
        }
        for _ in 0..self.attempts {
            let table = self.catalog.load(&self.table).await?;
            let from =
                Self::receipt_of(&table, &Self::published_key(req.from))?.ok_or_else(|| {
                    Error::NotFound {
                        run_id: req.from.clone(),
                        what: format!("publication in iceberg table {}", self.table),
                    }
                })?;
            let from_snapshot =
                refs::find_run_snapshot(&table, req.from.as_str()).ok_or_else(|| {
                    crate::error::corrupt(
                        "table history",
                        format!("no snapshot of run {}", req.from),
                    )
                })?;
            let head = refs::main_head(&table);
            if head != Some(from_snapshot) {
                return Err(IcebergError::Moved {
                    table: self.table.to_string(),
                    detail: format!(
                        "main is at snapshot {}, not run {}'s snapshot {from_snapshot}: another writer \
                         committed after it; refusing to roll back over that commit",
                        head.map_or("none".into(), |h| h.to_string()),
                        req.from
                    ),
                }
                .into());
            }
            let parent = table
                .metadata()
                .snapshot_by_id(from_snapshot)
                .and_then(|s| s.parent_snapshot_id())
                .ok_or_else(|| Error::Unsupported {
                    run_id: req.from.clone(),
                    part: format!("iceberg table {}", self.table),
                    what: "roll back the table's first snapshot (there is no earlier state)".into(),
                })?;
            let receipt = PublishReceipt {
                run_id: req.to.clone(),
                target: self.table.to_string(),
                mutation: "rollback".into(),
                partitions: from.partitions.clone(),
                rows: 0,
                published_at: req.at,
                reference: format!("main {from_snapshot} -> {parent}"),
                digests: PartitionDigests::default(),
            };
            let mut change: TableChange =
                refs::set_ref(&table, MAIN_BRANCH, parent, Some(from_snapshot), true);
            change.updates.push(Self::record(
                Self::rolled_back_key(req.from, req.to),
                &receipt,
            )?);
            match commit(&self.catalog, &table, change).await? {
                Committed::Yes(_) => return Ok(receipt),
                Committed::Lost(_) => continue,
            }
        }
        Err(IcebergError::Contended {
            table: self.table.to_string(),
            attempts: self.attempts,
        }
        .into())
    }

    async fn inspect_rollback(&self, from: &RunId, to: &RunId) -> Result<Option<PublishReceipt>> {
        let table = self.catalog.load(&self.table).await?;
        Self::receipt_of(&table, &Self::rolled_back_key(from, to))
    }
}

impl<R: OutputRow, C: ArrowRows<R>> TargetReader<R> for IcebergPublisher<R, C> {
    fn read_current<'a>(&'a self, partition: &'a PartitionKey) -> BoxStream<'a, Result<Vec<R>>> {
        let load = async move {
            let table = self.catalog.load(&self.table).await?;
            let Some(head) = refs::main_head(&table) else {
                return Ok((table, Vec::new()));
            };
            let paths = audit::files_of(&table, head, |p| p == partition.as_str()).await?;
            Ok::<_, Error>((table, paths))
        };
        stream::once(load)
            .map_ok(move |(table, paths)| {
                stream::iter(paths).then(move |p| {
                    let table = table.clone();
                    async move { files::read_rows(&table, &p, self.codec.as_ref()).await }
                })
            })
            .try_flatten()
            .boxed()
    }
}
