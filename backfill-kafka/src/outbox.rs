//! Correction events on a Kafka topic: one record per changed key, a run's events and its receipt
//! in one transaction.
//!
//! Each event is a record keyed by the event's business key, its value the event as camelCase JSON
//! (`eventType`, `correctsEventId`, `old`, `new`, `producedByRunId`, ...), with the headers
//! `backfill_run_id` and `event_type`. A one-partition log topic beside it (`<topic>.publications`)
//! holds each run's receipt and event ids, written in the same transaction, so read_committed
//! consumers see a run's events and its receipt together or neither, and `inspect` answers from
//! the log.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use backfill_core::correction::{CorrectionEvent, CorrectionOutbox};
use backfill_core::ids::RunId;
use backfill_core::publish::PublishReceipt;
use backfill_core::sink::SinkDescriptor;
use backfill_core::Result;
use serde::{Deserialize, Serialize};

use crate::admin::{ensure_topic, partition_count};
use crate::codec::headers as h;
use crate::config::KafkaConfig;
use crate::error::{corrupt, manifest};
use crate::produce::{SendRecord, TxProducer};
use crate::read::read_to_end;
use crate::topics;

/// A run's entry in the outbox's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Written {
    receipt: PublishReceipt,
    event_ids: Vec<String>,
}

/// A [`CorrectionOutbox`] on a Kafka topic.
///
/// ```no_run
/// use backfill_kafka::{KafkaConfig, KafkaOutbox};
/// let outbox = KafkaOutbox::new(KafkaConfig::new("127.0.0.1:9092"), "case-sla-corrections");
/// # let _ = outbox;
/// ```
pub struct KafkaOutbox {
    config: KafkaConfig,
    topic: String,
    partitions: i32,
    replication: i32,
    external: bool,
}

impl fmt::Debug for KafkaOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaOutbox")
            .field("topic", &self.topic)
            .field("brokers", &self.config.brokers())
            .finish_non_exhaustive()
    }
}

impl KafkaOutbox {
    /// An outbox writing `topic` (created with 4 partitions when missing). Its descriptor says the
    /// topic reaches consumers directly (`external_side_effects`), so the sink policy wants the
    /// manifest to allow it by name; use [`relayed`](Self::relayed) for a topic a relay forwards.
    pub fn new(config: KafkaConfig, topic: impl Into<String>) -> Self {
        Self {
            config,
            topic: topic.into(),
            partitions: 4,
            replication: 1,
            external: true,
        }
    }

    /// The topic is read by a relay, not by consumers directly.
    pub fn relayed(mut self) -> Self {
        self.external = false;
        self
    }

    /// Partitions to create the topic with.
    pub fn partitions(mut self, n: i32) -> Self {
        self.partitions = n.max(1);
        self
    }

    /// The events topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The log topic of receipts.
    pub fn log_topic(&self) -> String {
        topics::publications(&self.topic)
    }

    async fn written(&self) -> Result<Vec<Written>> {
        let log = self.log_topic();
        if partition_count(&self.config, &log).await?.is_none() {
            return Ok(Vec::new());
        }
        read_to_end(&self.config, &log, 0)
            .await?
            .iter()
            .map(|r| {
                serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                    .map_err(|e| corrupt(format!("outbox receipt {}/{}", r.topic, r.offset), e))
            })
            .collect()
    }

    async fn find(&self, run: &RunId) -> Result<Option<PublishReceipt>> {
        Ok(self
            .written()
            .await?
            .into_iter()
            .find(|w| w.receipt.run_id == *run)
            .map(|w| w.receipt))
    }
}

#[async_trait]
impl CorrectionOutbox for KafkaOutbox {
    fn descriptor(&self) -> SinkDescriptor {
        if self.external {
            SinkDescriptor::side_effecting(&self.topic, "kafka_topic")
        } else {
            SinkDescriptor::internal(&self.topic, "kafka_topic")
        }
    }

    async fn write(
        &self,
        run_id: &RunId,
        events: &[CorrectionEvent],
        receipt: &PublishReceipt,
    ) -> Result<PublishReceipt> {
        if let Some(r) = self.find(run_id).await? {
            return Ok(r);
        }
        ensure_topic(&self.config, &self.topic, self.partitions, self.replication).await?;
        ensure_topic(&self.config, &self.log_topic(), 1, self.replication).await?;
        let mut producer =
            TxProducer::start(&self.config, &format!("backfill.outbox.{}", self.topic)).await?;
        let written = self.written().await?;
        if let Some(w) = written.iter().find(|w| w.receipt.run_id == *run_id) {
            return Ok(w.receipt.clone());
        }
        let mut seen: BTreeSet<&str> = written
            .iter()
            .flat_map(|w| w.event_ids.iter().map(String::as_str))
            .collect();
        for e in events {
            if !seen.insert(&e.event_id) {
                return Err(manifest(format!(
                    "run {run_id}: correction event {} (key {}) is already in {} or repeated",
                    e.event_id, e.key, self.topic
                )));
            }
        }
        producer.begin()?;
        let sent: Result<()> = async {
            let run = run_id.as_str().as_bytes();
            for e in events {
                let v = serde_json::to_vec(e).map_err(|x| corrupt("correction event", x))?;
                let extra: [(&str, &[u8]); 2] =
                    [(h::RUN_ID, run), ("event_type", e.event_type.as_bytes())];
                producer
                    .send(SendRecord {
                        topic: &self.topic,
                        partition: None,
                        key: Some(e.key.as_bytes()),
                        value: Some(&v),
                        timestamp_ms: Some(e.produced_at.timestamp_millis()),
                        headers: &[],
                        extra: &extra,
                    })
                    .await?;
            }
            let (delivered, count) = producer.flush().await?;
            if count != events.len() as u64 {
                return Err(corrupt(
                    format!("outbox {}", self.topic),
                    format!("{count} of {} events delivered", events.len()),
                ));
            }
            let mut stored = receipt.clone();
            let offsets: Vec<_> = delivered
                .iter()
                .map(|(p, (a, b))| backfill_core::manifest::OffsetRange {
                    partition: *p,
                    from: *a,
                    to_exclusive: b + 1,
                })
                .collect();
            stored.reference = crate::source::snapshot_name(&self.topic, &offsets);
            let entry = Written {
                receipt: stored,
                event_ids: events.iter().map(|e| e.event_id.clone()).collect(),
            };
            let v = serde_json::to_vec(&entry).map_err(|x| corrupt("outbox receipt", x))?;
            let log = self.log_topic();
            producer
                .send(SendRecord {
                    topic: &log,
                    partition: Some(0),
                    key: Some(run_id.as_str().as_bytes()),
                    value: Some(&v),
                    timestamp_ms: None,
                    headers: &[],
                    extra: &[],
                })
                .await
        }
        .await;
        if let Err(e) = sent {
            let _ = producer.abort().await;
            return Err(e);
        }
        producer.commit().await?;
        self.find(run_id).await?.ok_or_else(|| {
            corrupt(
                format!("outbox {}", self.topic),
                format!("run {run_id}: committed, but its receipt is not in the log"),
            )
        })
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        self.find(run_id).await
    }
}
