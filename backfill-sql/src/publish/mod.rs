//! Publishers: each publication is one transaction that changes the target, archives what it
//! replaced (for rollback), records its receipt and moves the target's pointer, all in the target
//! database. One module per mutation mode; this one holds what they share.

mod append;
mod artifacts;
mod live_versions;
mod merge;
mod outbox;
mod reader;
mod record;
mod replace;
mod rollback;
mod shadow;
mod tx;
mod versioned;
mod view;

use std::fmt;
use std::marker::PhantomData;

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::manifest::Mutation;
use backfill_core::publish::{
    PublishReceipt, PublishRequest, Publisher, PublisherCapabilities, RollbackRequest,
};
use backfill_core::sink::SinkDescriptor;
use backfill_core::Error as CoreError;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

pub(crate) use tx::{Arg, Stmt};

pub use self::live_versions::LIVE_VERSION;
pub use self::outbox::SqlOutbox;

pub(crate) use self::artifacts::{counted, Staged};
use self::tx::{commit, Outcome};
use self::view::ViewSwitch;
use crate::dialect::Dialect;
use crate::ident::{Ident, QualifiedName};
use crate::migrate::migrate;
use crate::pool::{pg_relation, SqlPool};
use crate::row::{RowSchema, SqlRow};
use crate::sink::{check_columns, column_ddl};

/// Column naming the run whose publication archived a row.
pub(crate) const ARCHIVED_BY: &str = "bf_archived_by";

/// Publishes staged rows into a target table (or view) on the database of the [`SqlSink`](crate::SqlSink)
/// that staged them, with the manifest's mutation. The rows are found through the request's
/// artifacts ([`SqlArtifact`](crate::SqlArtifact)), never by the sink's naming scheme.
///
/// - **replace partitions**: one transaction deletes the run's partitions and inserts the staged
///   rows; rows of other partitions are not touched. On a PostgreSQL table partitioned by list on the
///   partition column, whole partitions are detached and attached instead;
/// - **merge by key**: upsert guarded by the version column (a staged row older than the target's
///   never wins; equal versions rewrite the same row). With a delete column, a staged row marked
///   deleted removes its key when its version is at least the target's (a stale delete never
///   wins either); a delete of an absent key inserts nothing, and every delete leaves a tombstone
///   so an older row of the deleted key loses later too;
/// - **append with run id**: rows are appended with their lineage; the view `<target>_accepted`
///   shows the accepted run's rows;
/// - **shadow swap**: the run's rows go into their own table and the view `<target>` is pointed at it;
/// - **versioned output**: like shadow swap, the view is `<target>_current` and every version's
///   table stays. With `target.live_writes: versioned_writes` (a live pipeline writes the same
///   target) every version lives in the target table instead, told apart by `produced_by_run_id`:
///   live writers write [`LIVE_VERSION`], a publication points its partitions at its own rows, and
///   `<target>_current` shows each partition's accepted version (the live one where no run took
///   it over); no DDL per publication on any engine, and live rows are never touched.
///
/// Rows replaced or overwritten are archived with the publishing run's id (merges also record the
/// keys they wrote), in the publishing transaction, so rollback restores them exactly without
/// reading staging. Receipt, pointer (`bf_target_pointers`) and change commit together; on
/// PostgreSQL and SQLite the view switch is part of that transaction too. MySQL/MariaDB commit
/// around DDL, so there the view switch follows the transaction and `inspect` answers `None` until
/// the view shows the run's table; the next `publish` completes it.
///
/// A target may be schema-qualified (`silver.case_sla_monthly`, see [`QualifiedName`]); the
/// schema is created when missing and the publisher's own tables live beside the target.
pub struct SqlPublisher<R> {
    pub(crate) pool: SqlPool,
    pub(crate) target: QualifiedName,
    pub(crate) schema: RowSchema,
    _rows: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for SqlPublisher<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlPublisher")
            .field("dialect", &self.pool.dialect())
            .field("target", &self.target)
            .finish()
    }
}

/// `prefix` + 24 hex digits of sha256 over `parts`: a safe, bounded name for the crate's own tables.
pub(crate) fn hashed(prefix: &str, parts: &[&str]) -> Ident {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    Ident::generated(prefix, &hex::encode(h.finalize())[..24])
}

/// Whether the manifest publishes versioned output beside a live writer.
fn versioned_writes(m: &backfill_core::manifest::RunManifest) -> bool {
    m.target.live_writes == backfill_core::live::LiveWrites::VersionedWrites
}

