//! Staging into a run-scoped topic with the transactional producer, fenced per chunk.
//!
//! Every chunk attempt produces its rows into the run's staging topic inside one transaction, with
//! the lineage headers. Its `transactional.id` is the chunk's, so a new attempt fences a zombie
//! one (the broker aborts the zombie's open transaction, and its commit fails): read_committed
//! readers never see a crashed or fenced attempt's records. Beside the staging topic a one-partition
//! attempts topic records, per chunk, each attempt's claim (in a transaction of its own, before any
//! row) and its completion (in the rows' transaction, with the offsets they got). A stage call whose
//! attempt is older than a claimed one is refused with [`Error::Fenced`] before it writes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::RunId;
use backfill_core::manifest::OffsetRange;
use backfill_core::sink::{
    SinkDescriptor, StageReceipt, StageRequest, StagedArtifact, StagingSink,
};
use backfill_core::{Error, Result};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::admin::{delete_topic, ensure_topic};
use crate::codec::{headers as h, RowCodec};
use crate::config::KafkaConfig;
use crate::error::corrupt;
use crate::produce::{SendRecord, TxProducer};
use crate::read::{read_ranges, read_to_end, DEFAULT_BATCH};
use crate::record::KafkaRecord;
use crate::topics;

/// What a chunk's staging produced: the artifact recorded in the ledger and handed to the
/// publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedRange {
    /// The run.
    pub run_id: String,
    /// The chunk.
    pub chunk: String,
    /// The attempt whose records these are.
    pub attempt: u32,
    /// Staging topic.
    pub topic: String,
    /// Staging partition.
    pub partition: i32,
    /// First offset of the attempt's records (`from == to_exclusive` when it staged none).
    pub from: i64,
    /// One past the last.
    pub to_exclusive: i64,
    /// Records staged.
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Marker {
    Claimed { chunk: String, attempt: u32 },
    Staged(StagedRange),
}

impl Marker {
    fn chunk_attempt(&self) -> (&str, u32) {
        match self {
            Self::Claimed { chunk, attempt } => (chunk, *attempt),
            Self::Staged(s) => (&s.chunk, s.attempt),
        }
    }
}

/// Reads a staged range's records: only those of its chunk and attempt.
pub(crate) fn read_staged_range(
    config: &KafkaConfig,
    s: &StagedRange,
) -> BoxStream<'static, Result<Vec<KafkaRecord>>> {
    if s.from >= s.to_exclusive {
        return stream::empty().boxed();
    }
    let range = OffsetRange {
        partition: s.partition,
        from: s.from,
        to_exclusive: s.to_exclusive,
    };
    let chunk = s.chunk.clone().into_bytes();
    let attempt = s.attempt.to_string().into_bytes();
    read_ranges(config.clone(), s.topic.clone(), vec![range], DEFAULT_BATCH)
        .map_ok(move |batch| {
            batch
                .into_iter()
                .filter(|r| {
                    r.header(h::CHUNK) == Some(&chunk[..])
                        && r.header(h::ATTEMPT) == Some(&attempt[..])
                })
                .collect::<Vec<_>>()
        })
        .try_filter(|b| futures::future::ready(!b.is_empty()))
        .boxed()
}

/// A [`StagingSink`] writing a run's rows into a run-scoped Kafka topic.
///
/// ```no_run
/// use backfill_kafka::{KafkaConfig, KafkaStagingSink, ReplayCodec};
/// let sink = KafkaStagingSink::new(KafkaConfig::new("127.0.0.1:9092"), ReplayCodec)
///     .prefix("backfill.staging.")
///     .partitions(4);
/// # let _ = sink;
/// ```
pub struct KafkaStagingSink<R> {
    config: KafkaConfig,
    codec: Arc<dyn RowCodec<R>>,
    prefix: String,
    partitions: i32,
    replication: i32,
    ready: Mutex<BTreeSet<String>>,
}

