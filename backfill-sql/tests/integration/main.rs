//! backfill-sql's integration tests, built as one test binary (one link instead of one per file).
//! Each module is one concern; run one with `cargo test -p backfill-sql --test integration <module>::`.

mod common;
mod live;
mod publishing;

mod cancelled_begin;
mod conformance;
mod correction_outbox;
mod crash_windows;
mod estimate;
mod fencing;
mod file_ledger_by_hash;
mod files_and_checks;
mod hostile_values;
mod identifiers;
mod live_versions;
mod live_writers;
mod merge_cdc;
mod partial_failure;
mod pg_partitions;
mod pool;
mod privacy;
mod publish;
mod run_wide_limits;
mod sink;
mod smoke;
mod source;
mod store;
mod vacuum_locks;
mod workers;
