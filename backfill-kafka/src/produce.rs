//! A transactional producer that knows which offsets its records got.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backfill_core::Result;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::{Header as WireHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::admin::blocking;
use crate::config::KafkaConfig;
use crate::error::client;
use crate::record::Header;

/// Offsets given to delivered records, per partition: `(first, last)`.
pub(crate) type Delivered = BTreeMap<i32, (i64, i64)>;

#[derive(Debug, Default)]
pub(crate) struct Tracker {
    state: Mutex<TrackerState>,
}

#[derive(Debug, Default)]
struct TrackerState {
    delivered: Delivered,
    count: u64,
    error: Option<String>,
}

impl ClientContext for Tracker {}

impl ProducerContext for Tracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let Ok(mut s) = self.state.lock() else { return };
        match result {
            Ok(m) => {
                let e = s
                    .delivered
                    .entry(m.partition())
                    .or_insert((m.offset(), m.offset()));
                e.0 = e.0.min(m.offset());
                e.1 = e.1.max(m.offset());
                s.count += 1;
            }
            Err((e, _)) => {
                if s.error.is_none() {
                    s.error = Some(e.to_string());
                }
            }
        }
    }
}

/// A record to send: borrowed parts plus headers.
pub(crate) struct SendRecord<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) headers: &'a [Header],
    pub(crate) extra: &'a [(&'a str, &'a [u8])],
}

/// One transactional producer (one `transactional.id`). Creating it fences every earlier producer
/// with the same id: their open transaction is aborted and their next call fails.
pub(crate) struct TxProducer {
    producer: Arc<ThreadedProducer<Tracker>>,
    timeout: Duration,
    txid: String,
    open: bool,
}

impl std::fmt::Debug for TxProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxProducer")
            .field("txid", &self.txid)
            .finish()
    }
}

impl TxProducer {
    /// Creates the producer and initializes its transactions (fencing earlier holders of `txid`).
    pub(crate) async fn start(config: &KafkaConfig, txid: &str) -> Result<Self> {
        let cfg = config.transactional_producer(txid);
        let timeout = config.call_timeout();
        let id = txid.to_owned();
        let producer = blocking(move || {
            let p: ThreadedProducer<Tracker> = cfg
                .create_with_context(Tracker::default())
                .map_err(|e| client(format!("creating producer {id}"), e))?;
            p.init_transactions(timeout)
                .map_err(|e| client(format!("initializing transactions of {id}"), e))?;
            Ok(p)
        })
        .await?;
        Ok(Self {
            producer: Arc::new(producer),
            timeout,
            txid: txid.to_owned(),
            open: false,
        })
    }

    pub(crate) fn begin(&mut self) -> Result<()> {
        self.producer
            .begin_transaction()
            .map_err(|e| client(format!("beginning a transaction of {}", self.txid), e))?;
        self.reset();
        self.open = true;
        Ok(())
    }

    fn reset(&self) {
        if let Ok(mut s) = self.producer.context().state.lock() {
            *s = TrackerState::default();
        }
    }

    /// Enqueues one record, waiting while the local queue is full.
    pub(crate) async fn send(&self, r: SendRecord<'_>) -> Result<()> {
        let mut hs = OwnedHeaders::new_with_capacity(r.headers.len() + r.extra.len());
        for h in r.headers {
            hs = hs.insert(WireHeader {
                key: &h.key,
                value: h.value.as_deref(),
            });
        }
        for (k, v) in r.extra {
            hs = hs.insert(WireHeader {
                key: k,
                value: Some(*v),
            });
        }
        let mut rec: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(r.topic).headers(hs);
        rec.partition = r.partition;
        rec.key = r.key;
        rec.payload = r.value;
        rec.timestamp = r.timestamp_ms;
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((ClientError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    return Err(client(
                        format!("producing to {} ({})", r.topic, self.txid),
                        e,
                    ))
                }
            }
        }
    }

    /// Waits until every enqueued record is delivered; returns the offsets they got.
    pub(crate) async fn flush(&self) -> Result<(Delivered, u64)> {
        let p = Arc::clone(&self.producer);
        let timeout = self.timeout;
        let id = self.txid.clone();
        blocking(move || {
            p.flush(timeout)
                .map_err(|e| client(format!("flushing {id}"), e))
        })
        .await?;
        let s = self
            .producer
            .context()
            .state
            .lock()
            .map_err(|_| crate::error::corrupt("delivery tracker", "poisoned"))?;
        if let Some(e) = &s.error {
            return Err(crate::error::corrupt(
                format!("delivery of {}", self.txid),
                e,
            ));
        }
        Ok((s.delivered.clone(), s.count))
    }

    pub(crate) async fn commit(&mut self) -> Result<()> {
        let p = Arc::clone(&self.producer);
        let timeout = self.timeout;
        let id = self.txid.clone();
        self.open = false;
        blocking(move || {
            p.commit_transaction(timeout)
                .map_err(|e| client(format!("committing {id}"), e))
        })
        .await
    }

    pub(crate) async fn abort(&mut self) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        let p = Arc::clone(&self.producer);
        let timeout = self.timeout;
        let id = self.txid.clone();
        blocking(move || {
            p.abort_transaction(timeout)
                .map_err(|e| client(format!("aborting {id}"), e))
        })
        .await
    }
}

impl Drop for TxProducer {
    /// A transaction left open (a dropped future, a panic) is aborted on a blocking thread, so
    /// read_committed readers are not held behind it until the transaction times out.
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let p = Arc::clone(&self.producer);
        let timeout = self.timeout;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            drop(rt.spawn_blocking(move || {
                let _ = p.abort_transaction(timeout);
            }));
        }
    }
}

/// Produces `(key, value)` records to `topic` with a plain (non-transactional) producer, partitioned
/// by key: for seeding topics in tests and examples, not for backfill output (use the staging sink).
pub async fn produce_plain(
    config: &KafkaConfig,
    topic: &str,
    records: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<()> {
    let p: ThreadedProducer<Tracker> = config
        .client()
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .create_with_context(Tracker::default())
        .map_err(|e| client("creating a producer", e))?;
    for (k, v) in records {
        let mut rec: BaseRecord<'_, [u8], [u8], ()> =
            BaseRecord::to(topic).key(k.as_bytes()).payload(&v);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((ClientError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(client(format!("producing to {topic}"), e)),
            }
        }
    }
    let timeout = config.call_timeout();
    let p = Arc::new(p);
    let q = Arc::clone(&p);
    blocking(move || q.flush(timeout).map_err(|e| client("flushing", e))).await?;
    let s = p
        .context()
        .state
        .lock()
        .map_err(|_| crate::error::corrupt("delivery tracker", "poisoned"))?;
    match &s.error {
        Some(e) => Err(crate::error::corrupt(format!("delivery to {topic}"), e)),
        None => Ok(()),
    }
}
