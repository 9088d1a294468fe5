//! The generic `backfill` binary: every operation that needs no transform. Pipelines build their
//! own binary on `backfill_cli::main` to add `plan`, `run`, `publish`, `rollback` and `diff`.

fn main() -> std::process::ExitCode {
    backfill_cli::main(|_| async { Ok(backfill_cli::Registry::new()) })
}
