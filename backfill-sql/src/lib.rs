#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod dialect;
mod error;
mod ident;
mod migrate;
mod pool;
mod store;

pub use dialect::Dialect;
pub use ident::Ident;
pub use migrate::{migrate, SCHEMA_VERSION};
pub use pool::{ConnectOptions, SqlPool};
pub use store::SqlStore;
