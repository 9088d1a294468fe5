//! Publication: making validated staged output visible, atomically and once.
//!
//! Publishing is split in two so that an operations tool needs no row type:
//! [`Publisher`] (publish, inspect, rollback, inspect rollback, capabilities) is untyped and is what
//! the [`Control`](crate::control::Control) plane holds as `Arc<dyn Publisher>`; [`TargetReader`] reads
//! the rows readers see, typed, for validators and verification.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::digest::{OutputRow, PartitionDigests};
use crate::error::Result;
use crate::ids::{ChunkId, PartitionKey, RunId};
use crate::manifest::RunManifest;
use crate::sink::{SinkDescriptor, StagedArtifact};

/// One done chunk's staged artifact, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkArtifact {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// The attempt whose staging the ledger accepted.
    pub attempt: u32,
    /// Rows the chunk staged.
    pub rows: u64,
    /// Where they are.
    pub artifact: StagedArtifact,
}

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishRequest<'a> {
    /// The run being published.
    pub run_id: &'a RunId,
    /// Its approved manifest (mutation mode, target, partitions).
    pub manifest: &'a RunManifest,
    /// The partitions the run produced, with their ledger digests.
    pub digests: &'a PartitionDigests,
    /// What every chunk staged, in plan order.
    pub artifacts: &'a [ChunkArtifact],
    /// The run currently accepted for the target, if any.
    pub previous: Option<&'a RunId>,
    /// When (injected clock).
    pub at: DateTime<Utc>,
}

/// Proof of a publication, stored as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReceipt {
    /// The published run.
    pub run_id: RunId,
    /// Target name.
    pub target: String,
    /// Mutation applied.
    pub mutation: String,
    /// Partitions changed.
    pub partitions: Vec<PartitionKey>,
    /// Rows made visible.
    pub rows: u64,
    /// When.
    pub published_at: DateTime<Utc>,
    /// Adapter-specific reference (snapshot id, table name, transaction id).
    pub reference: String,
    /// The ledger digests the publication was made from (what `verify` compares the ledger with).
    #[serde(default)]
    pub digests: PartitionDigests,
}

/// Moving the target back to an earlier accepted run.
#[derive(Debug, Clone, Copy)]
pub struct RollbackRequest<'a> {
    /// The run currently visible.
    pub from: &'a RunId,
    /// The earlier run to make visible again.
    pub to: &'a RunId,
    /// The manifest of `from` (target and partitions).
    pub manifest: &'a RunManifest,
    /// When.
    pub at: DateTime<Utc>,
}

/// What a publisher can do, checked before any chunk of a run executes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PublisherCapabilities {
    /// Mutation modes supported, by [`Mutation::name`](crate::manifest::Mutation::name).
    pub mutations: BTreeSet<&'static str>,
    /// `rollback` restores the previous run's output.
    pub rollback: bool,
    /// The target can be read back (a [`TargetReader`] exists for it).
    pub read_back: bool,
    /// A publication of several partitions is one atomic change.
    pub atomic_multi_partition: bool,
}

