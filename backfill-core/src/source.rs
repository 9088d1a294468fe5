//! Where input comes from.

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::estimate::SizeEstimate;
use crate::manifest::RunManifest;
use crate::plan::{PlannedChunk, SourcePlan};

/// A finite, re-readable input that a run is planned over and reads chunk by chunk.
///
/// # Contract
/// 1. `plan` is deterministic: the same manifest against the same pinned source gives the same chunks,
///    and it resolves everything mutable (timestamps to offsets, "current" to a snapshot id) into the
///    plan: [`SourcePlan::snapshot`] and each chunk's [`SourceState`](crate::plan::SourceState).
///    When the manifest pins `source.snapshot`, the plan's snapshot is that pin (or `resolved_from`
///    names it); the runner refuses any other before a chunk runs.
/// 2. The chunks' ranges cover the manifest's input range, each input record in exactly one chunk
///    (the runner checks ranges it can compare for gaps and overlaps).
/// 3. `read` of a chunk yields exactly the records in its range, in the same order every time, as a
///    stream of non-empty batches; reading a chunk twice gives the same records. `read` uses the
///    chunk's persisted `state` and never re-resolves it, so a worker on another machine, days later,
///    reads the same records.
/// 4. `read` has no side effects on the source (no consumer-group commits, no deletes).
/// 5. Errors that may pass (timeouts, lost connections) are [`ErrorKind::Transient`](crate::ErrorKind).
/// 6. `chunk_evidence`, when a source has any, describes what a read of the chunk stood on (an API
///    source's capture digest, a file source's hashes) and is the same every time it is asked for
///    the same chunk; the runner records it with the chunk's staged evidence.
/// 7. `estimate` sizes a chunk without reading its records (a count, an offset span, file sizes
///    from the chunk's `state`), has no side effects, and says `None` for what it cannot tell
///    rather than guessing; a count it gives is the number of records `read` yields (an upper
///    bound for log offset spans). The default is what `plan` recorded in the chunk's
///    [`estimate`](PlannedChunk::estimate).
#[async_trait]
pub trait BackfillSource<I>: fmt::Debug + Send + Sync + 'static {
    /// A short name for logs and evidence.
    fn name(&self) -> &str;

    /// Resolves the manifest's input range into chunks.
    async fn plan(&self, manifest: &RunManifest) -> Result<SourcePlan>;

    /// Reads one chunk as a stream of batches.
    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, Result<Vec<I>>>;

    /// What the chunk's read stood on, for its evidence (recorded as `source` of the chunk's
    /// [`ChunkStaged`](crate::evidence::EvidenceRecord::ChunkStaged) record), such as the digest
    /// of an API capture. Asked after the chunk was read and staged. `None` (the default) when the
    /// plan's source state already says everything.
    async fn chunk_evidence(&self, chunk: &PlannedChunk) -> Result<Option<serde_json::Value>> {
        let _ = chunk;
        Ok(None)
    }

    /// How big the chunk is, for the [estimate before approval](crate::estimate): records and
    /// bytes where the source can tell without reading them.
    async fn estimate(&self, chunk: &PlannedChunk) -> Result<SizeEstimate> {
        Ok(SizeEstimate::from_plan(chunk))
    }
}
