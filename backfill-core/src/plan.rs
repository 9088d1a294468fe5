//! The resolved plan: chunks with exact input ranges, persisted before any work.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{derive_id, ChunkId, RunId};
use crate::manifest::{InputRange, ManifestDigest};

/// One chunk as a source proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSpec {
    /// Exact input range of the chunk (resolved: offsets, not timestamps; snapshot ids, not "current").
    pub range: InputRange,
    /// Human label for progress output, such as `2025-03`.
    pub label: String,
}

/// What a source resolves a manifest's input into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourcePlan {
    /// The snapshot actually read ("current" resolved to an id), if the source has snapshots.
    pub snapshot: Option<String>,
    /// Chunks in processing order. Together they must cover the manifest's input range exactly once.
    pub chunks: Vec<ChunkSpec>,
}

/// A chunk of the persisted plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChunk {
    /// Deterministic id: `<index, 5 digits>-<first 12 hex of sha256(run id, range)>`.
    pub id: ChunkId,
    /// Position in the plan.
    pub index: u32,
    /// Exact input range.
    pub range: InputRange,
    /// Human label.
    pub label: String,
}

/// The plan a run executes; stored before the first chunk is read, so what ran is what was planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPlan {
    /// The run.
    pub run_id: RunId,
    /// Digest of the approved manifest the plan was made from.
    pub manifest_digest: ManifestDigest,
    /// Resolved snapshot.
    pub snapshot: Option<String>,
    /// Chunks.
    pub chunks: Vec<PlannedChunk>,
    /// When the plan was made (injected clock).
    pub planned_at: DateTime<Utc>,
}

impl ResolvedPlan {
    /// Assigns deterministic chunk ids to a source's plan.
    pub fn new(
        run_id: &RunId,
        manifest_digest: ManifestDigest,
        source: SourcePlan,
        planned_at: DateTime<Utc>,
    ) -> Self {
        let chunks = source
            .chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                let h = derive_id(run_id.as_str(), &[&c.range.to_string()]);
                PlannedChunk {
                    id: ChunkId::new(format!("{index:05}-{}", &h[..12])),
                    index,
                    range: c.range,
                    label: c.label,
                }
            })
            .collect();
        Self {
            run_id: run_id.clone(),
            manifest_digest,
            snapshot: source.snapshot,
            chunks,
            planned_at,
        }
    }

    /// Whether two plans describe the same work (ignoring when they were made).
    pub fn same_work(&self, other: &Self) -> bool {
        self.run_id == other.run_id
            && self.manifest_digest == other.manifest_digest
            && self.snapshot == other.snapshot
            && self.chunks == other.chunks
    }
}
