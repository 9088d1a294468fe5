//! Publication into a declared backfill topic: the validated run copied once, in one transaction,
//! with a publication record beside it.
//!
//! A target topic has a one-partition publication log (`<topic>.publications`). Publishing a run
//! copies every record its chunks staged (found through the ledger's [`StagedRange`] artifacts)
//! into the target topic and appends the run's publication record to the log, all in one
//! transaction of the target's single transactional id: read_committed readers see the whole run
//! and its record, or neither. `inspect` reads the log, so an unknown outcome (a commit that timed
//! out) is resolved by looking, never by producing again.
//!
//! # What Kafka can and cannot undo
//! Records in a topic cannot be removed. Rollback therefore appends a rollback record to the
//! publication log: the accepted run of each partition moves back, [`TargetReader::read_current`]
//! and every reader that follows the log (or filters by the `backfill_run_id` header) sees the
//! earlier run again, and nothing is produced twice. Consumers that read the topic without the
//! log have already seen the rolled-back run's records; what they need is a correction, not a
//! rollback (see the correction-events publisher).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::manifest::{Mutation, OffsetRange};
use backfill_core::publish::{
    PublishReceipt, PublishRequest, Publisher, PublisherCapabilities, RollbackRequest, TargetReader,
};
use backfill_core::sink::SinkDescriptor;
use backfill_core::Result;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::admin::{ensure_topic, partition_count, watermarks};
use crate::codec::{headers as h, RowCodec};
use crate::config::KafkaConfig;
use crate::error::{corrupt, manifest};
use crate::produce::{SendRecord, TxProducer};
use crate::read::{read_ranges, read_to_end, DEFAULT_BATCH};
use crate::sink::{read_staged_range, StagedRange};
use crate::topics;

/// One entry of a target's publication log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogEntry {
    /// A run was published.
    Published {
        /// The receipt.
        receipt: PublishReceipt,
        /// The run it replaced as accepted, if any.
        previous: Option<RunId>,
        /// Offsets the run's records got in the target topic, per partition `[from, to)`.
        offsets: Vec<OffsetRange>,
    },
    /// The accepted run moved back.
    RolledBack {
        /// The run rolled back.
        from: RunId,
        /// The run accepted again.
        to: RunId,
        /// The receipt.
        receipt: PublishReceipt,
    },
}

/// Publishes validated runs into a backfill topic (mutation `append_with_run_id`).
///
/// ```no_run
/// use backfill_kafka::{KafkaConfig, KafkaTopicPublisher, ReplayCodec};
/// let target = KafkaTopicPublisher::new(KafkaConfig::new("127.0.0.1:9092"), "orders.backfill", ReplayCodec)
///     .partitions(4);
/// # let _ = target;
/// ```
pub struct KafkaTopicPublisher<R> {
    config: KafkaConfig,
    topic: String,
    codec: Arc<dyn RowCodec<R>>,
    partitions: i32,
    replication: i32,
}

impl<R> fmt::Debug for KafkaTopicPublisher<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaTopicPublisher")
            .field("topic", &self.topic)
            .field("brokers", &self.config.brokers())
            .finish_non_exhaustive()
    }
}

impl<R: OutputRow> KafkaTopicPublisher<R> {
    /// A publisher into `topic` (the manifest's `target.name`), created with 4 partitions if it
    /// does not exist.
    pub fn new(config: KafkaConfig, topic: impl Into<String>, codec: impl RowCodec<R>) -> Self {
        Self {
            config,
            topic: topic.into(),
            codec: Arc::new(codec),
            partitions: 4,
            replication: 1,
        }
    }

    /// Partitions to create the target topic with.
    pub fn partitions(mut self, n: i32) -> Self {
        self.partitions = n.max(1);
        self
    }

    /// Replication factor of the topics the publisher creates.
    pub fn replication(mut self, n: i32) -> Self {
        self.replication = n.max(1);
        self
    }

    /// The target topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The publication log's topic.
    pub fn log_topic(&self) -> String {
        topics::publications(&self.topic)
    }

    /// Every entry of the publication log, in order.
    pub async fn log(&self) -> Result<Vec<LogEntry>> {
        let log = self.log_topic();
        if partition_count(&self.config, &log).await?.is_none() {
            return Ok(Vec::new());
        }
        read_to_end(&self.config, &log, 0)
            .await?
            .iter()
            .map(|r| {
                serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                    .map_err(|e| corrupt(format!("publication record {}/{}", r.topic, r.offset), e))
            })
            .collect()
    }

