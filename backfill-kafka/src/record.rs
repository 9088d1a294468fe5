//! Records as read from a topic, and records to produce.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One header of a record; a header may have no value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value bytes, if any.
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record read from a partition, exactly as the broker holds it: key, value, headers, the
/// original timestamp and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KafkaRecord {
    /// Topic it was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record's own timestamp in milliseconds since the epoch (create or log-append time).
    pub timestamp_ms: Option<i64>,
    /// Key bytes (`None` for a record without key).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None` for a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in wire order.
    pub headers: Vec<Header>,
}

impl KafkaRecord {
    /// The first header with this name, as bytes.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_deref())
    }

    /// Whether this is a tombstone (a key with no value: a delete on a compacted topic).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Where the record was read, for lineage.
    pub fn position(&self) -> SourcePosition {
        SourcePosition {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// Where an input record was: topic, partition, offset. Carried into the output's lineage headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A record to produce: the row's key, value, headers and timestamp. The sink adds the lineage
/// headers.
///
/// It borrows from the row where it can (a replay copies nothing before the producer's own copy)
/// and owns what the codec computed (a JSON value).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingRecord<'a> {
    /// Key bytes.
    pub key: Option<Cow<'a, [u8]>>,
    /// Value bytes (`None` produces a tombstone).
    pub value: Option<Cow<'a, [u8]>>,
    /// The row's own headers (the sink appends its lineage headers after them).
    pub headers: Cow<'a, [Header]>,
    /// Timestamp to give the record; `None` lets the producer stamp it.
    pub timestamp_ms: Option<i64>,
    /// Kafka partition of the target topic; `None` partitions by key.
    pub partition: Option<i32>,
    /// The input record it was computed from, for the `source_topic/partition/offset` headers.
    pub source: Option<Cow<'a, SourcePosition>>,
}
