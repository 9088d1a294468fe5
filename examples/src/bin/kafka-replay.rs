//! The Kafka replay example as a binary, so tests can kill it and start it again
//! (`tests/integration/kafka_replay.rs`); `cargo run -p backfill-examples --example kafka_replay` is the same
//! program.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    backfill_examples::kafka_replay::main().await
}