impl PublisherCapabilities {
    /// Capabilities with the given mutation names.
    pub fn with_mutations(mutations: impl IntoIterator<Item = &'static str>) -> Self {
        Self {
            mutations: mutations.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Sets `rollback`.
    pub fn rollback(mut self, yes: bool) -> Self {
        self.rollback = yes;
        self
    }

    /// Sets `read_back`.
    pub fn read_back(mut self, yes: bool) -> Self {
        self.read_back = yes;
        self
    }

    /// Sets `atomic_multi_partition`.
    pub fn atomic_multi_partition(mut self, yes: bool) -> Self {
        self.atomic_multi_partition = yes;
        self
    }

    /// Whether a mutation mode is supported.
    pub fn supports(&self, mutation: &str) -> bool {
        self.mutations.contains(mutation)
    }
}

/// Makes staged output visible to readers. Untyped: the staged rows are found through the
/// [`ChunkArtifact`]s of the request, never through the sink.
///
/// # Contract
/// 1. `publish` is atomic: readers see all of the run's staged output or none of it.
/// 2. `publish` is idempotent per run: publishing a run that is already published changes nothing and
///    returns the original receipt.
/// 3. `publish` changes only what the manifest's mutation allows (for replace-partitions: exactly the
///    run's partitions; rows in other partitions are untouched).
/// 4. `inspect` answers "did run X publish?" from the target itself, so that after an unknown outcome
///    (a timeout after commit) the control plane never publishes twice. The receipt and the target's
///    pointer (view, ref, pointer row) move in the same atomic change, or the pointer move is
///    completed by the next `publish` call: `inspect` never answers `Some` while readers still see
///    the old output.
/// 5. `rollback` makes the `to` run's output visible again for the partitions `from` changed; it is
///    idempotent, and `inspect_rollback(from, to)` answers from the target whether it happened.
///    Rollback never reads the staging of either run (staging may have been discarded).
/// 6. `capabilities` is constant for the publisher's lifetime, and every mutation it lists works.
/// 7. `descriptor().name` is the target name manifests use for this target.
#[async_trait]
pub trait Publisher: fmt::Debug + Send + Sync + 'static {
    /// What this publisher writes; `name` is the target name.
    fn descriptor(&self) -> SinkDescriptor;

    /// What it can do.
    fn capabilities(&self) -> PublisherCapabilities;

    /// Publishes the run's staged output.
    async fn publish(&self, req: PublishRequest<'_>) -> Result<PublishReceipt>;

    /// Whether (and how) a run was published.
    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>>;

    /// Restores an earlier run's output.
    async fn rollback(&self, req: RollbackRequest<'_>) -> Result<PublishReceipt>;

    /// Whether the target was rolled back from `from` to `to`, with that rollback's receipt.
    async fn inspect_rollback(&self, from: &RunId, to: &RunId) -> Result<Option<PublishReceipt>>;
}

/// Reads what readers of a target see, typed.
///
/// # Contract
/// 1. `read_current` returns exactly the rows readers currently see in a partition (empty when the
///    partition or the target does not exist yet).
/// 2. It has no side effects.
pub trait TargetReader<R: OutputRow>: fmt::Debug + Send + Sync + 'static {
    /// The rows readers currently see in a partition.
    fn read_current<'a>(&'a self, partition: &'a PartitionKey) -> BoxStream<'a, Result<Vec<R>>>;
}

/// `Arc<P>` and `Box<P>` are publishers and readers too (also for `P = dyn Publisher`).
macro_rules! as_ref_impl {
    ($($ptr:ident)::+) => {
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<P: Publisher + ?Sized> Publisher for $($ptr)::+<P> {
            fn descriptor(&self) -> SinkDescriptor {
                (**self).descriptor()
            }

            fn capabilities(&self) -> PublisherCapabilities {
                (**self).capabilities()
            }

            async fn publish(&self, req: PublishRequest<'_>) -> Result<PublishReceipt> {
                (**self).publish(req).await
            }

            async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
                (**self).inspect(run_id).await
            }

            async fn rollback(&self, req: RollbackRequest<'_>) -> Result<PublishReceipt> {
                (**self).rollback(req).await
            }

            async fn inspect_rollback(
                &self,
                from: &RunId,
                to: &RunId,
            ) -> Result<Option<PublishReceipt>> {
                (**self).inspect_rollback(from, to).await
            }
        }

        #[deny(clippy::missing_trait_methods)]
        impl<R: OutputRow, P: TargetReader<R> + ?Sized> TargetReader<R> for $($ptr)::+<P> {
            fn read_current<'a>(
                &'a self,
                partition: &'a PartitionKey,
            ) -> BoxStream<'a, Result<Vec<R>>> {
                (**self).read_current(partition)
            }
        }
    };
}

as_ref_impl!(std::sync::Arc);
as_ref_impl!(Box);
