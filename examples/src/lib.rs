//! Runnable examples of the backfill SDK.
//!
//! - [`sla`]: the main job, the regulatory SLA restatement of the seed's case study, on SQLite by
//!   default (`cargo run -p backfill-examples`); and the same restatement step by step through the
//!   operator's tool, `sla-backfill` ([`sla::cli`], `docs/runbook.md`).
//! - [`kafka_replay`]: an exact offset-range replay into a backfill topic
//!   (`cargo run -p backfill-examples --example kafka_replay -- --brokers HOST:PORT`).
//! - [`iceberg_restatement`]: an Iceberg table on an embedded SQLite catalog, three months restated
//!   by write-audit-publish, then rolled back (`cargo run -p backfill-examples --example
//!   iceberg_restatement`).
//! - `examples/quickstart.rs`: a restatement in memory, from manifest to rollback
//!   (`cargo run -p backfill-examples --example quickstart`).

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod iceberg_restatement;
pub mod kafka_replay;
pub mod sla;
