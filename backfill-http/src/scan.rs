//! The four scan patterns and how each plans a manifest's input range into chunks with persisted
//! per-chunk state.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use backfill_core::manifest::{InputRange, RunManifest};
use backfill_core::plan::{ChunkSpec, SourcePlan, SourceState};

use crate::error::{HttpError, Result};

/// How a source walks the API for a manifest's input range.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scan {
    /// Time windows over a change timestamp (`updated_since`). The manifest's range is
    /// [`InputRange::Timestamps`], or [`InputRange::Dates`] (UTC days, with a `step` of whole
    /// days), cut into `step`-long chunks. Each chunk asks from
    /// `from - lookback` (an API whose filter lags its records still returns late ones) and keeps
    /// the records whose `cursor_field` lies in `[from, to)`, so every record is in one chunk.
    /// Planning refuses a range that ends after `now - settle_lag`: the API may still change it.
    Window {
        /// Record field holding the change timestamp (RFC 3339).
        cursor_field: String,
        /// Query parameter of the inclusive lower bound.
        since_param: String,
        /// Query parameter of the exclusive upper bound.
        before_param: String,
        /// Chunk length.
        step: Duration,
        /// How far before a chunk's start its query begins.
        lookback: Duration,
        /// How long after a change the API is trusted to show it.
        settle_lag: Duration,
    },
    /// Numeric id ranges. The manifest's range is [`InputRange::Keys`] of decimal ids written
    /// with one width (`"0001"` to `"1001"`, so their text order is their numeric order), cut into
    /// chunks of `ids_per_chunk`.
    IdRange {
        /// Query parameter of the inclusive first id.
        from_param: String,
        /// Query parameter of the exclusive last id.
        to_param: String,
        /// Ids per chunk.
        ids_per_chunk: u64,
    },
    /// A vendor event log read by cursor: one chunk from the cursor `from` (exclusive, sent as
    /// `after_param`) up to the record whose key is `to_exclusive` (exclusive), following the
    /// `next_pointer` token page by page. The manifest's range is [`InputRange::Keys`].
    Cursor {
        /// Query parameter carrying the cursor.
        after_param: String,
        /// JSON pointer of the next cursor in a page (`null` or missing at the end).
        next_pointer: String,
    },
    /// A vendor export, frozen at `source.snapshot` (the export id, which the source's path
    /// names as `{export_id}`), read in id ranges like [`Scan::IdRange`].
    Snapshot {
        /// Query parameter of the inclusive first id.
        from_param: String,
        /// Query parameter of the exclusive last id.
        to_param: String,
        /// Ids per chunk.
        ids_per_chunk: u64,
    },
}

impl Scan {
    /// A window scan with the scripted API's parameters (`updated_since`, `updated_before`) and
    /// the cursor field `updated_at`.
    pub fn window(step: Duration, lookback: Duration, settle_lag: Duration) -> Self {
        Self::Window {
            cursor_field: "updated_at".into(),
            since_param: "updated_since".into(),
            before_param: "updated_before".into(),
            step,
            lookback,
            settle_lag,
        }
    }

    /// An id-range scan with the parameters `id_from` and `id_to`.
    pub fn id_range(ids_per_chunk: u64) -> Self {
        Self::IdRange {
            from_param: "id_from".into(),
            to_param: "id_to".into(),
            ids_per_chunk,
        }
    }

    /// A cursor scan with the parameter `after` and the next cursor at `/next`.
    pub fn cursor() -> Self {
        Self::Cursor {
            after_param: "after".into(),
            next_pointer: "/next".into(),
        }
    }

    /// A snapshot scan with the parameters `id_from` and `id_to`.
    pub fn snapshot(ids_per_chunk: u64) -> Self {
        Self::Snapshot {
            from_param: "id_from".into(),
            to_param: "id_to".into(),
            ids_per_chunk,
        }
    }
}

/// What a chunk reads, persisted with the plan (the chunk's [`SourceState`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "pattern", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChunkState {
    /// A time window.
    Window {
        /// First instant kept.
        from: DateTime<Utc>,
        /// First instant not kept.
        to_exclusive: DateTime<Utc>,
        /// Where the query starts (`from - lookback`).
        query_from: DateTime<Utc>,
        /// Whether raw responses may be kept after the run.
        retain_raw: bool,
    },
    /// An id range.
    IdRange {
        /// First id.
        from: u64,
        /// First id not read.
        to_exclusive: u64,
        /// Whether raw responses may be kept after the run.
        retain_raw: bool,
    },
    /// An event log from a cursor.
    Cursor {
        /// Cursor the log is read after.
        after: String,
        /// Key of the first record not read.
        to_exclusive: String,
        /// Whether raw responses may be kept after the run.
        retain_raw: bool,
    },
    /// An id range of a frozen export.
    Snapshot {
        /// Export id.
        export_id: String,
        /// First id.
        from: u64,
        /// First id not read.
        to_exclusive: u64,
        /// Whether raw responses may be kept after the run.
        retain_raw: bool,
    },
}

impl ChunkState {
    /// Whether raw responses may be kept after the run.
    pub fn retain_raw(&self) -> bool {
        match self {
            Self::Window { retain_raw, .. }
            | Self::IdRange { retain_raw, .. }
            | Self::Cursor { retain_raw, .. }
            | Self::Snapshot { retain_raw, .. } => *retain_raw,
        }
    }
}

