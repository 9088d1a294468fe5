//! `sla-backfill`: the operator's `backfill` tool with the SLA restatement's transform and target
//! registered, to drive the restatement step by step (see `docs/runbook.md`):
//!
//! ```sh
//! export BACKFILL_STORE=sla-runs.db BACKFILL_WAREHOUSE=sla-warehouse.db
//! sla-backfill manifest check examples/manifests/sla-restatement.json
//! sla-backfill submit examples/manifests/sla-restatement.json
//! sla-backfill approve bf-2026-07-04-case-sla-v3-001 --as regulatory-reporting-owner
//! sla-backfill run bf-2026-07-04-case-sla-v3-001
//! ```
//!
//! Every command of `backfill` is here; the registry is
//! [`backfill_examples::sla::cli::registry`].

fn main() -> std::process::ExitCode {
    backfill_cli::main(backfill_examples::sla::cli::registry)
}
