//! backfill-core's integration tests, built as one test binary (one link instead of one per file).
//! Each module is one concern; run one with `cargo test -p backfill-core --test integration <module>::`.

mod common;

mod architecture;
mod ceilings;
mod checklist;
mod control;
mod correction;
mod correction_control;
mod digest;
mod estimate;
mod lifecycle;
mod live;
mod manifest;
mod manifest_fuzz;
mod manifest_schema;
mod manifest_strict;
mod modes;
mod observability;
mod privacy;
mod quarantine;
mod ranges;
mod resume_property;
mod runner;
mod shared_parts;
mod source_state;
mod state;
mod store;
mod validation_once;
mod validators;
