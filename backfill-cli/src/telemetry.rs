//! Logs (plain or JSON lines) and the Prometheus endpoint.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Installs the log subscriber: JSON lines with the current span's fields (run_id, chunk_id,
/// source_range, transform_version, target, mode) when `json`, compact text otherwise; level from
/// `RUST_LOG` (default `warn`, `info` for JSON logs).
pub(crate) fn logs(json: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if json { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Serves the metrics recorded from now on at `http://addr/metrics` (every path answers).
pub(crate) fn serve_metrics(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("serving metrics on {addr}: {e}"))?;
    for (name, help) in [
        (
            backfill_core::telemetry::INPUT_RECORDS_TOTAL,
            "input records read",
        ),
        (
            backfill_core::telemetry::OUTPUT_RECORDS_TOTAL,
            "output rows staged",
        ),
        (
            backfill_core::telemetry::REJECTED_RECORDS_TOTAL,
            "records the transform rejected",
        ),
        (
            backfill_core::telemetry::CHUNKS_COMPLETED_TOTAL,
            "chunks staged and recorded",
        ),
        (
            backfill_core::telemetry::VALIDATION_FAILURES_TOTAL,
            "validators that failed",
        ),
    ] {
        metrics::describe_counter!(name, help);
    }
    for (name, help) in [
        (
            backfill_core::telemetry::CHUNK_DURATION_SECONDS,
            "seconds per chunk",
        ),
        (
            backfill_core::telemetry::SINK_WRITE_LATENCY_MS,
            "milliseconds per staging write",
        ),
        (
            backfill_core::telemetry::PUBLISH_DURATION_SECONDS,
            "seconds per publication",
        ),
    ] {
        metrics::describe_histogram!(name, help);
    }
    metrics::describe_gauge!(
        backfill_core::telemetry::COST_ESTIMATE,
        "estimated cost in USD"
    );
    Ok(())
}
