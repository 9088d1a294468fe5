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
    let _ = if json {
        tracing::subscriber::set_global_default(json_lines(filter, std::io::stderr))
            .map_err(|e| e.to_string())
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .compact()
            .try_init()
            .map_err(|e| e.to_string())
    };
}

/// JSON lines carrying the current span's fields (the runner's `backfill.run` and
/// `backfill.chunk` spans: run_id, chunk_id, source_range, transform_version, target,
/// processing_mode) on every event.
fn json_lines<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .finish()
}

/// Serves the metrics recorded from now on at `http://addr/metrics` (every path answers), the
/// §25 names described.
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_chunk_context_on_every_line() {
        let buf = Buf::default();
        let make = {
            let buf = buf.clone();
            move || buf.clone()
        };
        let sub = super::json_lines(tracing_subscriber::EnvFilter::new("info"), make);
        tracing::subscriber::with_default(sub, || {
            // The runner's chunk span, as backfill-core opens it.
            let span = tracing::info_span!(
                "backfill.chunk",
                run_id = "bf-1",
                chunk_id = "00000-ab",
                source_range = "dates[2025-01-01, 2025-02-01)",
                transform_version = "3.1.0",
                target = "silver.t",
                processing_mode = "BACKFILL",
            );
            let _g = span.enter();
            tracing::info!(output = 10, "chunk staged");
            tracing::warn!(error = "x", "chunk failed");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for l in &lines {
            let span = &l["span"];
            for k in [
                "run_id",
                "chunk_id",
                "source_range",
                "transform_version",
                "target",
                "processing_mode",
            ] {
                assert!(span.get(k).is_some(), "{k} missing in {l}");
            }
        }
        assert_eq!(lines[0]["message"], "chunk staged");
    }
}
