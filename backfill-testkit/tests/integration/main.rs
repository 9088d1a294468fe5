//! backfill-testkit's integration tests, built as one test binary (one link instead of one per file).
//! Each module is one concern; run one with `cargo test -p backfill-testkit --test integration <module>::`.

mod common;

mod determinism;
mod faults;
mod guards;
mod memory;
mod source;
mod user_crate;
