//! The resolved plan: chunks with exact input ranges, persisted before any work.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{derive_id, ChunkId, RunId};
use crate::manifest::{InputRange, ManifestDigest, OffsetRange};

/// What a source resolved for one chunk at planning time (a snapshot id, offsets, a file list with
/// hashes), persisted with the plan and handed back to [`read`](crate::source::BackfillSource::read).
///
/// Opaque to the core: only the source that made it interprets it. It is JSON so evidence and
/// operators can read it. A resumed worker on another machine reads the chunk from this state, never
/// by resolving "current" again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct SourceState(pub serde_json::Value);

impl SourceState {
    /// No state (a source that needs none).
    pub fn none() -> Self {
        Self(serde_json::Value::Null)
    }

    /// State from any serializable value.
    pub fn of<T: Serialize>(value: &T) -> Result<Self> {
        serde_json::to_value(value)
            .map(Self)
            .map_err(|e| Error::corrupt("source state", e))
    }

    /// Reads the state back as `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.0.clone()).map_err(|e| Error::corrupt("source state", e))
    }

    /// Whether there is no state.
    pub fn is_none(&self) -> bool {
        self.0.is_null()
    }
}

/// One chunk as a source proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSpec {
    /// Exact input range of the chunk (resolved: offsets, not timestamps; snapshot ids, not "current").
    pub range: InputRange,
    /// Human label for progress output, such as `2025-03`.
    pub label: String,
    /// What the source resolved for this chunk.
    #[serde(default, skip_serializing_if = "SourceState::is_none")]
    pub state: SourceState,
    /// What the source expects the chunk to hold, where it can tell before reading (row counts,
    /// offset spans, file sizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<ChunkEstimate>,
}

/// A source's expectation of a chunk's size, known at planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChunkEstimate {
    /// Input records (exact for counted tables and file lists; an upper bound for log offset
    /// spans, which include transaction markers and compacted records).
    pub records: u64,
    /// Input bytes, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl ChunkSpec {
    /// A chunk without source state.
    pub fn new(range: InputRange, label: impl Into<String>) -> Self {
        Self {
            range,
            label: label.into(),
            state: SourceState::none(),
            estimate: None,
        }
    }

    /// Attaches the source's size estimate.
    pub fn with_estimate(mut self, records: u64, bytes: Option<u64>) -> Self {
        self.estimate = Some(ChunkEstimate { records, bytes });
        self
    }

    /// Attaches source state.
    pub fn with_state(mut self, state: SourceState) -> Self {
        self.state = state;
        self
    }
}

/// What a source resolves a manifest's input into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourcePlan {
    /// The snapshot actually read ("current" resolved to an id), if the source has snapshots.
    pub snapshot: Option<String>,
    /// The name the manifest pinned when it named a ref or tag (`main`, `audit-2025`) rather than an
    /// id; the manifest's pin must equal `snapshot` or this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<String>,
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
    /// What the source resolved for this chunk at planning time.
    #[serde(default, skip_serializing_if = "SourceState::is_none")]
    pub state: SourceState,
    /// The source's size estimate, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<ChunkEstimate>,
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
    /// The ref the snapshot was resolved from, if the manifest named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<String>,
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
                    state: c.state,
                    estimate: c.estimate,
                }
            })
            .collect();
        Self {
            run_id: run_id.clone(),
            manifest_digest,
            snapshot: source.snapshot,
            resolved_from: source.resolved_from,
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

    /// Refuses a resolved snapshot that is not the manifest's pin (the pin must equal the resolved
    /// id or the ref it was resolved from). Without a pin, anything resolved is accepted and recorded.
    pub fn check_pin(&self, pinned: Option<&str>) -> Result<()> {
        let Some(pin) = pinned else { return Ok(()) };
        let matches =
            self.snapshot.as_deref() == Some(pin) || self.resolved_from.as_deref() == Some(pin);
        if matches {
            Ok(())
        } else {
            Err(Error::SnapshotMismatch {
                run_id: self.run_id.clone(),
                pinned: pin.to_owned(),
                resolved: self.snapshot.clone().unwrap_or_else(|| "none".into()),
            })
        }
    }

    /// Refuses chunks that leave a gap in the input range, overlap each other or reach outside it.
    /// Ranges of kinds that cannot be compared (a source that chunks by file) are accepted as they are.
    pub fn check_coverage(&self, input: &InputRange) -> Result<()> {
        let ranges: Vec<&InputRange> = self.chunks.iter().map(|c| &c.range).collect();
        coverage(input, &ranges).map_err(|detail| Error::PlanCoverage {
            run_id: self.run_id.clone(),
            detail,
        })
    }
}

