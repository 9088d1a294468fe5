//! Replays an exact offset range of a Kafka topic through a transform into a backfill topic.
//!
//! ```sh
//! scripts/kafka-broker.sh 19092 /tmp/bf-kafka            # or any Kafka cluster
//! cargo run -p backfill-examples --example kafka_replay -- --brokers 127.0.0.1:19092
//! ```
//!
//! Its last line is `published <N> records to <topic>`; check the topic with
//! `kcat -C -b 127.0.0.1:19092 -t <topic> -e -X isolation.level=read_committed -f '%k %h\n'`.
//! The program is [`backfill_examples::kafka_replay`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    backfill_examples::kafka_replay::main().await
}
