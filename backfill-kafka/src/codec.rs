//! Output rows as Kafka records, and back.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use backfill_core::digest::OutputRow;
use backfill_core::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::KafkaError;
use crate::record::{Header, KafkaRecord, OutgoingRecord, SourcePosition};

/// Lineage headers the sink adds to every staged and published record.
pub mod headers {
    /// The run that produced the record.
    pub const RUN_ID: &str = "backfill_run_id";
    /// The transform version that computed it.
    pub const TRANSFORM_VERSION: &str = "transform_version";
    /// `BACKFILL`, `REPLAY`, ...
    pub const PROCESSING_MODE: &str = "processing_mode";
    /// The input snapshot the run read (the resolved offsets).
    pub const INPUT_SNAPSHOT: &str = "input_snapshot";
    /// Topic of the input record.
    pub const SOURCE_TOPIC: &str = "source_topic";
    /// Partition of the input record.
    pub const SOURCE_PARTITION: &str = "source_partition";
    /// Offset of the input record.
    pub const SOURCE_OFFSET: &str = "source_offset";
    /// The publish partition of the row (`OutputRow::partition`).
    pub const PARTITION: &str = "backfill_partition";
    /// The chunk that staged the record (staging topics only).
    pub const CHUNK: &str = "backfill_chunk";
    /// The attempt that staged the record (staging topics only).
    pub const ATTEMPT: &str = "backfill_attempt";
    /// The Kafka partition of the target topic the row asked for (staging topics only).
    pub const TARGET_PARTITION: &str = "backfill_target_partition";

    /// Every header name the adapter writes.
    pub const ALL: &[&str] = &[
        RUN_ID,
        TRANSFORM_VERSION,
        PROCESSING_MODE,
        INPUT_SNAPSHOT,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        PARTITION,
        CHUNK,
        ATTEMPT,
        TARGET_PARTITION,
    ];

    /// Whether a header is one the adapter writes.
    pub fn is_lineage(name: &str) -> bool {
        ALL.contains(&name)
    }
}

/// Turns output rows into records to produce and records read back into rows.
///
/// # Contract
/// 1. `decode(encode(row))` is the row again, for every row (read-back and validation rely on it);
///    `decode` ignores the adapter's own headers ([`headers::ALL`]).
/// 2. `encode` is deterministic: the same row gives the same key, value, headers and partition.
/// 3. A row that cannot be encoded, or a record that cannot be decoded, is an error naming it.
pub trait RowCodec<R>: fmt::Debug + Send + Sync + 'static {
    /// The record to produce for `row`.
    fn encode<'a>(&self, row: &'a R) -> Result<OutgoingRecord<'a>>;
    /// The row a record read back stands for.
    fn decode(&self, record: &KafkaRecord) -> Result<R>;
}

impl<R, C: RowCodec<R> + ?Sized> RowCodec<R> for Arc<C> {
    fn encode<'a>(&self, row: &'a R) -> Result<OutgoingRecord<'a>> {
        (**self).encode(row)
    }
    fn decode(&self, record: &KafkaRecord) -> Result<R> {
        (**self).decode(record)
    }
}

fn bad(record: &KafkaRecord, detail: impl fmt::Display) -> backfill_core::Error {
    KafkaError::Record {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        detail: detail.to_string(),
    }
    .into()
}

/// A replayed record: the input's key, value, headers and timestamp, as an output row. The
/// identity of replays (a transform that copies records, or one that rewrites only some of them).
///
/// Its publish partition is the source partition (`"0"`, `"1"`, ...) and it is produced to the
/// same partition number of the target topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplayRecord {
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// The record's own headers (lineage headers excluded).
    pub headers: Vec<Header>,
    /// The original timestamp.
    pub timestamp_ms: Option<i64>,
    /// Where the input record was.
    pub source: SourcePosition,
}

impl ReplayRecord {
    /// The record as read, unchanged.
    pub fn of(r: &KafkaRecord) -> Self {
        Self {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp_ms: r.timestamp_ms,
            source: r.position(),
        }
    }
}

impl OutputRow for ReplayRecord {
    fn partition(&self) -> Cow<'_, str> {
        // The common partition numbers without an allocation per record.
        const SMALL: [&str; 16] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
        ];
        match usize::try_from(self.source.partition)
            .ok()
            .and_then(|i| SMALL.get(i))
        {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(self.source.partition.to_string()),
        }
    }
}

/// The codec of [`ReplayRecord`]: key, value, headers and timestamp as they were; the source
/// position travels in the lineage headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayCodec;

impl RowCodec<ReplayRecord> for ReplayCodec {
    fn encode<'a>(&self, row: &'a ReplayRecord) -> Result<OutgoingRecord<'a>> {
        Ok(OutgoingRecord {
            key: row.key.as_deref().map(Cow::Borrowed),
            value: row.value.as_deref().map(Cow::Borrowed),
            headers: Cow::Borrowed(&row.headers),
            timestamp_ms: row.timestamp_ms,
            partition: Some(row.source.partition),
            source: Some(Cow::Borrowed(&row.source)),
        })
    }

    fn decode(&self, r: &KafkaRecord) -> Result<ReplayRecord> {
        let text = |name: &str| -> Result<String> {
            let v = r
                .header(name)
                .ok_or_else(|| bad(r, format!("header {name} is missing")))?;
            String::from_utf8(v.to_vec()).map_err(|e| bad(r, format!("header {name}: {e}")))
        };
        let num = |name: &str| -> Result<i64> {
            text(name)?
                .parse()
                .map_err(|e| bad(r, format!("header {name}: {e}")))
        };
        let partition = i32::try_from(num(headers::SOURCE_PARTITION)?)
            .map_err(|e| bad(r, format!("header {}: {e}", headers::SOURCE_PARTITION)))?;
        Ok(ReplayRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .filter(|h| !headers::is_lineage(&h.key))
                .cloned()
                .collect(),
            timestamp_ms: r.timestamp_ms,
            source: SourcePosition {
                topic: text(headers::SOURCE_TOPIC)?,
                partition,
                offset: num(headers::SOURCE_OFFSET)?,
            },
        })
    }
}

type KeyFn<R> = Arc<dyn Fn(&R) -> Vec<u8> + Send + Sync>;

/// Rows as JSON values, keyed by a function of the row; partitioned by key on the target.
pub struct JsonCodec<R> {
    key: KeyFn<R>,
    _row: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for JsonCodec<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonCodec")
    }
}

impl<R> JsonCodec<R> {
    /// A codec with the record key `key(row)`.
    pub fn new(key: impl Fn(&R) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Self {
            key: Arc::new(key),
            _row: PhantomData,
        }
    }
}

impl<R: Serialize + DeserializeOwned + OutputRow> RowCodec<R> for JsonCodec<R> {
    fn encode<'a>(&self, row: &'a R) -> Result<OutgoingRecord<'a>> {
        let value = serde_json::to_vec(row)
            .map_err(|e| backfill_core::Error::adapter(crate::error::ADAPTER, e))?;
        Ok(OutgoingRecord {
            key: Some(Cow::Owned((self.key)(row))),
            value: Some(Cow::Owned(value)),
            ..OutgoingRecord::default()
        })
    }

    fn decode(&self, r: &KafkaRecord) -> Result<R> {
        let v = r
            .value
            .as_deref()
            .ok_or_else(|| bad(r, "a JSON row cannot be a tombstone"))?;
        serde_json::from_slice(v).map_err(|e| bad(r, e))
    }
}
