#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

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
/// The OpenDAL storage factories (feature `opendal`).
#[cfg(feature = "opendal")]
pub use iceberg_storage_opendal;