    /// The run readers should see in each partition, from the log.
    pub async fn accepted(&self) -> Result<BTreeMap<PartitionKey, RunId>> {
        let mut at: BTreeMap<PartitionKey, RunId> = BTreeMap::new();
        for e in self.log().await? {
            match e {
                LogEntry::Published { receipt, .. } => {
                    for p in receipt.partitions {
                        at.insert(p, receipt.run_id.clone());
                    }
                }
                LogEntry::RolledBack { from, to, .. } => {
                    for v in at.values_mut() {
                        if *v == from {
                            *v = to.clone();
                        }
                    }
                }
            }
        }
        Ok(at)
    }

    async fn ensure(&self) -> Result<()> {
        ensure_topic(&self.config, &self.topic, self.partitions, self.replication).await?;
        ensure_topic(&self.config, &self.log_topic(), 1, self.replication).await
    }

    async fn append(&self, p: &TxProducer, entry: &LogEntry) -> Result<()> {
        let v = serde_json::to_vec(entry).map_err(|e| corrupt("publication record", e))?;
        let log = self.log_topic();
        p.send(SendRecord {
            topic: &log,
            partition: Some(0),
            key: None,
            value: Some(&v),
            timestamp_ms: None,
            headers: &[],
            extra: &[],
        })
        .await
    }

    async fn find_publication(&self, run: &RunId) -> Result<Option<PublishReceipt>> {
        Ok(self.log().await?.into_iter().find_map(|e| match e {
            LogEntry::Published { receipt, .. } if receipt.run_id == *run => Some(receipt),
            _ => None,
        }))
    }
}

fn reference(topic: &str, offsets: &[OffsetRange]) -> String {
    crate::source::snapshot_name(topic, offsets)
}

#[async_trait]
impl<R: OutputRow> Publisher for KafkaTopicPublisher<R> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal(&self.topic, "kafka_topic")
    }

    fn capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities::with_mutations([Mutation::AppendWithRunId.name()])
            .rollback(true)
            .read_back(true)
            .atomic_multi_partition(true)
    }

    async fn publish(&self, req: PublishRequest<'_>) -> Result<PublishReceipt> {
        let mutation = req.manifest.target.mutation.as_ref().map(Mutation::name);
        if mutation != Some(Mutation::AppendWithRunId.name()) {
            return Err(manifest(format!(
                "run {}: a Kafka topic publishes append_with_run_id, not {}",
                req.run_id,
                mutation.unwrap_or("no mutation")
            )));
        }
        if let Some(r) = self.find_publication(req.run_id).await? {
            return Ok(r);
        }
        self.ensure().await?;
        let count = partition_count(&self.config, &self.topic)
            .await?
            .unwrap_or(0) as i32;
        let mut producer =
            TxProducer::start(&self.config, &topics::publish_txid(&self.topic)).await?;
        // Another publisher of this target may have committed between the look and the fence.
        if let Some(r) = self.find_publication(req.run_id).await? {
            return Ok(r);
        }
        producer.begin()?;
        let copied: Result<u64> = async {
            let mut copied = 0u64;
            for a in req.artifacts {
                let staged: StagedRange = a.artifact.parse()?;
                let mut records = read_staged_range(&self.config, &staged);
                let mut n = 0u64;
                while let Some(batch) = records.next().await {
                    for r in batch? {
                        let target = match r.header(h::TARGET_PARTITION) {
                            Some(v) => Some(
                                std::str::from_utf8(v)
                                    .ok()
                                    .and_then(|s| s.parse::<i32>().ok())
                                    .filter(|p| (0..count).contains(p))
                                    .ok_or_else(|| {
                                        manifest(format!(
                                            "run {}: a row asks for partition {} of {}, which has {count}",
                                            req.run_id,
                                            String::from_utf8_lossy(v),
                                            self.topic
                                        ))
                                    })?,
                            ),
                            None => None,
                        };
                        let kept: Vec<_> = r
                            .headers
                            .iter()
                            .filter(|x| !matches!(x.key.as_str(), h::CHUNK | h::ATTEMPT | h::TARGET_PARTITION))
                            .cloned()
                            .collect();
                        producer
                            .send(SendRecord {
                                topic: &self.topic,
                                partition: target,
                                key: r.key.as_deref(),
                                value: r.value.as_deref(),
                                timestamp_ms: r.timestamp_ms,
                                headers: &kept,
                                extra: &[],
                            })
                            .await?;
                        n += 1;
                    }
                }
                if n != a.rows {
                    return Err(corrupt(
                        format!("staging of chunk {} of run {}", a.chunk_id, req.run_id),
                        format!("the ledger says {} rows, the staging topic holds {n}", a.rows),
                    ));
                }
                copied += n;
            }
            Ok(copied)
        }
        .await;
        let copied = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = producer.abort().await;
                return Err(e);
            }
        };
        let (delivered, _) = producer.flush().await?;
        let offsets: Vec<OffsetRange> = delivered
            .iter()
            .map(|(p, (a, b))| OffsetRange {
                partition: *p,
                from: *a,
                to_exclusive: b + 1,
            })
            .collect();
        let receipt = PublishReceipt {
            run_id: req.run_id.clone(),
            target: self.topic.clone(),
            mutation: Mutation::AppendWithRunId.name().into(),
            partitions: req.digests.0.keys().cloned().collect(),
            rows: copied,
            published_at: req.at,
            reference: reference(&self.topic, &offsets),
            digests: req.digests.clone(),
        };
        let entry = LogEntry::Published {
            receipt: receipt.clone(),
            previous: req.previous.cloned(),
            offsets,
        };
        self.append(&producer, &entry).await?;
        producer.commit().await?;
        Ok(receipt)
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        self.find_publication(run_id).await
    }

    async fn rollback(&self, req: RollbackRequest<'_>) -> Result<PublishReceipt> {
        if let Some(r) = self.inspect_rollback(req.from, req.to).await? {
            return Ok(r);
        }
        let Some(published) = self.find_publication(req.from).await? else {
            return Err(manifest(format!(
                "run {}: it was never published to {}, so it cannot be rolled back",
                req.from, self.topic
            )));
        };
        let mut producer =
            TxProducer::start(&self.config, &topics::publish_txid(&self.topic)).await?;
        if let Some(r) = self.inspect_rollback(req.from, req.to).await? {
            return Ok(r);
        }
        let receipt = PublishReceipt {
            run_id: req.to.clone(),
            target: self.topic.clone(),
            mutation: "rollback".into(),
            partitions: published.partitions.clone(),
            rows: 0,
            published_at: req.at,
            reference: format!(
                "rollback of {} to {} in {}",
                req.from,
                req.to,
                self.log_topic()
            ),
            digests: PartitionDigests::default(),
        };
        producer.begin()?;
        let entry = LogEntry::RolledBack {
            from: req.from.clone(),
            to: req.to.clone(),
            receipt: receipt.clone(),
        };
        if let Err(e) = self.append(&producer, &entry).await {
            let _ = producer.abort().await;
            return Err(e);
        }
        producer.commit().await?;
        Ok(receipt)
    }

    async fn inspect_rollback(&self, from: &RunId, to: &RunId) -> Result<Option<PublishReceipt>> {
        Ok(self.log().await?.into_iter().find_map(|e| match e {
            LogEntry::RolledBack {
                from: f,
                to: t,
                receipt,
            } if f == *from && t == *to => Some(receipt),
            _ => None,
        }))
    }
}

