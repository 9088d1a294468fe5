//! Exact range reads: manual assignment and seek, read_committed, stop at `to_exclusive`.
//!
//! A range `[from, to)` is read by one assign-only consumer on a blocking thread, which hands
//! batches to the async side through a bounded channel (memory stays bounded by
//! `batch × channel depth`). Completion is decided by position, never by counting records:
//! transaction markers, aborted records and compacted-away records take offsets, so a range can
//! hold fewer records than `to - from`. The read is complete when a record at or past `to`
//! arrives, or when the consumer reaches the partition's end (its last stable offset under
//! read_committed) and that end is at or past `to`.

use std::time::{Duration, Instant};

use backfill_core::manifest::OffsetRange;
use backfill_core::Result;
use futures::stream::{self, BoxStream, StreamExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::config::KafkaConfig;
use crate::error::{client, KafkaError};
use crate::record::{Header, KafkaRecord};

/// Records handed over at a time.
pub(crate) const DEFAULT_BATCH: usize = 4096;
/// Offsets fetched before a range's start (and dropped), see `read_one`.
const FETCH_LOOKBACK: i64 = 1;
/// Batches in flight between the reading thread and the stream's consumer.
const CHANNEL_DEPTH: usize = 4;

/// Reads the ranges of `topic` in order, as a stream of non-empty batches.
pub(crate) fn read_ranges(
    config: KafkaConfig,
    topic: String,
    ranges: Vec<OffsetRange>,
    batch: usize,
) -> BoxStream<'static, Result<Vec<KafkaRecord>>> {
    let (tx, rx) = mpsc::channel::<Result<Vec<KafkaRecord>>>(CHANNEL_DEPTH);
    let handle = tokio::task::spawn_blocking(move || {
        let out = |r| tx.blocking_send(r).is_ok();
        let mut consumer = None;
        if let Err(e) = read_blocking(&config, &topic, &ranges, batch.max(1), &out, &mut consumer) {
            let _ = tx.blocking_send(Err(e));
        }
        // End the stream first: closing a consumer waits for its group coordinator, and the
        // reader need not wait for that.
        drop(tx);
        drop(consumer);
    });
    drop(handle);
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }).boxed()
}

/// Reads every range, calling `out` with each full batch; stops early when `out` says the
/// receiver is gone.
fn read_blocking(
    config: &KafkaConfig,
    topic: &str,
    ranges: &[OffsetRange],
    batch: usize,
    out: &dyn Fn(Result<Vec<KafkaRecord>>) -> bool,
    keep: &mut Option<BaseConsumer>,
) -> Result<()> {
    let todo: Vec<&OffsetRange> = ranges.iter().filter(|r| r.from < r.to_exclusive).collect();
    if todo.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer = config
        .consumer()
        .create()
        .map_err(|e| client(format!("creating a consumer for {topic}"), e))?;
    let consumer = keep.insert(consumer);
    for r in todo {
        if !read_one(config, consumer, topic, r, batch, out)? {
            return Ok(());
        }
    }
    Ok(())
}

