//! Conformance suites for backfill adapters.
//!
//! Every adapter in this workspace proves the `# Contract` clauses of backfill-core's traits with the
//! same checks, and so can yours: one `async fn` per clause returning a typed
//! [`ConformanceFailure`], a suite runner over a harness that gives each check a fresh, uniquely named
//! namespace (kept when the check fails, for inspection), and macros that expand to one `#[tokio::test]`
//! per check in your crate.
//!
//! ```no_run
//! use std::sync::Arc;
//! use backfill_core::memory::MemoryStore;
//! use backfill_core::store::RunStore;
//! use backfill_testkit::StoreHarness;
//!
//! struct Memory;
//! #[async_trait::async_trait]
//! impl StoreHarness for Memory {
//!     async fn build(&self, _namespace: &str) -> backfill_core::Result<Arc<dyn RunStore>> {
//!         Ok(Arc::new(MemoryStore::new()))
//!     }
//!     async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> { Ok(()) }
//! }
//!
//! // In tests/conformance.rs: one #[tokio::test] per store check, named after it.
//! backfill_testkit::store_conformance!(memory_store, || Memory);
//! ```
//!
//! Stability: checks may be added in minor releases; the testkit is versioned together with
//! backfill-core. The determinism, fault-injection and strategy harnesses are not here yet.

mod conformance;
mod macros;
pub mod publisher;
pub mod sink;
pub mod store;

pub use conformance::{
    namespace_for, CheckResult, ConformanceFailure, PublisherHarness, SinkHarness, StoreHarness,
    TestRow,
};

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}
