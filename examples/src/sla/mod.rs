//! The regulatory enforcement SLA restatement (the seed's case study): generator, calendar,
//! transforms, source, validators and the job that runs it end to end.
//!
//! Run it with `cargo run -p backfill-examples` (SQLite files in `./sla-restatement-data`), or
//! `cargo run -p backfill-examples -- --database-url postgres://…` (or `mysql://…`) to use PostgreSQL
//! (or MariaDB); or step by step with the operator's tool, `sla-backfill` ([`cli`], and
//! `docs/runbook.md`).

/// Prints a line to stdout, ignoring a closed pipe (`sla-restatement | head` must not panic).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub mod calendar;
pub mod checks;
pub mod cli;
pub mod corrections;
pub mod diff;
pub mod events;
pub mod job;
pub mod manifests;
pub mod report;
pub mod source;
pub mod transform;
