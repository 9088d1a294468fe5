//! Apache Iceberg for backfill: read a table at a pinned snapshot, stage a run's output as Parquet
//! data files nobody sees, and publish it as one snapshot: append, replace partitions, or
//! write-audit-publish through a branch; roll back by moving `main`.
//!
//! The embedded default needs no server: Iceberg's SQL catalog on a SQLite file beside a local
//! warehouse directory ([`IcebergCatalog::embedded`]); the same catalog runs on PostgreSQL. Tables
//! are standard Iceberg v2 tables that PyIceberg, Spark or Trino read.
//!
//! | part | what it does |
//! |---|---|
//! | [`IcebergSource`] | reads a snapshot pinned at planning (an id, or a ref resolved once), chunked by date range with predicate pushdown; the chunk's file list is its persisted state |
//! | [`IcebergStagingSink`] | writes each chunk's rows as Parquet data files (lineage columns filled), per-attempt file names, the file list as the ledger's artifact, fenced per attempt |
//! | [`IcebergPublisher`] | one snapshot per run, committed by a compare-and-swap of the catalog's metadata pointer; receipts in the table's metadata; rollback = `main` moved back |
//! | [`audit`] | rows and digests per partition of a snapshot, diffs between snapshots |
//!
//! iceberg 0.10 has no replace-partitions, branch writes or ref moves; this crate produces those
//! snapshots itself ([`SnapshotProducer`]) and commits them through its own pointer swap.

pub mod audit;
mod catalog;
mod commit;
mod error;
mod files;
mod lineage;
mod partition;
mod publish;
pub mod refs;
mod rows;
mod sink;
mod snapshot;
mod source;
mod staging;

pub use catalog::{CatalogBuilderOptions, IcebergCatalog, DEFAULT_CATALOG_NAME};
pub use commit::{Committed, TableChange};
pub use error::IcebergError;
pub use files::{StagedFile, StagedFiles};
pub use lineage::{lineage_fields, LINEAGE_COLUMNS};
pub use partition::{partition_label, UNPARTITIONED};
pub use publish::{IcebergPublisher, PublishFlow};
pub use rows::{ArrowRows, SerdeRows};
pub use sink::IcebergStagingSink;
pub use snapshot::{ManifestProducer, ProducedSnapshot, SnapshotProducer, SnapshotRequest};
pub use source::{IcebergChunkState, IcebergChunking, IcebergSource};

pub use iceberg;
