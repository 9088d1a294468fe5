//! backfill-cli's integration tests, built as one test binary (one link instead of one per file).
//! Each module is one concern; run one with `cargo test -p backfill-cli --test integration <module>::`.

mod generic;
mod serve_metrics;
mod serve_metrics_estimate;
