#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod attach;
mod bind;
mod copy;
mod dialect;
mod error;
mod files;
mod forgotten;
mod ident;
mod migrate;
mod pool;
mod publish;
mod row;
mod sink;
mod source;
mod store;
mod txconn;
mod validate;
mod windows;

pub use dialect::Dialect;
pub use files::{DuplicatePolicy, FileDecision, FileIdentity, FileLedger, FileRecord};
pub use forgotten::{SqlForgottenSubjects, FORGOTTEN_TABLE};
pub use ident::{Ident, QualifiedName};
pub use migrate::{migrate, SCHEMA_VERSION};
pub use pool::{ConnectOptions, SqlPool};
pub use publish::{SqlOutbox, SqlPublisher, LIVE_VERSION};
pub use row::{Column, RowSchema, SqlRow, SqlType};
pub use sink::{SqlArtifact, SqlSink};
pub use source::{Grouped, SnapshotFn, SqlChunkState, SqlSource, SqlSourceBuilder};
pub use store::SqlStore;
pub use txconn::TxConn;
pub use validate::SqlCheck;
pub use windows::SqlWindows;
