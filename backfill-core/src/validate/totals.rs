//! Count and digest validators.

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::json;

use super::{ValidationContext, ValidationOutcome, Validator, Verdict};
use crate::digest::{OutputRow, PartitionDigests};
use crate::error::Result;

/// Recomputes per-partition digests from the rows read back from staging and compares them with the
/// ledger. Catches rows lost or duplicated between transform and storage.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestMatchesLedger;

#[async_trait]
impl<R: OutputRow> Validator<R> for DigestMatchesLedger {
    fn name(&self) -> &str {
        "digest_matches_ledger"
    }

    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome> {
        let mut staged = PartitionDigests::default();
        let mut scratch = Vec::new();
        let mut failed = None;
        cx.for_each_staged(|r| {
            if failed.is_none() {
                failed = staged.add_row(r, &mut scratch).err();
            }
        })
        .await?;
        if let Some(source) = failed {
            return Err(crate::Error::Encode {
                run_id: cx.run_id.clone(),
                source,
            });
        }
        let mut mismatched = Vec::new();
        let keys: std::collections::BTreeSet<_> =
            staged.0.keys().chain(cx.ledger.0.keys()).collect();
        for k in keys {
            let a = staged.0.get(k).copied().unwrap_or_default();
            let b = cx.ledger.0.get(k).copied().unwrap_or_default();
            if a != b {
                mismatched.push(json!({"partition": k, "staged": a, "ledger": b}));
            }
        }
        let details = json!({"partitions": staged, "mismatched": mismatched});
        Ok(if mismatched.is_empty() {
            ValidationOutcome::pass(
                Validator::<R>::name(self),
                format!(
                    "{} partitions, {} rows: staged digests equal the ledger",
                    staged.0.len(),
                    staged.total_rows()
                ),
                details,
            )
        } else {
            ValidationOutcome::new(
                Validator::<R>::name(self),
                Verdict::Fail,
                format!(
                    "{} partition(s) differ between staging and the ledger",
                    mismatched.len()
                ),
                details,
            )
        })
    }
}

/// What a count is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A fixed number of rows.
    Rows(u64),
    /// The number of input records the ledger says were read.
    InputRecords,
    /// The number of rows currently visible in the run's partitions (same shape, restated).
    CurrentOutput,
}

/// Staged row count (read back) within a tolerance of an expectation. The tolerance defaults to the
/// manifest's `validation.count_tolerance` (0 when absent).
#[derive(Debug, Clone, Copy)]
pub struct CountTolerance {
    expected: Expected,
    tolerance: Option<u64>,
}

impl CountTolerance {
    /// Compares with `expected`, using the manifest's tolerance.
    pub fn new(expected: Expected) -> Self {
        Self {
            expected,
            tolerance: None,
        }
    }

    /// Overrides the tolerance.
    pub fn with_tolerance(mut self, tolerance: u64) -> Self {
        self.tolerance = Some(tolerance);
        self
    }
}

#[async_trait]
impl<R: OutputRow> Validator<R> for CountTolerance {
    fn name(&self) -> &str {
        "count_tolerance"
    }

    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome> {
        let mut staged = 0u64;
        cx.for_each_staged(|_| staged += 1).await?;
        if self.expected == Expected::CurrentOutput && cx.accepted.is_none() {
            return Ok(ValidationOutcome::pass(
                Validator::<R>::name(self),
                format!("staged {staged} rows; nothing accepted yet to compare with"),
                json!({"staged": staged, "expected_from": "CurrentOutput", "accepted": null}),
            ));
        }
        let expected = match self.expected {
            Expected::Rows(n) => n,
            Expected::InputRecords => cx.chunks.iter().map(|c| c.input_count).sum(),
            Expected::CurrentOutput => {
                let mut n = 0u64;
                for p in cx.partitions() {
                    let mut s = cx.current.read_current(&p);
                    while let Some(batch) = s.try_next().await? {
                        n += batch.len() as u64;
                    }
                }
                n
            }
        };
        let tolerance = self
            .tolerance
            .or_else(|| {
                cx.manifest
                    .validation
                    .as_ref()
                    .and_then(|v| v.count_tolerance)
            })
            .unwrap_or(0);
        let diff = staged.abs_diff(expected);
        let details = json!({"staged": staged, "expected": expected, "expected_from": format!("{:?}", self.expected), "tolerance": tolerance});
        let verdict = if diff <= tolerance {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        Ok(ValidationOutcome::new(
            Validator::<R>::name(self),
            verdict,
            format!("staged {staged} rows, expected {expected} ± {tolerance}"),
            details,
        ))
    }
}

/// Replace-partitions replaces every declared partition, so a declared partition that staged no
/// rows would be emptied. That fails unless the manifest sets `target.allow_empty_partitions`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeclaredPartitionsStaged;

#[async_trait]
impl<R: OutputRow> Validator<R> for DeclaredPartitionsStaged {
    fn name(&self) -> &str {
        "declared_partitions_staged"
    }

    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome> {
        // A dry run on a subset of chunks is held to the partitions its chunks staged.
        let declared = cx.partitions();
        let empty: Vec<&crate::ids::PartitionKey> = declared
            .iter()
            .filter(|p| cx.ledger.0.get(*p).is_none_or(|d| d.rows == 0))
            .collect();
        let allowed = cx.manifest.target.allow_empty_partitions;
        let details = json!({"empty": empty, "allow_empty_partitions": allowed});
        let name = Validator::<R>::name(self);
        Ok(if empty.is_empty() {
            ValidationOutcome::pass(
                name,
                format!(
                    "all {} declared partitions staged rows",
                    cx.manifest.target.partitions.len()
                ),
                details,
            )
        } else if allowed {
            ValidationOutcome::pass(
                name,
                format!(
                    "{} declared partition(s) staged no rows and will be emptied (allowed by the manifest)",
                    empty.len()
                ),
                details,
            )
        } else {
            ValidationOutcome::new(
                name,
                Verdict::Fail,
                format!(
                    "{} declared partition(s) staged no rows and would be emptied: {}",
                    empty.len(),
                    empty
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                details,
            )
        })
    }
}
