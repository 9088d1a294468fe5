//! The replay source: exact offset ranges, or a time window resolved to offsets at planning.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::manifest::{InputRange, OffsetRange, RunManifest};
use backfill_core::plan::{ChunkSpec, PlannedChunk, SourcePlan, SourceState};
use backfill_core::source::BackfillSource;
use backfill_core::Result;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::admin::{blocking, partition_count, watermarks};
use crate::config::KafkaConfig;
use crate::error::{client, manifest, KafkaError};
use crate::read::{read_ranges, DEFAULT_BATCH};
use crate::record::KafkaRecord;

type Decode<I> = Arc<dyn Fn(KafkaRecord) -> Result<I> + Send + Sync>;

/// What a chunk of a Kafka plan reads, persisted with the plan: the only truth after planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaChunkState {
    /// Cluster name, when the source knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Topic.
    pub topic: String,
    /// Isolation level the offsets were resolved and are read with.
    pub isolation: String,
    /// Exact ranges, read in this order.
    pub ranges: Vec<OffsetRange>,
}

/// A Kafka topic as a backfill source.
///
/// Planning reads the manifest's `source` section: `kind` `kafka`, `name` (or the seed's `topic`)
/// the topic, `cluster` checked against [`KafkaConfig::cluster`], and a range that is either exact
/// offsets per partition (the seed's `partitions: [{partition, fromOffset, toOffsetExclusive}]`)
/// or a `timestamps` window, which planning resolves with the broker's timestamp index into exact
/// offsets on every partition of the topic. The resolved offsets are persisted in each chunk's
/// [`KafkaChunkState`]; reads use them and nothing else.
///
/// Reads assign partitions manually and seek; no consumer group is joined, and no offset is ever
/// committed. They run read_committed: aborted transactions and transaction markers are never
/// returned, and a range ends at its `to_exclusive` offset whatever the records in it.
///
/// ```no_run
/// use backfill_kafka::{KafkaConfig, KafkaSource};
/// let source = KafkaSource::new(KafkaConfig::new("127.0.0.1:9092").cluster("prod-a"))
///     .chunk_offsets(100_000);
/// # let _ = source;
/// ```
pub struct KafkaSource<I = KafkaRecord> {
    config: KafkaConfig,
    chunk_offsets: i64,
    batch: usize,
    decode: Decode<I>,
}

impl<I> fmt::Debug for KafkaSource<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSource")
            .field("brokers", &self.config.brokers())
            .field("cluster", &self.config.cluster_name())
            .field("chunk_offsets", &self.chunk_offsets)
            .finish_non_exhaustive()
    }
}

impl KafkaSource<KafkaRecord> {
    /// A source yielding records as read ([`KafkaRecord`]), chunks of at most 250 000 offsets.
    pub fn new(config: KafkaConfig) -> Self {
        Self {
            config,
            chunk_offsets: 250_000,
            batch: DEFAULT_BATCH,
            decode: Arc::new(Ok),
        }
    }

    /// A source that decodes each record into `I` (a typed event, a CDC change); a decoding
    /// error fails the chunk and names the record's position.
    pub fn decoded<I>(
        self,
        decode: impl Fn(KafkaRecord) -> Result<I> + Send + Sync + 'static,
    ) -> KafkaSource<I> {
        KafkaSource {
            config: self.config,
            chunk_offsets: self.chunk_offsets,
            batch: self.batch,
            decode: Arc::new(decode),
        }
    }
}

impl<I> KafkaSource<I> {
    /// Splits each partition's range into chunks spanning at most `n` offsets (at least 1).
    pub fn chunk_offsets(mut self, n: i64) -> Self {
        self.chunk_offsets = n.max(1);
        self
    }

    /// Records per batch handed to the transform (default 4096).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// Resolves the manifest's range into exact offsets per partition, checked against what the
    /// topic retains and has committed.
    pub async fn resolve(&self, m: &RunManifest) -> Result<Vec<OffsetRange>> {
        let src = &m.source;
        if !src.kind.eq_ignore_ascii_case("kafka") {
            return Err(manifest(format!(
                "run {}: source.kind is `{}`, a Kafka source reads `kafka`",
                m.run_id, src.kind
            )));
        }
        if let (Some(want), Some(have)) = (src.cluster.as_deref(), self.config.cluster_name()) {
            if want != have {
                return Err(manifest(format!(
                    "run {}: source.cluster is `{want}` but this source reads cluster `{have}`",
                    m.run_id
                )));
            }
        }
        let topic = src.name.as_str();
        let count = partition_count(&self.config, topic)
            .await?
            .ok_or_else(|| manifest(format!("run {}: topic `{topic}` does not exist", m.run_id)))?;
        let Some(range) = &src.range else {
            return Err(manifest(format!(
                "run {}: source.range is missing",
                m.run_id
            )));
        };
        let ranges = match range {
            InputRange::Offsets { partitions } => {
                let mut seen = BTreeSet::new();
                for r in partitions {
                    if !seen.insert(r.partition) {
                        return Err(manifest(format!(
                            "run {}: source.range names partition {} twice",
                            m.run_id, r.partition
                        )));
                    }
                    if r.partition < 0 || r.partition as usize >= count {
                        return Err(KafkaError::UnknownPartition {
                            topic: topic.into(),
                            partition: r.partition,
                            count,
                        }
                        .into());
                    }
                    if r.from > r.to_exclusive || r.from < 0 {
                        return Err(manifest(format!(
                            "run {}: partition {}: range [{}, {}) is inverted or negative",
                            m.run_id, r.partition, r.from, r.to_exclusive
                        )));
                    }
                }
                partitions.clone()
            }
            InputRange::Timestamps { from, to_exclusive } => {
                let all: Vec<i32> = (0..count as i32).collect();
                let starts = self
                    .offsets_at(topic, &all, from.timestamp_millis())
                    .await?;
                let ends = self
                    .offsets_at(topic, &all, to_exclusive.timestamp_millis())
                    .await?;
                starts
                    .into_iter()
                    .zip(ends)
                    .map(|((p, a), (_, b))| OffsetRange {
                        partition: p,
                        from: a,
                        to_exclusive: b.max(a),
                    })
                    .collect()
            }
            other => {
                return Err(manifest(format!(
                    "run {}: a Kafka source reads offsets or a timestamps window, not {other}",
                    m.run_id
                )))
            }
        };
        let ps: Vec<i32> = ranges.iter().map(|r| r.partition).collect();
        for (p, low, end) in watermarks(&self.config, topic, &ps).await? {
            let Some(r) = ranges.iter().find(|r| r.partition == p) else {
                continue;
            };
            if r.from >= r.to_exclusive {
                continue;
            }
            if r.from < low {
                return Err(KafkaError::NotRetained {
                    topic: topic.into(),
                    partition: p,
                    from: r.from,
                    log_start: low,
                }
                .into());
            }
            if r.to_exclusive > end {
                return Err(KafkaError::PastEnd {
                    topic: topic.into(),
                    partition: p,
                    to_exclusive: r.to_exclusive,
                    end,
                    isolation: "read_committed",
                }
                .into());
            }
        }
        Ok(ranges)
    }