impl<R: OutputRow> TargetReader<R> for KafkaTopicPublisher<R> {
    /// The accepted run's rows of `partition`: the target topic read read_committed, filtered by
    /// the `backfill_run_id` and `backfill_partition` headers against the publication log.
    fn read_current<'a>(&'a self, partition: &'a PartitionKey) -> BoxStream<'a, Result<Vec<R>>> {
        stream::once(async move {
            let accepted = self.accepted().await?;
            let Some(run) = accepted.get(partition).cloned() else {
                return Ok(stream::empty().boxed());
            };
            let Some(n) = partition_count(&self.config, &self.topic).await? else {
                return Ok(stream::empty().boxed());
            };
            let ps: Vec<i32> = (0..n as i32).collect();
            let ranges: Vec<OffsetRange> = watermarks(&self.config, &self.topic, &ps)
                .await?
                .into_iter()
                .map(|(p, lo, hi)| OffsetRange {
                    partition: p,
                    from: lo,
                    to_exclusive: hi,
                })
                .collect();
            let run = run.to_string().into_bytes();
            let part = partition.to_string().into_bytes();
            let codec = Arc::clone(&self.codec);
            let rows = read_ranges(
                self.config.clone(),
                self.topic.clone(),
                ranges,
                DEFAULT_BATCH,
            )
            .map(move |b| {
                b.and_then(|batch| {
                    batch
                        .iter()
                        .filter(|r| {
                            r.header(h::RUN_ID) == Some(&run[..])
                                && r.header(h::PARTITION) == Some(&part[..])
                        })
                        .map(|r| codec.decode(r))
                        .collect::<Result<Vec<R>>>()
                })
            })
            .filter(|b| futures::future::ready(!matches!(b, Ok(v) if v.is_empty())))
            .boxed();
            Ok::<_, backfill_core::Error>(rows)
        })
        .map(|r| match r {
            Ok(s) => s,
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }
}

/// When a publication was made, from its log entry (for evidence and tools).
pub fn published_at(e: &LogEntry) -> DateTime<Utc> {
    match e {
        LogEntry::Published { receipt, .. } | LogEntry::RolledBack { receipt, .. } => {
            receipt.published_at
        }
    }
}