/// The mutation a publication is recorded as: the manifest's, or `versioned_writes`.
fn published_as(m: &backfill_core::manifest::RunManifest) -> backfill_core::Result<&'static str> {
    let mutation = m.mutation()?;
    Ok(match mutation {
        Mutation::VersionedOutput if versioned_writes(m) => live_versions::VERSIONED_WRITES,
        other => other.name(),
    })
}

pub(crate) fn refuse(run_id: &RunId, reason: impl Into<String>) -> CoreError {
    CoreError::PublishRefused {
        run_id: run_id.clone(),
        reason: reason.into(),
    }
}

/// What a mutation (or its rollback) does inside the publishing transaction.
#[derive(Debug)]
pub(crate) struct Change {
    /// Statements, in order, inside the transaction.
    pub(crate) stmts: Vec<Stmt>,
    /// A view to point at a table.
    pub(crate) view: Option<ViewSwitch>,
    /// Adapter-specific reference for the receipt.
    pub(crate) reference: String,
}

impl<R: SqlRow> SqlPublisher<R> {
    /// A publisher for `target` (`table` or `schema.table`) on `pool`.
    pub async fn new(pool: SqlPool, target: &str) -> backfill_core::Result<Self> {
        Self::with_schema(pool, target, RowSchema::of::<R>()).await
    }
}

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// A publisher for a row type described by `schema`.
    pub async fn with_schema(
        pool: SqlPool,
        target: &str,
        schema: RowSchema,
    ) -> backfill_core::Result<Self> {
        check_columns::<R>(&schema)?;
        migrate(&pool).await?;
        Ok(Self {
            pool,
            target: QualifiedName::parse(target)?,
            schema,
            _rows: PhantomData,
        })
    }
}

impl<R> SqlPublisher<R> {
    /// The target table (or view) name.
    pub fn target(&self) -> &QualifiedName {
        &self.target
    }

    /// The pool.
    pub fn pool(&self) -> &SqlPool {
        &self.pool
    }

    pub(crate) fn d(&self) -> Dialect {
        self.pool.dialect()
    }

    pub(crate) fn q(&self, name: &str) -> String {
        self.d().quote(name)
    }

    /// The target's name with a suffix, in its schema.
    fn suffixed(&self, suffix: &str) -> backfill_core::Result<QualifiedName> {
        Ok(self
            .target
            .sibling(Ident::new(&format!("{}{suffix}", self.target.name()))?))
    }

    /// The relation readers query after a publication with `mutation` (by name).
    pub(crate) fn relation_for(&self, mutation: &str) -> backfill_core::Result<QualifiedName> {
        if mutation == Mutation::AppendWithRunId.name() {
            self.suffixed("_accepted")
        } else if mutation == Mutation::VersionedOutput.name()
            || mutation == live_versions::VERSIONED_WRITES
        {
            self.suffixed("_current")
        } else {
            Ok(self.target.clone())
        }
    }

    /// Rows replaced or overwritten by publications, tagged with the publishing run.
    pub(crate) fn archive_table(&self) -> QualifiedName {
        self.target
            .sibling(hashed("bfa_", &[&self.target.to_string()]))
    }

    /// The table holding one run's rows for shadow swap and versioned output.
    pub(crate) fn shadow_table(&self, run_id: &RunId) -> QualifiedName {
        self.target.sibling(hashed(
            "bfsh_",
            &[&self.target.to_string(), run_id.as_str()],
        ))
    }

