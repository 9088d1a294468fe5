//! Business delta against the currently accepted output: big changes need an owner.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::json;

use super::{ValidationContext, ValidationOutcome, Validator, Verdict};
use crate::digest::OutputRow;
use crate::error::Result;
use crate::ids::PartitionKey;

/// Sums a per-row business metric (breaches, balances in cents) per partition for the staged run and
/// for the currently accepted output, and asks for owner review when any partition moves by more than
/// a threshold percentage. The threshold defaults to the manifest's `validation.business_delta_max_pct`.
///
/// A partition whose accepted metric is 0 counts as a 100 % change when the new value is not 0. A
/// partition with no accepted rows at all is new output, not a change, and is reported but not flagged.
pub struct BusinessDelta<F> {
    name: String,
    metric: F,
    max_pct: Option<u32>,
}

impl<F> BusinessDelta<F> {
    /// `metric` maps a row to its contribution (for a breach count: 1 or 0).
    pub fn new<R>(metric_name: impl Into<String>, metric: F) -> Self
    where
        F: Fn(&R) -> i64,
    {
        Self {
            name: format!("business_delta({})", metric_name.into()),
            metric,
            max_pct: None,
        }
    }

    /// Overrides the manifest's threshold.
    pub fn with_max_pct(mut self, pct: u32) -> Self {
        self.max_pct = Some(pct);
        self
    }
}

impl<F> fmt::Debug for BusinessDelta<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusinessDelta")
            .field("name", &self.name)
            .field("max_pct", &self.max_pct)
            .finish()
    }
}

/// Percentage change from `old` to `new`, rounded down; 100 when `old` is 0 and `new` is not.
/// Sums are `i128`, so adding up to 2^64 rows of any `i64` metric cannot overflow.
fn delta_pct(old: i128, new: i128) -> u64 {
    let diff = old.abs_diff(new);
    let pct = match old.unsigned_abs() {
        0 if diff == 0 => 0,
        0 => 100,
        base => diff.saturating_mul(100) / base,
    };
    u64::try_from(pct).unwrap_or(u64::MAX)
}

/// A sum as JSON: a number when it fits in `i64`, else its decimal text.
fn num(v: i128) -> serde_json::Value {
    i64::try_from(v).map_or_else(|_| v.to_string().into(), Into::into)
}

#[async_trait]
impl<R, F> Validator<R> for BusinessDelta<F>
where
    R: OutputRow,
    F: Fn(&R) -> i64 + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome> {
        let max_pct = self
            .max_pct
            .or_else(|| {
                cx.manifest
                    .validation
                    .as_ref()
                    .and_then(|v| v.business_delta_max_pct)
            })
            .map(u64::from);
        let mut new: BTreeMap<PartitionKey, i128> = BTreeMap::new();
        cx.for_each_staged(|r| {
            let p = r.partition();
            let v = i128::from((self.metric)(r));
            match new.get_mut(p.as_ref()) {
                Some(sum) => *sum += v,
                None => {
                    new.insert(PartitionKey::new(p.into_owned()), v);
                }
            }
        })
        .await?;
        let mut rows = Vec::new();
        let mut over = 0usize;
        for p in cx.partitions() {
            let (mut old, mut old_rows) = (0i128, 0usize);
            let mut s = cx.current.read_current(&p);
            while let Some(batch) = s.try_next().await? {
                old_rows += batch.len();
                old += batch
                    .iter()
                    .map(|r| i128::from((self.metric)(r)))
                    .sum::<i128>();
            }
            let now = new.get(&p).copied().unwrap_or(0);
            let pct = delta_pct(old, now);
            let is_new = old_rows == 0;
            let flagged = !is_new && max_pct.is_some_and(|m| pct > m);
            over += usize::from(flagged);
            rows.push(json!({"partition": p, "accepted": num(old), "staged": num(now), "delta_pct": pct, "new_partition": is_new, "over_threshold": flagged}));
        }
        let verdict = if over > 0 {
            Verdict::NeedsReview
        } else {
            Verdict::Pass
        };
        let threshold = max_pct.map_or_else(|| "none".to_owned(), |m| format!("{m}%"));
        Ok(ValidationOutcome::new(
            &self.name,
            verdict,
            format!(
                "{over} of {} partitions moved more than {threshold}",
                rows.len()
            ),
            json!({"threshold_pct": max_pct, "partitions": rows}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::delta_pct;

    #[test]
    fn delta_percentages() {
        assert_eq!(delta_pct(100, 100), 0);
        assert_eq!(delta_pct(100, 80), 20);
        assert_eq!(delta_pct(100, 121), 21);
        assert_eq!(delta_pct(0, 0), 0);
        assert_eq!(delta_pct(0, 5), 100);
        assert_eq!(delta_pct(-10, -5), 50);
        // Sums past i64 neither overflow nor panic.
        let big = i128::from(i64::MAX) * 4;
        assert_eq!(delta_pct(big, big * 2), 100);
        assert_eq!(super::num(big), serde_json::json!(big.to_string()));
        assert_eq!(super::num(-5), serde_json::json!(-5));
    }
}