impl<R> fmt::Debug for KafkaStagingSink<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaStagingSink")
            .field("brokers", &self.config.brokers())
            .field("prefix", &self.prefix)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<R: OutputRow> KafkaStagingSink<R> {
    /// A sink staging into `backfill.staging.<run>` topics of 4 partitions, replication 1.
    pub fn new(config: KafkaConfig, codec: impl RowCodec<R>) -> Self {
        Self {
            config,
            codec: Arc::new(codec),
            prefix: "backfill.staging.".into(),
            partitions: 4,
            replication: 1,
            ready: Mutex::new(BTreeSet::new()),
        }
    }

    /// Prefix of the run-scoped staging topics.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Partitions of each staging topic (chunks are spread over them by chunk id).
    pub fn partitions(mut self, n: i32) -> Self {
        self.partitions = n.max(1);
        self
    }

    /// Replication factor of the topics the sink creates.
    pub fn replication(mut self, n: i32) -> Self {
        self.replication = n.max(1);
        self
    }

    /// The staging topic of a run.
    pub fn staging_topic(&self, run: &RunId) -> String {
        topics::staging(&self.prefix, run.as_str())
    }

    async fn ensure(&self, staging: &str) -> Result<()> {
        if self
            .ready
            .lock()
            .map(|s| s.contains(staging))
            .unwrap_or(false)
        {
            return Ok(());
        }
        ensure_topic(&self.config, staging, self.partitions, self.replication).await?;
        ensure_topic(
            &self.config,
            &topics::attempts(staging),
            1,
            self.replication,
        )
        .await?;
        if let Ok(mut s) = self.ready.lock() {
            s.insert(staging.to_owned());
        }
        Ok(())
    }

    async fn markers(&self, staging: &str) -> Result<Vec<Marker>> {
        read_to_end(&self.config, &topics::attempts(staging), 0)
            .await?
            .iter()
            .map(|r| {
                let v = r.value.as_deref().unwrap_or_default();
                serde_json::from_slice(v)
                    .map_err(|e| corrupt(format!("attempt marker at {}/{}", r.topic, r.offset), e))
            })
            .collect()
    }

    fn partition_of(&self, chunk: &str) -> i32 {
        let hash = backfill_core::ids::derive_id("staging-partition", &[chunk]);
        let n = u64::from_str_radix(&hash[..8], 16).unwrap_or(0);
        (n % self.partitions as u64) as i32
    }

    /// The latest completed attempt of every chunk of a run.
    async fn completed(&self, staging: &str) -> Result<BTreeMap<String, StagedRange>> {
        let mut done: BTreeMap<String, StagedRange> = BTreeMap::new();
        for m in self.markers(staging).await? {
            if let Marker::Staged(s) = m {
                if done.get(&s.chunk).is_none_or(|d| d.attempt <= s.attempt) {
                    done.insert(s.chunk.clone(), s);
                }
            }
        }
        Ok(done)
    }
}