/// Raw responses outlive the run only when the manifest's privacy section says retention was
/// checked; without a privacy section they are kept only while the run needs them.
pub(crate) fn retain_raw(manifest: &RunManifest) -> bool {
    manifest
        .privacy
        .as_ref()
        .is_some_and(|p| p.retention_checked)
}

fn state(s: &ChunkState) -> Result<SourceState> {
    SourceState::of(s).map_err(|e| HttpError::Config(e.to_string()))
}

/// Plans `manifest` for `scan`; `now` is the planning clock.
pub(crate) fn plan(scan: &Scan, manifest: &RunManifest, now: DateTime<Utc>) -> Result<SourcePlan> {
    let run = manifest.run_id.as_str();
    let keep = retain_raw(manifest);
    let range = manifest
        .source
        .range
        .clone()
        .ok_or_else(|| HttpError::Config(format!("run {run}: source.range is required")))?;
    let mut plan = SourcePlan::default();
    match scan {
        Scan::Window {
            step,
            lookback,
            settle_lag,
            ..
        } => {
            let midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
            let (from, to_exclusive, by_day) = match range {
                InputRange::Timestamps { from, to_exclusive } => (from, to_exclusive, false),
                InputRange::Dates { from, to_exclusive } => {
                    if step.num_seconds() % 86_400 != 0 {
                        return Err(HttpError::Config(format!(
                            "run {run}: a dates range needs a window step of whole days, not {step}"
                        )));
                    }
                    (midnight(from), midnight(to_exclusive), true)
                }
                other => {
                    return Err(HttpError::Config(format!(
                        "run {run}: a window scan needs a timestamps or dates range, not {other}"
                    )))
                }
            };
            let settled = now - *settle_lag;
            if to_exclusive > settled {
                return Err(HttpError::Config(format!(
                    "run {run}: the range ends at {to_exclusive}, after now minus the settle lag ({settled}); plan again after {}",
                    to_exclusive + *settle_lag
                )));
            }
            if *step <= Duration::zero() {
                return Err(HttpError::Config(format!(
                    "run {run}: window step must be positive"
                )));
            }
            let mut at = from;
            while at < to_exclusive {
                let end = (at + *step).min(to_exclusive);
                let s = ChunkState::Window {
                    from: at,
                    to_exclusive: end,
                    query_from: at - *lookback,
                    retain_raw: keep,
                };
                let (chunk_range, label) = if by_day {
                    (
                        InputRange::Dates {
                            from: at.date_naive(),
                            to_exclusive: end.date_naive(),
                        },
                        at.format("%Y-%m-%d").to_string(),
                    )
                } else {
                    (
                        InputRange::Timestamps {
                            from: at,
                            to_exclusive: end,
                        },
                        at.format("%Y-%m-%dT%H:%M").to_string(),
                    )
                };
                plan.chunks
                    .push(ChunkSpec::new(chunk_range, label).with_state(state(&s)?));
                at = end;
            }
        }
        Scan::IdRange { ids_per_chunk, .. } | Scan::Snapshot { ids_per_chunk, .. } => {
            let export = match scan {
                Scan::Snapshot { .. } => {
                    Some(manifest.source.snapshot.clone().ok_or_else(|| {
                        HttpError::Config(format!(
                            "run {run}: a snapshot scan needs source.snapshot (the export id)"
                        ))
                    })?)
                }
                _ => None,
            };
            let (from, to, width) = id_bounds(run, &range)?;
            let per = (*ids_per_chunk).max(1);
            let mut at = from;
            while at < to {
                let end = at.saturating_add(per).min(to);
                let s = match &export {
                    Some(export_id) => ChunkState::Snapshot {
                        export_id: export_id.clone(),
                        from: at,
                        to_exclusive: end,
                        retain_raw: keep,
                    },
                    None => ChunkState::IdRange {
                        from: at,
                        to_exclusive: end,
                        retain_raw: keep,
                    },
                };
                plan.chunks.push(
                    ChunkSpec::new(
                        InputRange::Keys {
                            from: format!("{at:0width$}"),
                            to_exclusive: format!("{end:0width$}"),
                        },
                        format!("ids {at}..{end}"),
                    )
                    .with_state(state(&s)?)
                    .with_estimate(end - at, None),
                );
                at = end;
            }
            plan.snapshot = export;
        }
        Scan::Cursor { .. } => {
            let InputRange::Keys { from, to_exclusive } = &range else {
                return Err(HttpError::Config(format!(
                    "run {run}: a cursor scan needs a keys range (cursor, end key), not {range}"
                )));
            };
            let s = ChunkState::Cursor {
                after: from.clone(),
                to_exclusive: to_exclusive.clone(),
                retain_raw: keep,
            };
            plan.chunks.push(
                ChunkSpec::new(range.clone(), format!("after {from}")).with_state(state(&s)?),
            );
        }
    }
    Ok(plan)
}

fn id_bounds(run: &str, range: &InputRange) -> Result<(u64, u64, usize)> {
    let InputRange::Keys { from, to_exclusive } = range else {
        return Err(HttpError::Config(format!(
            "run {run}: an id scan needs a keys range, not {range}"
        )));
    };
    let parse = |s: &str| {
        s.parse::<u64>().map_err(|_| {
            HttpError::Config(format!(
                "run {run}: id range bound `{s}` is not a decimal id"
            ))
        })
    };
    if from.len() != to_exclusive.len() {
        return Err(HttpError::Config(format!(
            "run {run}: id range bounds `{from}` and `{to_exclusive}` must have one width (zero-pad them) so their text order is their numeric order"
        )));
    }
    Ok((parse(from)?, parse(to_exclusive)?, from.len()))
}
