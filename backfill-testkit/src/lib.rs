//! Test kit for backfill transforms and adapters.
//!
//! # Test your transform in ten lines
//!
//! Your transform turns input records into output rows. Give the determinism harness a proptest
//! strategy for lists of inputs and a fixed context: it runs the transform again, over re-chunked and
//! reordered input, under a moving clock, and checks the fingerprint; a failure names the property and
//! the smallest input list that shows it.
//!
//! ```
//! # use std::borrow::Cow;
//! # use backfill_core::prelude::*;
//! # use backfill_testkit::strategy::Keyed;
//! # #[derive(Debug, Clone, serde::Serialize)]
//! # struct Cents { id: String, month: String, cents: i64 }
//! # impl OutputRow for Cents { fn partition(&self) -> Cow<'_, str> { Cow::Borrowed(&self.month) } }
//! # /// Your transform: amounts in cents, per account and day.
//! # #[derive(Debug)]
//! # struct ToCents;
//! # impl DeterministicTransform for ToCents {
//! #     type Input = Keyed<i64>;
//! #     type Output = Cents;
//! #     fn name(&self) -> &str { "to_cents" }
//! #     fn version(&self) -> &str { "1.0.0" }
//! #     fn apply(&self, r: &Keyed<i64>, ctx: &TransformContext, out: &mut Vec<Cents>) -> Result<(), TransformError> {
//! #         out.push(Cents { id: ctx.output_id(&[&r.key, &r.day.to_string()]), month: r.month(), cents: r.value * 100 });
//! #         Ok(())
//! #     }
//! # }
//! use backfill_testkit::{determinism, strategy};
//! use proptest::prelude::*;
//!
//! let at = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
//! let ctx = TransformContext::fixed("bf-test-001", ExecutionMode::Backfill, at);
//! // Lists of up to 40 records: 5 accounts, 90 days from 1 January 2025, amounts below 10 000.
//! let q1 = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
//! let inputs = strategy::keyed(5, q1, 90, 0i64..10_000, 0..40);
//! determinism::check_transform(&ToCents, inputs, &ctx, ProptestConfig::with_cases(32))
//!     .unwrap_or_else(|failure| panic!("{failure}"));
//! ```
//!
//! Then, as your transform grows:
//!
//! - [`determinism::check_transform_fresh`] when it keeps state across records (running totals);
//! - [`warm_up::check_warm_up`] when the manifest reads warm-up input before its publish range;
//! - [`reconcile::Golden`] to compare a run's output with hand-checked per-partition counts and sums;
//! - [`partial_failure::Scenario`] to run it through backfill-core's runner with injected faults
//!   ([`faults`]) and check that retry and resume end where an uninterrupted run ends;
//! - [`side_effects::check_side_effect_guard`] to prove your sink policy keeps side-effecting sinks out
//!   of backfills;
//! - [`strategy`] for manifests, input ranges and records.
//!
//! # Conformance suites for adapters
//!
//! Every adapter in this workspace proves the `# Contract` clauses of backfill-core's traits with the
//! same checks, and so can yours: one `async fn` per clause returning a typed
//! [`ConformanceFailure`], a suite runner over a harness that gives each check a fresh, uniquely named
//! namespace (kept when the check fails, for inspection), and macros that expand to one `#[tokio::test]`
//! per check in your crate. [`idempotency::check_idempotent_staging`] checks staging with your own row
//! type.
//!
//! ```no_run
//! # #![allow(dead_code)] // the macro's tests are not compiled in a doctest
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
//! backfill-core.

#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod conformance;
pub mod determinism;
pub mod faults;
pub mod idempotency;
mod macros;
pub mod partial_failure;
pub mod publisher;
pub mod reconcile;
pub mod side_effects;
pub mod sink;
pub mod store;
pub mod strategy;
pub mod warm_up;

pub use conformance::{
    namespace_for, CheckResult, ConformanceFailure, PublisherHarness, SinkHarness, StoreHarness,
    TestRow,
};

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}