/// Checks that `chunks` tile `input` exactly once; the error describes the first gap or overlap.
pub fn coverage(input: &InputRange, chunks: &[&InputRange]) -> std::result::Result<(), String> {
    if chunks.is_empty() {
        return if input.is_empty() {
            Ok(())
        } else {
            Err(format!("no chunks for {input}"))
        };
    }
    match input {
        InputRange::Dates { from, to_exclusive } => {
            let mut spans = Vec::new();
            for c in chunks {
                match c {
                    InputRange::Dates { from, to_exclusive } => spans.push((*from, *to_exclusive)),
                    other => return Err(format!("chunk {other} is not a date range")),
                }
            }
            tile(spans, *from, *to_exclusive)
        }
        InputRange::Timestamps { from, to_exclusive } => {
            let mut spans = Vec::new();
            for c in chunks {
                match c {
                    InputRange::Timestamps { from, to_exclusive } => {
                        spans.push((*from, *to_exclusive))
                    }
                    other => return Err(format!("chunk {other} is not a timestamp range")),
                }
            }
            tile(spans, *from, *to_exclusive)
        }
        InputRange::Keys { from, to_exclusive } => {
            let mut spans = Vec::new();
            for c in chunks {
                match c {
                    InputRange::Keys { from, to_exclusive } => {
                        spans.push((from.clone(), to_exclusive.clone()))
                    }
                    other => return Err(format!("chunk {other} is not a key range")),
                }
            }
            tile(spans, from.clone(), to_exclusive.clone())
        }
        InputRange::Offsets { partitions } => {
            let mut by_partition: std::collections::BTreeMap<i32, Vec<(i64, i64)>> =
                std::collections::BTreeMap::new();
            for c in chunks {
                match c {
                    InputRange::Offsets { partitions } => {
                        for OffsetRange {
                            partition,
                            from,
                            to_exclusive,
                        } in partitions
                        {
                            by_partition
                                .entry(*partition)
                                .or_default()
                                .push((*from, *to_exclusive));
                        }
                    }
                    other => return Err(format!("chunk {other} is not an offset range")),
                }
            }
            for p in partitions {
                let spans = by_partition.remove(&p.partition).unwrap_or_default();
                tile(spans, p.from, p.to_exclusive)
                    .map_err(|e| format!("partition {}: {e}", p.partition))?;
            }
            match by_partition.keys().next() {
                Some(stray) => Err(format!(
                    "chunks read partition {stray}, which the input range does not name"
                )),
                None => Ok(()),
            }
        }
    }
}

/// Sorted half-open spans must start at `from`, meet end to start, and end at `to`.
fn tile<T: PartialOrd + Clone + std::fmt::Display>(
    mut spans: Vec<(T, T)>,
    from: T,
    to: T,
) -> std::result::Result<(), String> {
    spans.retain(|(a, b)| a < b);
    spans.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut at = from;
    for (a, b) in spans {
        if a > at {
            return Err(format!("gap [{at}, {a})"));
        }
        if a < at {
            return Err(format!("overlap at {a} (covered up to {at})"));
        }
        at = b;
    }
    if at < to {
        return Err(format!("gap [{at}, {to})"));
    }
    if at > to {
        return Err(format!(
            "chunks reach {at}, past the input range's end {to}"
        ));
    }
    Ok(())
}