#[async_trait]
impl<R: OutputRow> StagingSink<R> for KafkaStagingSink<R> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal(format!("{}*", self.prefix), "kafka_topic")
    }

    async fn stage(
        &self,
        req: StageRequest<'_>,
        mut rows: BoxStream<'_, Result<Vec<R>>>,
    ) -> Result<StageReceipt> {
        let staging = self.staging_topic(req.run_id);
        self.ensure(&staging).await?;
        let chunk = req.chunk_id.as_str();
        let mut producer =
            TxProducer::start(&self.config, &topics::chunk_txid(&staging, chunk)).await?;
        let current = self
            .markers(&staging)
            .await?
            .iter()
            .map(Marker::chunk_attempt)
            .filter(|(c, _)| *c == chunk)
            .map(|(_, a)| a)
            .max()
            .unwrap_or(0);
        if current > req.attempt {
            return Err(Error::Fenced {
                run_id: req.run_id.clone(),
                chunk_id: req.chunk_id.clone(),
                attempt: req.attempt,
                current,
            });
        }
        let attempts = topics::attempts(&staging);
        let claim = Marker::Claimed {
            chunk: chunk.to_owned(),
            attempt: req.attempt,
        };
        producer.begin()?;
        send_marker(&producer, &attempts, chunk, &claim).await?;
        producer.commit().await?;

        let partition = self.partition_of(chunk);
        let lineage = req.lineage;
        let run = lineage.run_id.as_str().as_bytes();
        let version = lineage.transform_version.as_bytes();
        let mode = lineage.mode.as_str().as_bytes();
        let snapshot = lineage.input_snapshot.as_deref().unwrap_or("").as_bytes();
        let attempt = req.attempt.to_string();
        producer.begin()?;
        let mut batches = 0u64;
        let result: Result<()> = async {
            while let Some(batch) = rows.next().await {
                let batch = batch?;
                batches += 1;
                for row in &batch {
                    let rec = self.codec.encode(row)?;
                    let part = row.partition();
                    // Lineage headers without an allocation per record: numbers are written into
                    // stack buffers, the list is a fixed array.
                    let (mut pb, mut ob, mut tb) = ([0u8; 20], [0u8; 20], [0u8; 20]);
                    let mut extra: [(&str, &[u8]); 11] = [
                        (h::RUN_ID, run),
                        (h::TRANSFORM_VERSION, version),
                        (h::PROCESSING_MODE, mode),
                        (h::INPUT_SNAPSHOT, snapshot),
                        (h::PARTITION, part.as_bytes()),
                        (h::CHUNK, chunk.as_bytes()),
                        (h::ATTEMPT, attempt.as_bytes()),
                        ("", b""),
                        ("", b""),
                        ("", b""),
                        ("", b""),
                    ];
                    let mut n = 7;
                    if let Some(s) = rec.source.as_deref() {
                        extra[n] = (h::SOURCE_TOPIC, s.topic.as_bytes());
                        extra[n + 1] = (h::SOURCE_PARTITION, int(&mut pb, s.partition.into()));
                        extra[n + 2] = (h::SOURCE_OFFSET, int(&mut ob, s.offset));
                        n += 3;
                    }
                    if let Some(p) = rec.partition {
                        extra[n] = (h::TARGET_PARTITION, int(&mut tb, p.into()));
                        n += 1;
                    }
                    let extra = &extra[..n];
                    producer
                        .send(SendRecord {
                            topic: &staging,
                            partition: Some(partition),
                            key: rec.key.as_deref(),
                            value: rec.value.as_deref(),
                            timestamp_ms: rec.timestamp_ms,
                            headers: &rec.headers,
                            extra,
                        })
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = producer.abort().await;
            return Err(e);
        }
        let (delivered, rows_staged) = match producer.flush().await {
            Ok(d) => d,
            Err(e) => {
                let _ = producer.abort().await;
                return Err(e);
            }
        };
        let (from, to_exclusive) = delivered
            .get(&partition)
            .map(|(a, b)| (*a, b + 1))
            .unwrap_or((0, 0));
        let staged = StagedRange {
            run_id: req.run_id.to_string(),
            chunk: chunk.to_owned(),
            attempt: req.attempt,
            topic: staging.clone(),
            partition,
            from,
            to_exclusive,
            rows: rows_staged,
        };
        send_marker(&producer, &attempts, chunk, &Marker::Staged(staged.clone())).await?;
        producer.commit().await?;
        Ok(StageReceipt {
            rows: rows_staged,
            batches,
            artifact: StagedArtifact::of(&staged)?,
        })
    }

    fn read_staged<'a>(&'a self, run_id: &'a RunId) -> BoxStream<'a, Result<Vec<R>>> {
        let staging = self.staging_topic(run_id);
        let codec = Arc::clone(&self.codec);
        let config = self.config.clone();
        stream::once(async move {
            let exists = crate::admin::partition_count(&config, &staging)
                .await?
                .is_some();
            if !exists {
                return Ok(stream::empty().boxed());
            }
            let done = self.completed(&staging).await?;
            let parts: Vec<BoxStream<'static, Result<Vec<KafkaRecord>>>> = done
                .values()
                .map(|s| read_staged_range(&config, s))
                .collect();
            Ok::<_, Error>(stream::iter(parts).flatten().boxed())
        })
        .try_flatten()
        .and_then(move |batch| {
            let rows: Result<Vec<R>> = batch.iter().map(|r| codec.decode(r)).collect();
            futures::future::ready(rows)
        })
        .boxed()
    }

    async fn discard(&self, run_id: &RunId) -> Result<()> {
        let staging = self.staging_topic(run_id);
        delete_topic(&self.config, &topics::attempts(&staging)).await?;
        delete_topic(&self.config, &staging).await?;
        if let Ok(mut s) = self.ready.lock() {
            s.remove(&staging);
        }
        Ok(())
    }
}

async fn send_marker(p: &TxProducer, topic: &str, chunk: &str, m: &Marker) -> Result<()> {
    let v = serde_json::to_vec(m).map_err(|e| corrupt("attempt marker", e))?;
    p.send(SendRecord {
        topic,
        partition: Some(0),
        key: Some(chunk.as_bytes()),
        value: Some(&v),
        timestamp_ms: None,
        headers: &[],
        extra: &[],
    })
    .await
}

/// `n` in decimal, written into `buf`: the bytes of a numeric header without an allocation.
fn int(buf: &mut [u8; 20], n: i64) -> &[u8] {
    use std::io::Write;
    let mut w: &mut [u8] = &mut buf[..];
    // 20 bytes hold every i64 ("-9223372036854775808" is 20 long), so the write cannot fail.
    let _ = write!(w, "{n}");
    let left = w.len();
    &buf[..20 - left]
}

#[cfg(test)]
mod tests {
    use super::int;

    #[test]
    fn numeric_headers_are_written_in_decimal() {
        for n in [0, 7, -1, 42_000, i64::MAX, i64::MIN] {
            let mut buf = [0u8; 20];
            assert_eq!(int(&mut buf, n), n.to_string().as_bytes());
        }
    }
}
