//! The testkit's conformance suites against the broker: the source, the staging sink (fencing
//! included) and the topic publisher (append_with_run_id, rollback, read-back).

use crate::common;

use std::sync::Arc;

use backfill_core::manifest::{InputRange, OffsetRange, RunKind, RunManifest, SourceSpec};
use backfill_core::prelude::ExecutionMode;
use backfill_core::sink::StagingSink;
use backfill_kafka::{JsonCodec, KafkaRecord, KafkaSource, KafkaStagingSink, KafkaTopicPublisher};
use backfill_testkit::{
    PublishTarget, PublisherHarness, SinkHarness, SourceFixture, SourceHarness, TestRow,
};

fn brokers() -> backfill_core::Result<String> {
    common::broker().ok_or_else(|| {
        backfill_core::Error::adapter("kafka-test", "no broker: set BACKFILL_TEST_KAFKA_BROKERS")
    })
}

fn codec() -> JsonCodec<TestRow> {
    JsonCodec::new(|r: &TestRow| r.key.clone().into_bytes())
}

fn topic_of(namespace: &str) -> String {
    common::topic(&namespace.replace(['/', ':'], "_"))
}

struct Kafka;

#[async_trait::async_trait]
impl SinkHarness for Kafka {
    async fn build(&self, namespace: &str) -> backfill_core::Result<Arc<dyn StagingSink<TestRow>>> {
        let b = brokers()?;
        let sink = KafkaStagingSink::new(common::config(&b), codec())
            .prefix(format!("{}.", topic_of(namespace)))
            .partitions(2);
        Ok(Arc::new(sink))
    }
    async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl PublisherHarness for Kafka {
    async fn build(
        &self,
        namespace: &str,
    ) -> backfill_core::Result<(
        Arc<dyn StagingSink<TestRow>>,
        Arc<dyn PublishTarget<TestRow>>,
    )> {
        let b = brokers()?;
        let t = topic_of(namespace);
        let sink = KafkaStagingSink::new(common::config(&b), codec())
            .prefix(format!("{t}.staging."))
            .partitions(2);
        let publisher =
            KafkaTopicPublisher::new(common::config(&b), format!("{t}.target"), codec())
                .partitions(3);
        Ok((Arc::new(sink), Arc::new(publisher)))
    }
    async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl SourceHarness for Kafka {
    type Record = KafkaRecord;

    async fn build(&self, namespace: &str) -> backfill_core::Result<SourceFixture<KafkaRecord>> {
        let b = brokers()?;
        let t = topic_of(namespace);
        backfill_kafka::ensure_topic(&common::config(&b), &t, 3, 1).await?;
        let t0 = chrono::Utc::now().timestamp_millis() - 60_000;
        let records: Vec<_> = (0..60i64)
            .map(|i| {
                (
                    (i % 3) as i32,
                    format!("k{i}"),
                    Some(format!("v{i}")),
                    t0 + i,
                )
            })
            .collect();
        common::seed(&b, &t, &records).await;
        let mut m = RunManifest::new(
            "bf-kafka-conformance",
            RunKind::Replay,
            ExecutionMode::Replay,
        );
        m.source = SourceSpec {
            kind: "kafka".into(),
            name: t.clone(),
            range: Some(InputRange::Offsets {
                partitions: vec![
                    OffsetRange {
                        partition: 0,
                        from: 2,
                        to_exclusive: 17,
                    },
                    OffsetRange {
                        partition: 1,
                        from: 0,
                        to_exclusive: 20,
                    },
                    OffsetRange {
                        partition: 2,
                        from: 5,
                        to_exclusive: 6,
                    },
                ],
            }),
            ..SourceSpec::default()
        };
        let source = KafkaSource::new(common::config(&b)).chunk_offsets(4);
        let cfg = common::config(&b);
        let topic = t.clone();
        Ok(SourceFixture::new(Arc::new(source), m)
            .expect_records(15 + 20 + 1)
            // Reading must not move the topic, nor commit offsets for any group.
            .observe(move || {
                let cfg = cfg.clone();
                let topic = topic.clone();
                async move {
                    let w = backfill_kafka::watermarks(&cfg, &topic, &[0, 1, 2]).await?;
                    let groups = common::committed_groups(cfg.brokers());
                    Ok(format!("{w:?} groups={groups:?}"))
                }
            }))
    }
    async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

backfill_testkit::sink_conformance!(kafka_sink, || Kafka);
backfill_testkit::publisher_conformance!(kafka_publisher, || Kafka);
backfill_testkit::source_conformance!(kafka_source, || Kafka);
