#![doc = include_str!("../README.md")]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod conformance;
pub mod determinism;
pub mod faults;
#[cfg(feature = "http")]
pub mod http;
pub mod idempotency;
mod macros;
pub mod outbox;
pub mod partial_failure;
pub mod publisher;
pub mod reconcile;
pub mod services;
pub mod side_effects;
pub mod sink;
pub mod source;
pub mod store;
pub mod strategy;
pub mod warm_up;

pub use conformance::{
    namespace_for, publisher_of, reader_of, CheckResult, ConformanceFailure, Paired, PublishTarget,
    PublisherHarness, SinkHarness, StoreHarness, TestRow,
};
pub use source::{SourceFixture, SourceHarness};

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}
