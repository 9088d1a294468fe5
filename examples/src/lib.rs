//! Runnable examples of the backfill SDK.
//!
//! - [`sla`]: the main job, the regulatory SLA restatement of the seed's case study, on SQLite by
//!   default (`cargo run -p backfill-examples`).
//! - `examples/quickstart.rs`: a restatement in memory, from manifest to rollback
//!   (`cargo run -p backfill-examples --example quickstart`).

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod sla;
