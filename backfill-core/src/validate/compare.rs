//! What a reconciliation reports: the recomputed output against the accepted one.

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::json;

use super::{ValidationContext, ValidationOutcome, Validator};
use crate::digest::{OutputRow, PartitionDigests};
use crate::error::Result;

/// Per partition, the rows and digest of the accepted output (what readers see now) against the
/// ledger's digests of the recomputed output; the outcome passes and lists the partitions that
/// differ. Attached by itself to every `RECONCILIATION` run, whose purpose is this comparison (a
/// reconciliation is never published). Rows compare on their canonical encoding: rows that carry
/// run-scoped values (the run id, ids derived from it) differ in every partition, so pair it with a
/// comparison on business content where they do.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptedComparison;

#[async_trait]
impl<R: OutputRow> Validator<R> for AcceptedComparison {
    fn name(&self) -> &str {
        "compare_with_accepted"
    }

    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome> {
        let name = Validator::<R>::name(self);
        let mut accepted = PartitionDigests::default();
        let mut scratch = Vec::new();
        let mut partitions = cx.partitions();
        partitions.extend(cx.ledger.0.keys().cloned());
        partitions.sort();
        partitions.dedup();
        if cx.accepted.is_some() {
            for p in &partitions {
                let mut s = cx.current.read_current(p);
                while let Some(batch) = s.try_next().await? {
                    for r in &batch {
                        accepted.add_row(r, &mut scratch).map_err(|source| {
                            crate::Error::Encode {
                                run_id: cx.run_id.clone(),
                                source,
                            }
                        })?;
                    }
                }
            }
        }
        let mut differ = Vec::new();
        let mut rows = Vec::new();
        for p in &partitions {
            let a = accepted.0.get(p).copied().unwrap_or_default();
            let r = cx.ledger.0.get(p).copied().unwrap_or_default();
            rows.push(json!({"partition": p, "accepted": a, "recomputed": r, "equal": a == r}));
            if a != r {
                differ.push(p.as_str().to_owned());
            }
        }
        let against = cx.accepted.map_or_else(
            || "nothing accepted yet".to_owned(),
            |a| format!("accepted run {a}"),
        );
        Ok(ValidationOutcome::pass(
            name,
            format!(
                "{} of {} partitions differ from the {against} ({} rows accepted, {} recomputed)",
                differ.len(),
                partitions.len(),
                accepted.total_rows(),
                cx.ledger.total_rows()
            ),
            json!({"against": cx.accepted, "differ": differ, "partitions": rows}),
        ))
    }
}
