//! The adapter's own errors, sorted into backfill-core's kinds.

use backfill_core::Error as CoreError;
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};

pub(crate) const ADAPTER: &str = "kafka";

/// What went wrong in backfill-kafka. Every variant names the topic and partition it is about;
/// they reach callers inside [`backfill_core::Error::Adapter`] or [`backfill_core::Error::Transient`]
/// (downcast the source to this type to match on them).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The Kafka client reported an error.
    #[error("{context}: {source}")]
    Client {
        /// What the adapter was doing.
        context: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// The range starts before the partition's log start offset: the topic no longer retains it.
    #[error(
        "topic {topic} partition {partition}: the range starts at offset {from}, but the topic \
         retains only offsets from {log_start} (deleted by retention or compaction of the log start); \
         refusing to read less than the manifest names"
    )]
    NotRetained {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// First offset the manifest asks for.
        from: i64,
        /// The partition's log start offset.
        log_start: i64,
    },
    /// The range ends past what the partition holds (for read_committed: its last stable offset).
    #[error(
        "topic {topic} partition {partition}: the range ends at offset {to_exclusive}, past the \
         partition's end {end} ({isolation})"
    )]
    PastEnd {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The range's end.
        to_exclusive: i64,
        /// High watermark, or last stable offset under read_committed.
        end: i64,
        /// Isolation level the end was read with.
        isolation: &'static str,
    },
    /// The consumer reached the partition's end short of the range's end: the broker skipped
    /// records (seen on test brokers that mishandle fetches inside transactional batches).
    #[error(
        "topic {topic} partition {partition}: the read reached the partition's end at position \
         {position}, short of the range's end {to_exclusive}; refusing to read less"
    )]
    Skipped {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Where the consumer stood.
        position: i64,
        /// The range's end.
        to_exclusive: i64,
    },
    /// The topic has no such partition.
    #[error("topic {topic} has no partition {partition} (it has {count})")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// Partitions the topic has.
        count: usize,
    },
    /// The manifest is not one this source or sink can serve.
    #[error("{0}")]
    Manifest(String),
    /// Something the adapter stored (a marker, a publication record, an artifact) is unreadable.
    #[error("{what} is corrupt: {detail}")]
    Corrupt {
        /// What was read.
        what: String,
        /// Why it could not be read.
        detail: String,
    },
    /// A record could not be turned into a row (or back).
    #[error("topic {topic} partition {partition} offset {offset}: {detail}")]
    Record {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// What is wrong with it.
        detail: String,
    },
}

/// Client errors worth retrying: lost brokers, timeouts, leadership changes, a transaction
/// coordinator that is loading or moving.
fn is_transient(e: &ClientError) -> bool {
    use RDKafkaErrorCode as C;
    let code = match e {
        ClientError::MessageProduction(c)
        | ClientError::MessageConsumption(c)
        | ClientError::MetadataFetch(c)
        | ClientError::OffsetFetch(c)
        | ClientError::Flush(c)
        | ClientError::Global(c) => *c,
        ClientError::Transaction(t) => return t.is_retriable(),
        _ => return false,
    };
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::MessageTimedOut
            | C::RequestTimedOut
            | C::OperationTimedOut
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::TimedOutQueue
            | C::Resolve
            | C::ConcurrentTransactions
    )
}

impl From<KafkaError> for CoreError {
    fn from(e: KafkaError) -> Self {
        match &e {
            KafkaError::Client { source, .. } if is_transient(source) => {
                Self::transient(ADAPTER, e)
            }
            _ => Self::adapter(ADAPTER, e),
        }
    }
}

/// A client error with what the adapter was doing, as a core error.
pub(crate) fn client(context: impl Into<String>, source: ClientError) -> CoreError {
    KafkaError::Client {
        context: context.into(),
        source,
    }
    .into()
}

pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> CoreError {
    KafkaError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
    .into()
}

pub(crate) fn manifest(detail: impl Into<String>) -> CoreError {
    KafkaError::Manifest(detail.into()).into()
}
