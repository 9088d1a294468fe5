//! The user's deterministic transform.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::TransformContext;
use crate::digest::OutputRow;

pub mod error;

pub use error::TransformError;

/// Stable identity of a transform's code and configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransformFingerprint {
    /// Transform name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `sha256:<hex>` of the canonical configuration bytes.
    pub config_hash: String,
    /// `sha256:<hex>` over name, version and config hash.
    pub digest: String,
}

impl TransformFingerprint {
    /// Computes a fingerprint from name, version and canonical configuration bytes.
    pub fn compute(name: &str, version: &str, canonical_config: &[u8]) -> Self {
        let config_hash = format!("sha256:{}", hex::encode(Sha256::digest(canonical_config)));
        let digest = crate::ids::derive_id("transform-fingerprint", &[name, version, &config_hash]);
        Self {
            name: name.into(),
            version: version.into(),
            config_hash,
            digest: format!("sha256:{digest}"),
        }
    }
}

/// A synchronous, pure function from one input record to zero or more output rows.
///
/// # Contract
/// 1. Pure: the output depends only on `input` and the context's pinned fields (run id, mode, run start,
///    versions, reference data). No wall clock, no randomness, no I/O, no global state.
/// 2. Output order and content do not depend on hash-map iteration order.
/// 3. Output ids are derived ([`TransformContext::output_id`]), never random.
/// 4. Numeric aggregation is exact (integers, fixed-point), so re-batching does not change results.
/// 5. Every output row's partition is inside the manifest's target partitions; warm-up input may feed
///    state but must not produce rows outside the publish range.
/// 6. `fingerprint` is stable for the same code and configuration.
/// 7. No state is carried from one `apply` call to the next: after a crash a chunk is re-read by a new
///    instance, possibly in another process, and chunks run in any order. State a record needs (a
///    case's earlier events, a running balance) travels in the input record, assembled by the source.
///
/// The testkit's determinism harness checks 1, 2, 3, 4 and 6 on your inputs, and 7 with fresh instances
/// (`backfill_testkit::determinism::check_transform_fresh`).
///
/// ```
/// use std::borrow::Cow;
/// use backfill_core::prelude::*;
///
/// #[derive(Debug, Clone, serde::Serialize)]
/// struct Out { id: String, month: String, cents: i64 }
/// impl OutputRow for Out {
///     fn partition(&self) -> Cow<'_, str> { Cow::Borrowed(&self.month) }
/// }
///
/// #[derive(Debug)]
/// struct Double;
/// impl DeterministicTransform for Double {
///     type Input = (String, i64);
///     type Output = Out;
///     fn name(&self) -> &str { "double" }
///     fn version(&self) -> &str { "1.0.0" }
///     fn apply(&self, input: &Self::Input, ctx: &TransformContext, out: &mut Vec<Out>) -> Result<(), TransformError> {
///         out.push(Out { id: ctx.output_id(&[&input.0]), month: "2025-01".into(), cents: input.1 * 2 });
///         Ok(())
///     }
/// }
///
/// let at = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
/// let ctx = TransformContext::fixed("bf-001", ExecutionMode::Backfill, at);
/// let mut out = Vec::new();
/// Double.apply(&("acct-1".to_owned(), 21), &ctx, &mut out).unwrap();
/// assert_eq!(out[0].cents, 42);
/// assert_eq!(out[0].id, ctx.output_id(&["acct-1"]));
/// assert_eq!(out[0].partition(), "2025-01");
/// ```
pub trait DeterministicTransform: fmt::Debug + Send + Sync + 'static {
    /// Input record type.
    type Input: Send + Sync + 'static;
    /// Output row type.
    type Output: OutputRow;

    /// Transform name; must equal the manifest's `transform.name`.
    fn name(&self) -> &str;

    /// Version; must equal the manifest's `transform.version`.
    fn version(&self) -> &str;

    /// Canonical bytes of the configuration (empty when there is none).
    fn canonical_config(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Transforms one input, appending outputs to `out`.
    fn apply(
        &self,
        input: &Self::Input,
        ctx: &TransformContext,
        out: &mut Vec<Self::Output>,
    ) -> Result<(), TransformError>;

    /// Stable identity of code and configuration.
    fn fingerprint(&self) -> TransformFingerprint {
        TransformFingerprint::compute(self.name(), self.version(), &self.canonical_config())
    }
}