    fn check_target(&self, run_id: &RunId, name: &str) -> backfill_core::Result<()> {
        if name == self.target.to_string() {
            return Ok(());
        }
        Err(refuse(
            run_id,
            format!(
                "the manifest's target is `{name}`, this publisher writes `{}`",
                self.target
            ),
        ))
    }
}

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// Creates the target's schema and table (with an index on the partition column) if missing,
    /// and says whether the target is a declaratively partitioned PostgreSQL table. DDL runs outside
    /// the publishing transaction: MySQL commits implicitly around it. On PostgreSQL, when the
    /// target and its index are there, one catalog query answers all of it.
    pub(crate) async fn ensure_target(&self) -> backfill_core::Result<bool> {
        let d = self.d();
        let idx = hashed("bfi_", &[&self.target.to_string(), "partition"]);
        if let SqlPool::Postgres(pg) = &self.pool {
            if let Some((kind, true)) = pg_relation(pg, &self.target, idx.as_str()).await? {
                return Ok(kind == "p");
            }
        }
        self.target.ensure_schema(&self.pool).await?;
        let t = self.target.quoted(d);
        self.pool
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} ({}){}",
                column_ddl(&self.schema, d),
                d.table_options()
            ))
            .await?;
        // Not a plain `execute`: see `ensure_index` (no SHARE lock on the target per publish).
        self.pool
            .ensure_index(
                idx.as_str(),
                &self.target,
                &format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} ({})",
                    idx.quoted(d),
                    self.q(self.schema.partition_column)
                ),
            )
            .await?;
        self.is_partitioned().await
    }

    /// Creates the archive table if missing.
    pub(crate) async fn ensure_archive(&self) -> backfill_core::Result<()> {
        let d = self.d();
        let a = self.archive_table();
        self.pool
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} ({} {} NOT NULL, {}){}",
                a.quoted(d),
                self.q(ARCHIVED_BY),
                d.key_type(),
                column_ddl(&self.schema, d),
                d.table_options()
            ))
            .await?;
        let idx = hashed("bfi_", &[&a.to_string(), ARCHIVED_BY]);
        self.pool
            .ensure_index(
                idx.as_str(),
                &a,
                &format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                    idx.quoted(d),
                    a.quoted(d),
                    self.q(ARCHIVED_BY)
                ),
            )
            .await?;
        Ok(())
    }

    /// The partitions publishing `run_id` with `mutation` covers (the staged rows' and the
    /// manifest's, sorted) and what it changes (DDL it needs has run when this returns).
    async fn change(
        &self,
        mutation: &Mutation,
        run_id: &RunId,
        staged: &Staged,
        req: &PublishRequest<'_>,
    ) -> backfill_core::Result<(Vec<PartitionKey>, Change)> {
        let change = match mutation {
            Mutation::ReplacePartitions => return self.replace(run_id, staged, req).await,
            Mutation::VersionedOutput if versioned_writes(req.manifest) => {
                return self.versioned_writes(run_id, staged, req).await
            }
            Mutation::MergeByKey {
                key,
                version_column,
                delete_column,
            } => {
                let guard = merge::Guard {
                    version: version_column,
                    delete: delete_column.as_deref(),
                };
                self.merge(run_id, staged, key, guard).await
            }
            Mutation::AppendWithRunId => self.append(staged).await,
            Mutation::ShadowSwap => self.shadow(run_id, staged, self.target.clone()).await,
            Mutation::VersionedOutput => self.versioned(run_id, staged).await,
            Mutation::CorrectionEvents => Err(CoreError::NotSupported {
                adapter: crate::error::ADAPTER,
                operation: "publish correction_events to a SQL table (use CorrectionPublisher with SqlOutbox)",
            }),
        }?;
        Ok((self.partitions(staged, req.manifest, None).await?, change))
    }

    /// Adds the view switch to the transaction where DDL is transactional; otherwise returns it
    /// to run right after the commit.
    fn place_switch(&self, stmts: &mut Vec<Stmt>, view: Option<ViewSwitch>) -> Option<ViewSwitch> {
        let s = view?;
        if self.transactional_ddl() {
            stmts.extend(self.switch_sql(&s));
            None
        } else {
            Some(s)
        }
    }

    /// A recorded publication's receipt, after completing its view switch if that was interrupted.
    async fn finish(&self, run_id: &RunId) -> backfill_core::Result<PublishReceipt> {
        let done = self
            .recorded(run_id)
            .await?
            .ok_or_else(|| refuse(run_id, "the publication raced and vanished"))?;
        self.complete_switch(run_id).await?;
        Ok(done.receipt)
    }
}

