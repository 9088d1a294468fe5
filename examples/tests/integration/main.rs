//! backfill-examples' integration tests, built as one test binary (one link instead of one per file).
//! Each module is one concern; run one with `cargo test -p backfill-examples --test integration <module>::`.

mod common;

mod iceberg_restatement;
mod kafka_replay;
mod sla_cli;
mod sla_control;
mod sla_corrections;
mod sla_estimate;
mod sla_job;
mod sla_reconciliation;
mod sla_servers;
mod sla_transform;
