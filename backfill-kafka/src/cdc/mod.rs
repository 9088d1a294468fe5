//! Change data capture: Debezium-style change envelopes decoded into typed change records, and the
//! folds a CDC backfill needs.
//!
//! A change stream has operation semantics that a backfill must keep:
//!
//! - `c` create, `u` update: the row's new state;
//! - `d` delete, and a Kafka tombstone (a key with a null value): the key was deleted. A delete is
//!   a fact to apply, not a row that happens to be missing;
//! - `r` snapshot read: the row's state as observed when the connector took its snapshot. It is
//!   not a create: the row may have existed long before.
//!
//! Backfill options this module supports:
//!
//! - **replay a CDC range** ([`replay`]): every key's final state over a range of positions, with
//!   deleted keys kept as [deletes](KeyState::is_deleted);
//! - **snapshot + CDC range** ([`reconstruct`]): the state of every key at a target position, from
//!   the rows a [`Snapshot`] observed and the changes after it (point-in-time reconstruction).
//!
//! Either result becomes output rows through [`ChangeRow`], which carries a `deleted` flag and a
//! merge `version`, for a merge by key guarded by a version column with a delete column
//! (`Mutation::MergeByKey { delete_column: Some(..), .. }`; backfill-sql applies it).
//!
//! ```
//! use backfill_kafka::cdc::{replay, ChangeDecoder, ChangeOp, KafkaCoordinates, PositionRange};
//!
//! #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
//! struct Customer { id: i64, name: String }
//!
//! let mut decoder = ChangeDecoder::new();
//! let at = |offset| KafkaCoordinates::new("pg.public.customers", 0, offset);
//! let create = br#"{"op":"c","before":null,"after":{"id":1,"name":"Ada"},
//!     "source":{"connector":"postgresql","db":"shop","schema":"public","table":"customers","lsn":100},
//!     "ts_ms":1700000000000}"#;
//! let delete = br#"{"op":"d","before":{"id":1,"name":"Ada"},"after":null,
//!     "source":{"connector":"postgresql","db":"shop","schema":"public","table":"customers","lsn":200},
//!     "ts_ms":1700000001000}"#;
//! let changes = vec![
//!     decoder.decode::<Customer>(Some(br#"{"id":1}"#), Some(create), Some(&at(0))).unwrap(),
//!     decoder.decode::<Customer>(Some(br#"{"id":1}"#), Some(delete), Some(&at(1))).unwrap(),
//!     // The tombstone Debezium writes after a delete, for compaction: the same fact again.
//!     decoder.decode::<Customer>(Some(br#"{"id":1}"#), None, Some(&at(2))).unwrap(),
//! ];
//! assert_eq!(changes[2].op, ChangeOp::Delete);
//! let states = replay(changes, &PositionRange::all());
//! assert!(states[0].is_deleted());
//! assert_eq!(states[0].version, 200);
//! ```

mod decode;
mod fold;
mod position;
mod record;
mod row;

pub use decode::{ChangeDecoder, DecodeError, PositionBasis};
pub use fold::{reconstruct, replay, KeyState, Snapshot};
pub use position::{KafkaCoordinates, PositionRange, SourcePosition};
pub use record::{ChangeKey, ChangeOp, ChangeRecord, SourceInfo};
pub use row::ChangeRow;