fn read_one(
    config: &KafkaConfig,
    consumer: &BaseConsumer,
    topic: &str,
    r: &OffsetRange,
    batch: usize,
    out: &dyn Fn(Result<Vec<KafkaRecord>>) -> bool,
) -> Result<bool> {
    let p = r.partition;
    // Fetching starts one offset early (records before `from` are dropped below): some brokers
    // return nothing for a read_committed fetch that starts exactly at the first batch after an
    // aborted transaction (noida-db 0.2.3 does), and one offset of overlap costs nothing.
    let mut start = (r.from - FETCH_LOOKBACK).max(0);
    assign(consumer, topic, p, start)?;
    let mut buf = Vec::with_capacity(batch.min(r.span()));
    let mut idle_since = Instant::now();
    let wait = config.call_timeout();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if idle_since.elapsed() > wait {
                    return Err(stalled(config, consumer, topic, r));
                }
            }
            Some(Ok(m)) => {
                idle_since = Instant::now();
                if m.partition() != p || m.topic() != topic {
                    continue;
                }
                let offset = m.offset();
                if offset >= r.to_exclusive {
                    break;
                }
                if offset >= r.from {
                    buf.push(to_record(&m));
                }
                if buf.len() >= batch
                    && !out(Ok(std::mem::replace(&mut buf, Vec::with_capacity(batch))))
                {
                    return Ok(false);
                }
                if offset + 1 >= r.to_exclusive {
                    break;
                }
            }
            Some(Err(ClientError::PartitionEOF(eof))) => {
                if eof != p {
                    continue;
                }
                // Everything below the partition's end (LSO under read_committed) was delivered,
                // and the consumer's position says how far it got: past `to` (only markers or
                // aborted records were left), the range is complete. A position short of `to` at
                // the end means the broker skipped records: an error, never a shorter read.
                let (_, end) = consumer
                    .fetch_watermarks(topic, p, config.call_timeout())
                    .map_err(|e| client(format!("watermarks of {topic}/{p}"), e))?;
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|l| l.find_partition(topic, p).map(|e| e.offset()));
                let at = match position {
                    Some(Offset::Offset(o)) => o,
                    _ => r.from,
                };
                if end >= r.to_exclusive && at >= r.to_exclusive {
                    break;
                }
                if end >= r.to_exclusive {
                    return Err(KafkaError::Skipped {
                        topic: topic.to_owned(),
                        partition: p,
                        position: at,
                        to_exclusive: r.to_exclusive,
                    }
                    .into());
                }
                if idle_since.elapsed() > wait {
                    return Err(stalled(config, consumer, topic, r));
                }
            }
            Some(Err(ClientError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)))
                if start < r.from =>
            {
                // The early offset is not retained; start at `from` itself.
                start = r.from;
                assign(consumer, topic, p, start)?;
            }
            Some(Err(ClientError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                // The range start is no longer retained (retention or compaction moved the log
                // start after planning): refuse rather than read less.
                let (low, _) = consumer
                    .fetch_watermarks(topic, p, config.call_timeout())
                    .map_err(|e| client(format!("watermarks of {topic}/{p}"), e))?;
                return Err(KafkaError::NotRetained {
                    topic: topic.to_owned(),
                    partition: p,
                    from: r.from,
                    log_start: low,
                }
                .into());
            }
            Some(Err(e)) => return Err(client(format!("reading {topic}/{p}"), e)),
        }
    }
    consumer
        .unassign()
        .map_err(|e| client(format!("unassigning {topic}/{p}"), e))?;
    if !buf.is_empty() && !out(Ok(buf)) {
        return Ok(false);
    }
    Ok(true)
}

fn assign(consumer: &BaseConsumer, topic: &str, p: i32, at: i64) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Offset(at))
        .map_err(|e| client(format!("assigning {topic}/{p}"), e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| client(format!("assigning {topic}/{p}"), e))
}

/// The error for a read that made no progress: the range ends past what is committed.
fn stalled(
    config: &KafkaConfig,
    consumer: &BaseConsumer,
    topic: &str,
    r: &OffsetRange,
) -> backfill_core::Error {
    match consumer.fetch_watermarks(topic, r.partition, config.call_timeout()) {
        Ok((_, end)) => KafkaError::PastEnd {
            topic: topic.to_owned(),
            partition: r.partition,
            to_exclusive: r.to_exclusive,
            end,
            isolation: "read_committed",
        }
        .into(),
        Err(e) => client(format!("reading {topic}/{}: no progress", r.partition), e),
    }
}

/// Copies a borrowed message into an owned record.
pub(crate) fn to_record<M: Message>(m: &M) -> KafkaRecord {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    KafkaRecord {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// Span helpers on offset ranges.
pub(crate) trait Span {
    /// Offsets covered, as a capacity hint.
    fn span(&self) -> usize;
}

impl Span for OffsetRange {
    fn span(&self) -> usize {
        usize::try_from(self.to_exclusive.saturating_sub(self.from)).unwrap_or(0)
    }
}

/// Reads a whole partition up to its current end (read_committed), for small control topics.
pub(crate) async fn read_to_end(
    config: &KafkaConfig,
    topic: &str,
    partition: i32,
) -> Result<Vec<KafkaRecord>> {
    let cfg = config.clone();
    let t = topic.to_owned();
    let (low, high) = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = cfg
            .lookup()
            .create()
            .map_err(|e| client(format!("creating a consumer for {t}"), e))?;
        c.fetch_watermarks(&t, partition, cfg.call_timeout())
            .map_err(|e| client(format!("watermarks of {t}/{partition}"), e))
    })
    .await
    .map_err(|e| backfill_core::Error::adapter(crate::error::ADAPTER, e))??;
    let range = OffsetRange {
        partition,
        from: low,
        to_exclusive: high,
    };
    let mut s = read_ranges(config.clone(), topic.to_owned(), vec![range], DEFAULT_BATCH);
    let mut all = Vec::new();
    while let Some(b) = s.next().await {
        all.extend(b?);
    }
    Ok(all)
}
