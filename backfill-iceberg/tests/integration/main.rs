//! backfill-iceberg's integration tests, built as one test binary (one link instead of one per file).
//! Each module is one concern; run one with `cargo test -p backfill-iceberg --test integration <module>::`.

mod common;

mod commits;
mod conformance;
mod partial_failure;
mod pyiceberg;
mod source;
mod validation;
