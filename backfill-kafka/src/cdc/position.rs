//! Where a change sits in its log, and the merge version derived from it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a message was read from a Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KafkaCoordinates {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

impl KafkaCoordinates {
    /// Coordinates of one message.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
        }
    }
}

impl fmt::Display for KafkaCoordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// The position of a change in the log it was captured from, ordered the way that log is.
///
/// Positions of one kind compare in log order: a PostgreSQL WAL position by LSN, a MySQL binlog
/// position by file sequence number, then offset in the file, then row within the event, a Kafka
/// position by topic, partition and offset. Positions of different kinds also compare (so they can
/// key a `BTreeMap` deterministically), but that order, `Lsn < Binlog < Kafka`, says nothing about
/// time: fold changes of one log only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourcePosition {
    /// A PostgreSQL write-ahead-log position (Debezium's `source.lsn`).
    Lsn {
        /// Log sequence number.
        lsn: u64,
    },
    /// A MySQL/MariaDB binlog position (Debezium's `source.file`, `source.pos`, `source.row`).
    Binlog {
        /// The numeric suffix of the binlog file name (`mysql-bin.000003` is 3).
        file_seq: u64,
        /// Binlog file name.
        file: String,
        /// Byte offset of the event in the file.
        pos: u64,
        /// Row within the event.
        row: u64,
    },
    /// A Kafka message position, for changes (such as tombstones) known only by where they were read.
    Kafka(KafkaCoordinates),
}

impl SourcePosition {
    /// A PostgreSQL position.
    pub fn lsn(lsn: u64) -> Self {
        Self::Lsn { lsn }
    }

    /// A binlog position; `None` when the file name does not end in its sequence number.
    pub fn binlog(file: &str, pos: u64, row: u64) -> Option<Self> {
        let digits = file.rsplit('.').next()?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self::Binlog {
            file_seq: digits.parse().ok()?,
            file: file.to_owned(),
            pos,
            row,
        })
    }

    /// A Kafka position.
    pub fn kafka(at: KafkaCoordinates) -> Self {
        Self::Kafka(at)
    }

    /// The merge version of this position: an `i64` that grows with the position within one log,
    /// so a change's version can guard a merge by version (a later change of a key never has a
    /// smaller version than an earlier one).
    ///
    /// - LSN: the LSN itself;
    /// - binlog: `file_seq << 32 | pos` (MySQL caps a binlog file at 1 GiB, so `pos` fits in 32
    ///   bits); rows of one event share a version;
    /// - Kafka: the offset (a key's changes share a partition, so its offsets grow).
    ///
    /// `None` when the position does not fit (an LSN or file sequence number too large).
    pub fn version(&self) -> Option<i64> {
        match self {
            Self::Lsn { lsn } => i64::try_from(*lsn).ok(),
            Self::Binlog { file_seq, pos, .. } => {
                if *file_seq >= 1 << 31 || *pos >= 1 << 32 {
                    return None;
                }
                i64::try_from(file_seq << 32 | pos).ok()
            }
            Self::Kafka(at) => Some(at.offset),
        }
    }

    /// Whether `self` and `other` are positions in the same kind of log (so their order is the
    /// log's order).
    pub fn same_kind(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lsn { lsn } => write!(f, "lsn {lsn}"),
            Self::Binlog { file, pos, row, .. } => write!(f, "binlog {file}:{pos}#{row}"),
            Self::Kafka(at) => write!(f, "kafka {at}"),
        }
    }
}

/// A range of positions: after `after` (exclusive) up to `up_to` (inclusive); an absent bound is open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRange {
    /// Changes at or before this position are outside the range.
    pub after: Option<SourcePosition>,
    /// Changes after this position are outside the range.
    pub up_to: Option<SourcePosition>,
}

impl PositionRange {
    /// Every position.
    pub fn all() -> Self {
        Self::default()
    }

    /// Positions after `after` and up to `up_to`.
    pub fn between(after: SourcePosition, up_to: SourcePosition) -> Self {
        Self {
            after: Some(after),
            up_to: Some(up_to),
        }
    }

    /// Positions up to `up_to`, inclusive.
    pub fn up_to(up_to: SourcePosition) -> Self {
        Self {
            after: None,
            up_to: Some(up_to),
        }
    }

    /// Whether `p` is in the range.
    pub fn contains(&self, p: &SourcePosition) -> bool {
        self.after.as_ref().is_none_or(|a| p > a) && self.up_to.as_ref().is_none_or(|u| p <= u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_positions_order_by_file_then_offset_and_versions_follow() {
        let a = SourcePosition::binlog("mysql-bin.000002", 9_000, 0).unwrap();
        let b = SourcePosition::binlog("mysql-bin.000003", 4, 0).unwrap();
        let c = SourcePosition::binlog("mysql-bin.000003", 4, 1).unwrap();
        assert!(a < b && b < c);
        assert!(a.version() < b.version() && b.version() == c.version());
        assert!(SourcePosition::binlog("mysql-bin", 4, 0).is_none());
    }

    #[test]
    fn an_lsn_too_large_has_no_version() {
        assert_eq!(SourcePosition::lsn(u64::MAX).version(), None);
        assert_eq!(SourcePosition::lsn(42).version(), Some(42));
    }
}
