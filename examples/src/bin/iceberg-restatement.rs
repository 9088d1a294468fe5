//! The Iceberg restatement example as a binary, so tests can run it on a fresh warehouse
//! (`tests/integration/iceberg_restatement.rs`); `cargo run -p backfill-examples --example iceberg_restatement`
//! is the same program.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    backfill_examples::iceberg_restatement::main().await
}