    /// The first offset at or after `ts_ms` on each partition; past the end of a partition, its
    /// current end (what a reader starting now would get first).
    async fn offsets_at(&self, topic: &str, ps: &[i32], ts_ms: i64) -> Result<Vec<(i32, i64)>> {
        let cfg = self.config.clone();
        let t = topic.to_owned();
        let ps = ps.to_vec();
        blocking(move || {
            let c: BaseConsumer = cfg
                .lookup()
                .create()
                .map_err(|e| client("creating a consumer", e))?;
            let mut tpl = TopicPartitionList::new();
            for p in &ps {
                tpl.add_partition_offset(&t, *p, Offset::Offset(ts_ms))
                    .map_err(|e| client(format!("timestamp lookup on {t}/{p}"), e))?;
            }
            let found = c
                .offsets_for_times(tpl, cfg.call_timeout())
                .map_err(|e| client(format!("timestamp lookup on {t}"), e))?;
            ps.iter()
                .map(|p| {
                    let offset = found
                        .find_partition(&t, *p)
                        .map(|e| e.offset())
                        .unwrap_or(Offset::End);
                    match offset {
                        Offset::Offset(o) => Ok((*p, o)),
                        _ => c
                            .fetch_watermarks(&t, *p, cfg.call_timeout())
                            .map(|(_, hi)| (*p, hi))
                            .map_err(|e| client(format!("watermarks of {t}/{p}"), e)),
                    }
                })
                .collect()
        })
        .await
    }
}

/// The resolved ranges as one snapshot name: `kafka:<topic>@<p>:<from>-<to>,...`.
pub fn snapshot_name(topic: &str, ranges: &[OffsetRange]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| format!("{}:{}-{}", r.partition, r.from, r.to_exclusive))
        .collect();
    format!("kafka:{topic}@{}", parts.join(","))
}

#[async_trait]
impl<I: Send + 'static> BackfillSource<I> for KafkaSource<I> {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn plan(&self, m: &RunManifest) -> Result<SourcePlan> {
        let ranges = self.resolve(m).await?;
        let topic = m.source.name.clone();
        let mut chunks = Vec::new();
        for r in &ranges {
            let mut at = r.from;
            while at < r.to_exclusive {
                let end = at.saturating_add(self.chunk_offsets).min(r.to_exclusive);
                let piece = OffsetRange {
                    partition: r.partition,
                    from: at,
                    to_exclusive: end,
                };
                let state = KafkaChunkState {
                    cluster: self.config.cluster_name().map(str::to_owned),
                    topic: topic.clone(),
                    isolation: "read_committed".into(),
                    ranges: vec![piece.clone()],
                };
                chunks.push(
                    ChunkSpec::new(
                        InputRange::Offsets {
                            partitions: vec![piece],
                        },
                        format!("{topic}/{}@{at}..{end}", r.partition),
                    )
                    // An upper bound: markers and compacted records take offsets too.
                    .with_estimate(u64::try_from(end - at).unwrap_or(0), None)
                    .with_state(SourceState::of(&state)?),
                );
                at = end;
            }
        }
        let snapshot = snapshot_name(&topic, &ranges);
        Ok(SourcePlan {
            snapshot: Some(snapshot),
            resolved_from: None,
            chunks,
        })
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, Result<Vec<I>>> {
        let state: KafkaChunkState = match chunk.state.parse() {
            Ok(s) => s,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let decode = Arc::clone(&self.decode);
        read_ranges(self.config.clone(), state.topic, state.ranges, self.batch)
            .and_then(move |batch| {
                let out: Result<Vec<I>> = batch.into_iter().map(|r| decode(r)).collect();
                futures::future::ready(out)
            })
            .boxed()
    }
}
