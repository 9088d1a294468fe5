//! backfill-files' integration tests, built as one test binary (one link instead of one per file).
//! Each module is one concern; run one with `cargo test -p backfill-files --test integration <module>::`.

mod common;

mod changed_in_run;
mod conformance;
mod estimate;
mod import;
mod ledger;
#[cfg(feature = "object-store")]
mod object_store;
#[cfg(feature = "parquet")]
mod parquet;
mod plan_props;
mod relanding;
mod verify;
