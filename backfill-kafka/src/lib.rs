//! Kafka for backfill.
//!
//! - [`cdc`]: Debezium-style change envelopes decoded into typed change records, with delete and
//!   snapshot-read semantics kept, and the folds a CDC backfill needs (replay a CDC range;
//!   snapshot + CDC range for point-in-time reconstruction).

pub mod cdc;
