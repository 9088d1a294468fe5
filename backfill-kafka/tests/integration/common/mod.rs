//! The broker under test, fresh topics, and a plain producer for seeding them.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::clone_on_ref_ptr)]

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backfill_kafka::{ensure_topic, KafkaConfig};
use rdkafka::message::{Header as WireHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The broker from `BACKFILL_TEST_KAFKA_BROKERS`. Without it the test fails when
/// `BACKFILL_REQUIRE_SERVICES=1` (CI) and is skipped loudly otherwise.
pub fn broker() -> Option<String> {
    match std::env::var("BACKFILL_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var("BACKFILL_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "BACKFILL_TEST_KAFKA_BROKERS is not set but BACKFILL_REQUIRE_SERVICES=1: the broker is missing"
            );
            eprintln!(
                "SKIPPED: no Kafka broker (set BACKFILL_TEST_KAFKA_BROKERS, see scripts/test.sh)"
            );
            None
        }
    }
}

/// Returns from the test when there is no broker (failing in CI, see [`broker`]).
#[macro_export]
macro_rules! broker_or_skip {
    () => {
        match common::broker() {
            Some(b) => b,
            None => return,
        }
    };
}

pub fn config(brokers: &str) -> KafkaConfig {
    KafkaConfig::new(brokers)
        .timeout(Duration::from_secs(20))
        .set("receive.message.max.bytes", "2000000000")
}

/// A unique topic name for one test.
pub fn topic(name: &str) -> String {
    format!(
        "t-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh topic with `partitions` partitions.
pub async fn fresh_topic(brokers: &str, name: &str, partitions: i32) -> String {
    let t = topic(name);
    ensure_topic(&config(brokers), &t, partitions, 1)
        .await
        .expect("create topic");
    t
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces `(partition, key, value, timestamp_ms)` records with an `origin` header, in order.
pub async fn seed(brokers: &str, topic: &str, records: &[(i32, String, Option<String>, i64)]) {
    let p = producer(brokers);
    for (part, key, value, ts) in records {
        let headers = OwnedHeaders::new().insert(WireHeader {
            key: "origin",
            value: Some("seed"),
        });
        let mut r = FutureRecord::to(topic)
            .partition(*part)
            .key(key.as_bytes())
            .timestamp(*ts)
            .headers(headers);
        if let Some(v) = value {
            r = r.payload(v.as_bytes());
        }
        p.send(r, Duration::from_secs(10)).await.expect("produce");
    }
    p.flush(Duration::from_secs(10)).expect("flush");
}

/// Runs kcat with `args`, returning its stdout (panics with stderr on failure; kcat is required).
pub fn kcat(args: &[&str]) -> String {
    let out = Command::new("kcat")
        .args(args)
        .output()
        .expect("kcat must be installed (scripts/test.sh installs Debian's kcat)");
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every record of `topic` as kcat sees it read_committed: `partition offset key value headers`.
pub fn kcat_dump(brokers: &str, topic: &str) -> Vec<String> {
    kcat(&[
        "-C",
        "-b",
        brokers,
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-q",
        "-X",
        "isolation.level=read_committed",
        "-X",
        "receive.message.max.bytes=2000000000",
        "-f",
        "%p %o %k %s %h\n",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Consumer groups the broker knows, as `(group, committed offsets)` lines from an admin listing.
pub fn committed_groups(brokers: &str) -> Vec<String> {
    use rdkafka::consumer::Consumer;
    let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    let groups = c
        .fetch_group_list(None, Duration::from_secs(10))
        .expect("group list");
    groups
        .groups()
        .iter()
        .map(|g| g.name().to_owned())
        .collect()
}
