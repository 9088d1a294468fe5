//! Staging: where output waits, invisible to readers, until it is validated and published.

use crate::sink_class::SinkClass;
use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::context::OutputLineage;
use crate::digest::OutputRow;
use crate::error::Result;
use crate::ids::{ChunkId, RunId};

/// What a sink or publisher is, for the [`SinkPolicy`](crate::policy::SinkPolicy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDescriptor {
    /// Name, such as `silver.case_sla_daily` or `notifications`.
    pub name: String,
    /// Kind, such as `sql_table`, `kafka_topic`, `memory`.
    pub kind: String,
    /// Whether writing it reaches the outside world (live topics, notifications, caches, external APIs).
    pub external_side_effects: bool,
    /// What kind of system it writes (decides what each mode may do by default; `None`: only
    /// `external_side_effects` is looked at).
    pub class: Option<SinkClass>,
    /// Whether it writes a target of the run's own (a run-scoped topic, a versioned table, a new
    /// index), which classes that are [isolated](crate::sink_class::SinkRule::Isolated) outside live
    /// mode require.
    pub isolated: bool,
}

impl SinkDescriptor {
    /// A sink without external side effects.
    pub fn internal(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            external_side_effects: false,
            class: None,
            isolated: false,
        }
    }

    /// A sink with external side effects.
    pub fn side_effecting(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            external_side_effects: true,
            ..Self::internal(name, kind)
        }
    }

    /// Declares the sink's class; a class with external side effects marks the sink as having them.
    pub fn with_class(mut self, class: SinkClass) -> Self {
        self.class = Some(class);
        self.external_side_effects |= class.has_external_side_effects();
        self
    }

    /// Declares that the sink writes a target of the run's own, never the one live readers use.
    pub fn isolated_target(mut self) -> Self {
        self.isolated = true;
        self
    }
}

/// Identifies one staging attempt of one chunk.
#[derive(Debug, Clone, Copy)]
pub struct StageRequest<'a> {
    /// The run.
    pub run_id: &'a RunId,
    /// The chunk.
    pub chunk_id: &'a ChunkId,
    /// The ledger's attempt number (1-based): the fencing token of this claim. A sink refuses a
    /// write by an attempt older than one it has seen for the chunk (contract clause 6).
    pub attempt: u32,
    /// Lineage to store with every row.
    pub lineage: &'a OutputLineage,
}

/// What a chunk's staging produced, as the publisher needs to find it: a staging table and the
/// chunk's key in it, a list of data files, produced offsets.
///
/// Opaque to the core and JSON so evidence can show it. The runner records it in the chunk ledger
/// and hands every done chunk's artifact to the publisher in the
/// [`PublishRequest`](crate::publish::PublishRequest); a publisher never needs the sink itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct StagedArtifact(pub serde_json::Value);

impl StagedArtifact {
    /// An artifact from any serializable value.
    pub fn of<T: Serialize>(value: &T) -> Result<Self> {
        serde_json::to_value(value)
            .map(Self)
            .map_err(|e| crate::Error::corrupt("staged artifact", e))
    }

    /// Reads the artifact back as `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.0.clone())
            .map_err(|e| crate::Error::corrupt("staged artifact", e))
    }
}

/// What a sink reports after staging a chunk.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StageReceipt {
    /// Rows now staged for the chunk.
    pub rows: u64,
    /// Batches received.
    pub batches: u64,
    /// Where the rows are, for the publisher.
    #[serde(default)]
    pub artifact: StagedArtifact,
}

/// Run-scoped, invisible storage for output rows.
///
/// # Contract
/// 1. `stage` **replaces** whatever an earlier attempt staged for the same `(run, chunk)`; it never adds
///    to it. Staging a chunk twice leaves the rows of one attempt.
/// 2. When the `rows` stream yields an error, or the future is dropped, the failed attempt leaves
///    nothing of itself visible to `read_staged` (either the previous complete attempt or nothing).
/// 3. `read_staged` returns exactly the rows of each chunk's latest complete attempt, as written.
/// 4. Staged rows are never visible to the target's readers; only a [`Publisher`](crate::publish::Publisher)
///    makes them visible.
/// 5. `discard` removes a run's staged rows and is idempotent. Publications and rollbacks of a run
///    never depend on its staging after `publish` returned: discarding is always safe then.
/// 6. **Fencing**: `stage` with an `attempt` lower than the highest attempt the sink has seen for the
///    chunk (or, where the sink can see the ledger, lower than the ledger's current attempt) fails
///    with [`Error::Fenced`](crate::Error::Fenced) and changes nothing, so a worker whose lease
///    expired can never overwrite its successor's rows.
/// 7. The receipt's [`artifact`](StageReceipt::artifact) names what was staged well enough for the
///    paired publisher to publish it from the artifact alone.
#[async_trait]
pub trait StagingSink<R: OutputRow>: fmt::Debug + Send + Sync + 'static {
    /// What this sink is.
    fn descriptor(&self) -> SinkDescriptor;

    /// Stages one chunk from a stream of batches, replacing earlier attempts of the chunk.
    async fn stage(
        &self,
        req: StageRequest<'_>,
        rows: BoxStream<'_, Result<Vec<R>>>,
    ) -> Result<StageReceipt>;

    /// Reads back every staged row of a run.
    fn read_staged<'a>(&'a self, run_id: &'a RunId) -> BoxStream<'a, Result<Vec<R>>>;

    /// Drops a run's staged rows.
    async fn discard(&self, run_id: &RunId) -> Result<()>;
}

/// `Arc<S>` and `Box<S>` are sinks too (also for `S = dyn StagingSink<R>`), so wrappers and
/// registries can hold shared sinks without a newtype.
macro_rules! as_ref_impl {
    ($($ptr:ident)::+) => {
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<R: OutputRow, S: StagingSink<R> + ?Sized> StagingSink<R> for $($ptr)::+<S> {
            fn descriptor(&self) -> SinkDescriptor {
                (**self).descriptor()
            }

            async fn stage(
                &self,
                req: StageRequest<'_>,
                rows: BoxStream<'_, Result<Vec<R>>>,
            ) -> Result<StageReceipt> {
                (**self).stage(req, rows).await
            }

            fn read_staged<'a>(&'a self, run_id: &'a RunId) -> BoxStream<'a, Result<Vec<R>>> {
                (**self).read_staged(run_id)
            }

            async fn discard(&self, run_id: &RunId) -> Result<()> {
                (**self).discard(run_id).await
            }
        }
    };
}

as_ref_impl!(std::sync::Arc);
as_ref_impl!(Box);
