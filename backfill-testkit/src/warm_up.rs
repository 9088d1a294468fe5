//! The warm-up range check: outputs fall only inside the publish range, while the transform still
//! sees (and uses) the warm-up input before it.
//!
//! A manifest may read more input than it publishes: `source.range` starts earlier than
//! `publish_range` so that state (a case opened in December, a rolling window) is complete when the
//! published range begins. [`check_warm_up`] runs a transform over inputs that include warm-up and
//! checks:
//!
//! 1. every output row's business date lies inside the manifest's publish range, and its partition is
//!    one of the manifest's target partitions (when it lists any);
//! 2. the same inputs without their warm-up part (your `without_warm_up` decides what that is: drop
//!    warm-up records, or strip warm-up events from each record) give different output, so the
//!    warm-up input did reach the state the output depends on.
//!
//! Give inputs whose warm-up matters (a case opened during warm-up and still open after it); with
//! inputs where it cannot matter, clause 2 fails with [`WarmUpFailure::WarmUpIgnored`].

use std::collections::BTreeSet;
use std::fmt;

use backfill_core::context::TransformContext;
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::manifest::{InputRange, RunManifest};
use backfill_core::transform::DeterministicTransform;
use chrono::{DateTime, NaiveDate, Utc};

/// A broken warm-up clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmUpFailure {
    /// The manifest has no date or instant publish range to check against.
    NoPublishRange {
        /// The manifest's effective publish range, as text (`none` when absent).
        range: String,
    },
    /// An output row's business date lies outside the publish range.
    OutsidePublishRange {
        /// The row's business date.
        date: NaiveDate,
        /// The row's partition.
        partition: String,
        /// The publish range.
        range: String,
        /// `Debug` form of the row.
        row: String,
    },
    /// An output row's partition is not one of the manifest's target partitions.
    PartitionNotInTarget {
        /// The partition.
        partition: String,
        /// `Debug` form of the row.
        row: String,
    },
    /// Removing the warm-up input did not change the output: state never saw it.
    WarmUpIgnored {
        /// Rows with warm-up input.
        rows: u64,
    },
    /// The transform failed.
    Transform {
        /// Whether the warm-up input had been removed.
        without_warm_up: bool,
        /// The error.
        error: String,
    },
}

impl fmt::Display for WarmUpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPublishRange { range } => {
                write!(f, "the manifest's publish range {range} is not a date or instant range")
            }
            Self::OutsidePublishRange {
                date,
                partition,
                range,
                row,
            } => write!(
                f,
                "output for {date} (partition {partition}) lies outside the publish range {range}: {row}"
            ),
            Self::PartitionNotInTarget { partition, row } => write!(
                f,
                "output partition {partition} is not a target partition of the manifest: {row}"
            ),
            Self::WarmUpIgnored { rows } => write!(
                f,
                "the output ({rows} rows) is the same without the warm-up input: state never saw it"
            ),
            Self::Transform {
                without_warm_up,
                error,
            } => write!(
                f,
                "the transform failed{}: {error}",
                if *without_warm_up {
                    " without warm-up input"
                } else {
                    ""
                }
            ),
        }
    }
}

impl std::error::Error for WarmUpFailure {}

/// What a passing [`check_warm_up`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmUpReport {
    /// Rows produced with the warm-up input.
    pub rows: u64,
    /// Rows produced without it.
    pub rows_without_warm_up: u64,
    /// The partitions written.
    pub partitions: Vec<String>,
}

fn run<T: DeterministicTransform>(
    t: &T,
    inputs: &[T::Input],
    ctx: &TransformContext,
    without_warm_up: bool,
) -> Result<Vec<T::Output>, WarmUpFailure> {
    let mut out = Vec::new();
    for i in inputs {
        t.apply(i, ctx, &mut out)
            .map_err(|e| WarmUpFailure::Transform {
                without_warm_up,
                error: e.to_string(),
            })?;
    }
    Ok(out)
}

/// Runs `transform` over `inputs` in the context of `manifest` started at `at`, and checks the two
/// clauses of the [module docs](self). `date_of` gives an output row's business date;
/// `without_warm_up` returns the inputs with their warm-up part removed.
pub fn check_warm_up<T: DeterministicTransform>(
    transform: &T,
    manifest: &RunManifest,
    at: DateTime<Utc>,
    inputs: &[T::Input],
    date_of: impl Fn(&T::Output) -> NaiveDate,
    without_warm_up: impl Fn(&[T::Input]) -> Vec<T::Input>,
) -> Result<WarmUpReport, WarmUpFailure> {
    let range = manifest.effective_publish_range();
    let Some(range @ (InputRange::Dates { .. } | InputRange::Timestamps { .. })) = range else {
        return Err(WarmUpFailure::NoPublishRange {
            range: range.map_or_else(|| "none".to_owned(), ToString::to_string),
        });
    };
    let ctx = TransformContext::for_manifest(manifest, at);
    let rows = run(transform, inputs, &ctx, false)?;
    let targets: BTreeSet<&str> = manifest
        .target
        .partitions
        .iter()
        .map(|p| p.as_str())
        .collect();
    let mut partitions = BTreeSet::new();
    for row in &rows {
        let (date, partition) = (date_of(row), row.partition().into_owned());
        if range.contains_date(date) != Some(true) {
            return Err(WarmUpFailure::OutsidePublishRange {
                date,
                partition,
                range: range.to_string(),
                row: format!("{row:?}"),
            });
        }
        if !targets.is_empty() && !targets.contains(partition.as_str()) {
            return Err(WarmUpFailure::PartitionNotInTarget {
                partition,
                row: format!("{row:?}"),
            });
        }
        partitions.insert(partition);
    }
    let cold = run(transform, &without_warm_up(inputs), &ctx, true)?;
    let (with, without) = (
        PartitionDigests::of_rows(&rows),
        PartitionDigests::of_rows(&cold),
    );
    if with == without {
        return Err(WarmUpFailure::WarmUpIgnored {
            rows: with.total_rows(),
        });
    }
    Ok(WarmUpReport {
        rows: with.total_rows(),
        rows_without_warm_up: without.total_rows(),
        partitions: partitions.into_iter().collect(),
    })
}
