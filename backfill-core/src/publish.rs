//! Publication: making validated staged output visible, atomically and once.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::digest::{OutputRow, PartitionDigests};
use crate::error::Result;
use crate::ids::{PartitionKey, RunId};
use crate::manifest::RunManifest;
use crate::sink::{SinkDescriptor, StagingSink};

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishRequest<'a> {
    /// The run being published.
    pub run_id: &'a RunId,
    /// Its approved manifest (mutation mode, target, partitions).
    pub manifest: &'a RunManifest,
    /// The partitions the run produced, with their ledger digests.
    pub digests: &'a PartitionDigests,
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

/// Makes staged output visible to readers.
///
/// # Contract
/// 1. `publish` is atomic: readers see all of the run's staged output or none of it.
/// 2. `publish` is idempotent per run: publishing a run that is already published changes nothing and
///    returns the original receipt.
/// 3. `publish` changes only what the manifest's mutation allows (for replace-partitions: exactly the
///    run's partitions; rows in other partitions are untouched).
/// 4. `inspect` answers "did run X publish?" from the target itself, so that after an unknown outcome
///    (a timeout after commit) the runner never publishes twice.
/// 5. `rollback` makes the `to` run's output visible again for the partitions `from` changed, and
///    `inspect(to)` still answers with `to`'s receipt afterwards.
/// 6. `read_current` returns the rows readers currently see in a partition.
#[async_trait]
pub trait Publisher<R: OutputRow>: fmt::Debug + Send + Sync + 'static {
    /// What this publisher writes.
    fn descriptor(&self) -> SinkDescriptor;

    /// Publishes the run's staged rows.
    async fn publish(
        &self,
        req: PublishRequest<'_>,
        staged: &dyn StagingSink<R>,
    ) -> Result<PublishReceipt>;

    /// Whether (and how) a run was published.
    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>>;

    /// Restores an earlier run's output.
    async fn rollback(&self, req: RollbackRequest<'_>) -> Result<PublishReceipt>;

    /// The rows readers currently see in a partition.
    fn read_current<'a>(&'a self, partition: &'a PartitionKey) -> BoxStream<'a, Result<Vec<R>>>;
}

/// `Arc<P>` and `Box<P>` are publishers too (also for `P = dyn Publisher<R>`).
macro_rules! as_ref_impl {
    ($($ptr:ident)::+) => {
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<R: OutputRow, P: Publisher<R> + ?Sized> Publisher<R> for $($ptr)::+<P> {
            fn descriptor(&self) -> SinkDescriptor {
                (**self).descriptor()
            }

            async fn publish(
                &self,
                req: PublishRequest<'_>,
                staged: &dyn StagingSink<R>,
            ) -> Result<PublishReceipt> {
                (**self).publish(req, staged).await
            }

            async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
                (**self).inspect(run_id).await
            }

            async fn rollback(&self, req: RollbackRequest<'_>) -> Result<PublishReceipt> {
                (**self).rollback(req).await
            }

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
