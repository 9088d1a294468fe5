//! Row-level data quality validators over staged rows: uniqueness, presence, ranges, enumerations.
//!
//! Each reads the staged rows back once. Fields are selected with closures, so no reflection or
//! per-row allocation is needed beyond what the key type itself needs.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::ops::RangeInclusive;

use async_trait::async_trait;
use serde_json::json;

use super::{ValidationContext, ValidationOutcome, Validator, Verdict, SAMPLES};
use crate::digest::OutputRow;
use crate::error::Result;

fn outcome(
    name: &str,
    what: &str,
    checked: u64,
    bad: u64,
    samples: Vec<String>,
) -> ValidationOutcome {
    let verdict = if bad == 0 {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    ValidationOutcome::new(
        name,
        verdict,
        format!("{what}: {bad} of {checked} rows fail"),
        json!({"checked": checked, "failing": bad, "samples": samples}),
    )
}

/// Business-key uniqueness across all staged rows.
pub struct UniqueKey<F> {
    name: String,
    key: F,
}

impl<F> UniqueKey<F> {
    /// `key` extracts the business key; `name` names it in evidence (`case_id+business_date`).
    pub fn new<R, K>(name: impl Into<String>, key: F) -> Self
    where
        F: Fn(&R) -> K,
    {
        Self {
            name: format!("unique({})", name.into()),
            key,
        }
    }
}

impl<F> fmt::Debug for UniqueKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UniqueKey")
            .field("name", &self.name)
            .finish()
    }
}

#[async_trait]
impl<R, K, F> Validator<R> for UniqueKey<F>
where
    R: OutputRow,
    K: Hash + Eq + fmt::Debug + Send + 'static,
    F: Fn(&R) -> K + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome> {
        let mut seen = HashSet::new();
        let (mut checked, mut dup) = (0u64, 0u64);
        let mut samples = Vec::new();
        cx.for_each_staged(|r| {
            checked += 1;
            let k = (self.key)(r);
            if seen.contains(&k) {
                dup += 1;
                if samples.len() < SAMPLES {
                    samples.push(format!("{k:?}"));
                }
            } else {
                seen.insert(k);
            }
        })
        .await?;
        Ok(outcome(&self.name, "duplicate keys", checked, dup, samples))
    }
}

/// A field that must be present on every staged row.
pub struct NotNull<F> {
    name: String,
    present: F,
}

impl<F> NotNull<F> {
    /// `present` answers whether the field `field` has a value.
    pub fn new<R>(field: impl Into<String>, present: F) -> Self
    where
        F: Fn(&R) -> bool,
    {
        Self {
            name: format!("not_null({})", field.into()),
            present,
        }
    }
}

impl<F> fmt::Debug for NotNull<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotNull").field("name", &self.name).finish()
    }
}

#[async_trait]
impl<R, F> Validator<R> for NotNull<F>
where
    R: OutputRow,
    F: Fn(&R) -> bool + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome> {
        let (mut checked, mut bad) = (0u64, 0u64);
        let mut samples = Vec::new();
        cx.for_each_staged(|r| {
            checked += 1;
            if !(self.present)(r) {
                bad += 1;
                if samples.len() < SAMPLES {
                    samples.push(format!("{r:?}"));
                }
            }
        })
        .await?;
        Ok(outcome(&self.name, "missing values", checked, bad, samples))
    }
}

/// A value that must lie in an inclusive range (`None` values are skipped; pair with [`NotNull`]).
pub struct InRange<F, T> {
    name: String,
    value: F,
    range: RangeInclusive<T>,
}

impl<F, T: fmt::Debug> InRange<F, T> {
    /// `value` extracts the field `field`; it must lie within `range`.
    pub fn new<R>(field: impl Into<String>, value: F, range: RangeInclusive<T>) -> Self
    where
        F: Fn(&R) -> Option<T>,
    {
        Self {
            name: format!("range({} in {:?})", field.into(), range),
            value,
            range,
        }
    }
}

impl<F, T> fmt::Debug for InRange<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InRange").field("name", &self.name).finish()
    }
}

#[async_trait]
impl<R, T, F> Validator<R> for InRange<F, T>
where
    R: OutputRow,
    T: PartialOrd + fmt::Debug + Send + Sync + 'static,
    F: Fn(&R) -> Option<T> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome> {
        let (mut checked, mut bad) = (0u64, 0u64);
        let mut samples = Vec::new();
        cx.for_each_staged(|r| {
            checked += 1;
            if let Some(v) = (self.value)(r) {
                if !self.range.contains(&v) {
                    bad += 1;
                    if samples.len() < SAMPLES {
                        samples.push(format!("{v:?}"));
                    }
                }
            }
        })
        .await?;
        Ok(outcome(
            &self.name,
            "values out of range",
            checked,
            bad,
            samples,
        ))
    }
}

/// A field whose value must be one of an accepted set.
pub struct AcceptedValues<F> {
    name: String,
    value: F,
    accepted: Vec<String>,
}

impl<F> AcceptedValues<F> {
    /// `value` extracts the field `field`; it must equal one of `accepted`.
    pub fn new<R>(
        field: impl Into<String>,
        value: F,
        accepted: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self
    where
        F: for<'r> Fn(&'r R) -> &'r str,
    {
        let mut accepted: Vec<String> = accepted.into_iter().map(Into::into).collect();
        accepted.sort();
        Self {
            name: format!("accepted_values({})", field.into()),
            value,
            accepted,
        }
    }
}

impl<F> fmt::Debug for AcceptedValues<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptedValues")
            .field("name", &self.name)
            .field("accepted", &self.accepted)
            .finish()
    }
}

#[async_trait]
impl<R, F> Validator<R> for AcceptedValues<F>
where
    R: OutputRow,
    F: for<'r> Fn(&'r R) -> &'r str + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn validate(&self, cx: &ValidationContext<'_, R>) -> Result<ValidationOutcome> {
        let (mut checked, mut bad) = (0u64, 0u64);
        let mut samples = Vec::new();
        cx.for_each_staged(|r| {
            checked += 1;
            let v = (self.value)(r);
            if self
                .accepted
                .binary_search_by(|a| a.as_str().cmp(v))
                .is_err()
            {
                bad += 1;
                if samples.len() < SAMPLES {
                    samples.push(v.to_owned());
                }
            }
        })
        .await?;
        Ok(outcome(
            &self.name,
            "values not accepted",
            checked,
            bad,
            samples,
        ))
    }
}
