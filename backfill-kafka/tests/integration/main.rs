//! backfill-kafka's integration tests, built as one test binary (one link instead of one per file).
//! Each module is one concern; run one with `cargo test -p backfill-kafka --test integration <module>::`.

#[macro_use]
mod common;

mod cdc_decode;
mod cdc_fold;
mod conformance;
mod corrections;
mod estimate;
mod partial_failure;
mod poison;
mod source;
mod transactions;
