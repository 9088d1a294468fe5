//! Metric names and per-run metric handles.
//!
//! Metrics go through the [`metrics`] facade: attach any exporter (Prometheus, StatsD, OpenTelemetry)
//! with `metrics::set_global_recorder`, and every run reports under these names with the labels
//! `run_id`, `mode` and `target`.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::manifest::RunManifest;

/// Input records read.
pub const INPUT_RECORDS_TOTAL: &str = "backfill_input_records_total";
/// Output rows produced (staged).
pub const OUTPUT_RECORDS_TOTAL: &str = "backfill_output_records_total";
/// Records rejected (transform errors, out-of-scope rows).
pub const REJECTED_RECORDS_TOTAL: &str = "backfill_rejected_records_total";
/// Chunks staged and recorded.
pub const CHUNKS_COMPLETED_TOTAL: &str = "backfill_chunks_completed_total";
/// Time per chunk, seconds.
pub const CHUNK_DURATION_SECONDS: &str = "backfill_chunk_duration_seconds";
/// Time the staging sink took per chunk, milliseconds.
pub const SINK_WRITE_LATENCY_MS: &str = "backfill_sink_write_latency_ms";
/// Validators that failed.
pub const VALIDATION_FAILURES_TOTAL: &str = "backfill_validation_failures_total";
/// The run's estimated cost in USD, from the source's sizes and the manifest's declared prices
/// (see [`crate::estimate`]); set when the estimate is made.
pub const COST_ESTIMATE: &str = "backfill_cost_estimate";
/// Time to publish, seconds.
pub const PUBLISH_DURATION_SECONDS: &str = "backfill_publish_duration_seconds";

/// Metric handles for one run, registered once so the hot path does no lookups.
#[derive(Debug, Clone)]
pub(crate) struct RunMetrics {
    pub(crate) input: Counter,
    pub(crate) output: Counter,
    pub(crate) rejected: Counter,
    pub(crate) chunks: Counter,
    pub(crate) chunk_seconds: Histogram,
    pub(crate) sink_ms: Histogram,
    pub(crate) validation_failures: Counter,
    pub(crate) cost: Gauge,
    pub(crate) publish_seconds: Histogram,
}

impl RunMetrics {
    pub(crate) fn new(m: &RunManifest) -> Self {
        let labels = [
            ("run_id", m.run_id.to_string()),
            ("mode", m.mode.as_str().to_owned()),
            ("target", m.target.name.clone()),
        ];
        Self {
            input: counter!(INPUT_RECORDS_TOTAL, &labels),
            output: counter!(OUTPUT_RECORDS_TOTAL, &labels),
            rejected: counter!(REJECTED_RECORDS_TOTAL, &labels),
            chunks: counter!(CHUNKS_COMPLETED_TOTAL, &labels),
            chunk_seconds: histogram!(CHUNK_DURATION_SECONDS, &labels),
            sink_ms: histogram!(SINK_WRITE_LATENCY_MS, &labels),
            validation_failures: counter!(VALIDATION_FAILURES_TOTAL, &labels),
            cost: gauge!(COST_ESTIMATE, &labels),
            publish_seconds: histogram!(PUBLISH_DURATION_SECONDS, &labels),
        }
    }
}