#[async_trait]
impl<R: OutputRow + DeserializeOwned> Publisher for SqlPublisher<R> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal(
            self.target.to_string(),
            format!("{}_table", self.d().name()),
        )
    }

    fn capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities::with_mutations([
            Mutation::ReplacePartitions.name(),
            Mutation::MergeByKey {
                key: Vec::new(),
                version_column: String::new(),
                delete_column: None,
            }
            .name(),
            Mutation::AppendWithRunId.name(),
            Mutation::ShadowSwap.name(),
            Mutation::VersionedOutput.name(),
        ])
        .rollback(true)
        .read_back(true)
        .atomic_multi_partition(true)
    }

    async fn publish(&self, req: PublishRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        let run = req.run_id;
        self.check_target(run, &req.manifest.target.name)?;
        let mutation = req.manifest.mutation()?.clone();
        if self.recorded(run).await?.is_some() {
            return self.finish(run).await;
        }
        let staged = self.staged(&req).await?;
        let pointer = self.pointer().await?;
        let current = pointer.as_ref().map(|p| &p.run_id);
        if let Some(expected) = req.previous {
            if current != Some(expected) {
                return Err(CoreError::Conflict {
                    run_id: run.clone(),
                    what: format!("pointer of target {}", self.target),
                    expected: expected.to_string(),
                    found: current.map_or_else(|| "no run".into(), ToString::to_string),
                });
            }
        }
        let (partitions, change) = self.change(&mutation, run, &staged, &req).await?;
        let published_as = published_as(req.manifest)?;
        let relation = self.relation_for(published_as)?;
        let receipt = PublishReceipt {
            run_id: run.clone(),
            target: self.target.to_string(),
            mutation: published_as.into(),
            partitions,
            rows: staged.rows,
            published_at: req.at,
            reference: change.reference,
            digests: req.digests.clone(),
        };
        let mut stmts = vec![self.record_publication(&receipt, current)?];
        stmts.extend(change.stmts);
        stmts.push(self.move_pointer(current, run, published_as, &relation.to_string(), req.at));
        let after = self.place_switch(&mut stmts, change.view);
        if commit(&self.pool, run, &stmts, Some(&staged)).await? == Outcome::AlreadyRecorded {
            return self.finish(run).await;
        }
        if let Some(s) = after {
            self.switch_now(run, &s).await?;
        }
        tracing::info!(run_id = %run, target = %self.target, mutation = mutation.name(), rows = receipt.rows, "published");
        Ok(receipt)
    }

    async fn inspect(&self, run_id: &RunId) -> backfill_core::Result<Option<PublishReceipt>> {
        let Some(done) = self.recorded(run_id).await? else {
            return Ok(None);
        };
        if self.pending_switch(run_id).await?.is_some() {
            return Ok(None);
        }
        Ok(Some(done.receipt))
    }

    async fn rollback(&self, req: RollbackRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        self.check_target(req.from, &req.manifest.target.name)?;
        if let Some(done) = self.finish_rollback(req.from, req.to).await? {
            return Ok(done);
        }
        let never =
            |run: &RunId| refuse(run, format!("run was never published to {}", self.target));
        let from = self
            .recorded(req.from)
            .await?
            .ok_or_else(|| never(req.from))?;
        let to = self.recorded(req.to).await?.ok_or_else(|| never(req.to))?;
        let mutation = req.manifest.mutation()?.clone();
        let published_as = published_as(req.manifest)?;
        if from.mutation != published_as {
            return Err(refuse(
                req.from,
                format!(
                    "it was published as {}, the manifest says {published_as}",
                    from.mutation,
                ),
            ));
        }
        let pointer = self.pointer().await?;
        if pointer.as_ref().map(|p| &p.run_id) != Some(req.from) {
            return Err(CoreError::Conflict {
                run_id: req.from.clone(),
                what: format!("pointer of target {}", self.target),
                expected: req.from.to_string(),
                found: pointer.map_or_else(|| "no run".into(), |p| p.run_id.to_string()),
            });
        }
        let change = if published_as == live_versions::VERSIONED_WRITES {
            self.versioned_writes_undo(&from).await?
        } else {
            self.undo(&mutation, &from, &to).await?
        };
        let relation = self.relation_for(&to.mutation)?;
        let rows = match mutation {
            Mutation::ReplacePartitions | Mutation::MergeByKey { .. } => {
                self.archived_rows(req.from).await?
            }
            _ => to.receipt.rows,
        };
        let receipt = PublishReceipt {
            run_id: req.to.clone(),
            target: self.target.to_string(),
            mutation: "rollback".into(),
            partitions: from.receipt.partitions.clone(),
            rows,
            published_at: req.at,
            reference: format!(
                "{}:{relation} rolled back from {}: {}",
                self.d().name(),
                req.from,
                change.reference
            ),
            digests: to.receipt.digests.clone(),
        };
        let mut stmts = vec![self.record_rollback(req.from, &receipt)?];
        stmts.extend(change.stmts);
        stmts.push(self.move_pointer(
            Some(req.from),
            req.to,
            &to.mutation,
            &relation.to_string(),
            req.at,
        ));
        let after = self.place_switch(&mut stmts, change.view);
        if commit(&self.pool, req.from, &stmts, None).await? == Outcome::AlreadyRecorded {
            return self
                .finish_rollback(req.from, req.to)
                .await?
                .ok_or_else(|| refuse(req.from, "the rollback raced and vanished"));
        }
        if let Some(s) = after {
            self.switch_now(req.to, &s).await?;
        }
        tracing::info!(from = %req.from, to = %req.to, target = %self.target, "rolled back");
        Ok(receipt)
    }

    async fn inspect_rollback(
        &self,
        from: &RunId,
        to: &RunId,
    ) -> backfill_core::Result<Option<PublishReceipt>> {
        let Some(done) = self.rolled_back_to(from, to).await? else {
            return Ok(None);
        };
        if self.pending_switch(to).await?.is_some() {
            return Ok(None);
        }
        Ok(Some(done))
    }
}
