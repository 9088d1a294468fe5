#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod admin;
pub mod cdc;
pub mod codec;
mod config;
mod error;
mod outbox;
pub mod policy;
mod produce;
pub mod publish;
mod read;
mod record;
pub mod sink;
pub mod source;
mod topics;

pub use admin::{delete_topic, ensure_topic, partition_count, watermarks};
pub use codec::{JsonCodec, ReplayCodec, ReplayRecord, RowCodec};
pub use config::KafkaConfig;
pub use error::KafkaError;
pub use outbox::KafkaOutbox;
pub use policy::KafkaTopicPolicy;
pub use produce::produce_plain;
pub use publish::{KafkaTopicPublisher, LogEntry};
pub use record::{Header, KafkaRecord, OutgoingRecord, SourcePosition};
pub use sink::{KafkaStagingSink, StagedRange};
pub use source::{KafkaChunkState, KafkaSource};
