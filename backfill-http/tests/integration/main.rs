//! backfill-http's integration tests, built as one test binary (one link instead of one per file).
//! Each module is one concern; run one with `cargo test -p backfill-http --test integration <module>::`.

mod common;

mod conformance;
mod crash;
mod drift;
mod patterns;
mod retry;
mod storm;
mod token;
