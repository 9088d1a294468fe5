//! Kafka for backfill.
